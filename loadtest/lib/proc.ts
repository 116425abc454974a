// Server-side figures from /proc: CPU time (utime + stime, converted from clock ticks) and resident memory.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

let ticks: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`), 100 on every Linux we run on. */
export function clockTicks(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

export interface ProcSample {
  pid: number;
  /** utime + stime of the process, seconds. */
  cpuSeconds: number;
  /** VmRSS, bytes. */
  rssBytes: number;
}

export function sampleProc(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is parenthesised and may hold spaces: count fields after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
  return { pid, cpuSeconds: (utime + stime) / clockTicks(), rssBytes: rss ? Number(rss[1]) * 1024 : 0 };
}

/** CPU seconds and RSS change between two samples of the same process. */
export function delta(a: ProcSample, b: ProcSample): { cpuSeconds: number; rssBytes: number } {
  return { cpuSeconds: b.cpuSeconds - a.cpuSeconds, rssBytes: b.rssBytes - a.rssBytes };
}

export interface CpuTimes {
  /** Jiffies the CPUs spent busy (everything but idle and iowait), all CPUs together. */
  busy: number;
  total: number;
}

/** System-wide CPU counters from the first line of /proc/stat. */
export function cpuTimes(): CpuTimes {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  return { busy: total - idle, total };
}

/** Busy CPU cores between two readings (0..number of CPUs). */
export function busyCores(a: CpuTimes, b: CpuTimes, cores: number): number {
  const total = b.total - a.total;
  return total > 0 ? ((b.busy - a.busy) / total) * cores : 0;
}
