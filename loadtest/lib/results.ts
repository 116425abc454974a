// The shape of a benchmark run's results (written to bench-results/*.json) and the helpers that summarise a phase.
import type { Histogram } from './histogram';
import type { PhaseResult } from './pool';

export interface IdleLevel {
  connections: number;
  failed: number;
  rssBaseBytes: number;
  rssBytes: number;
  /** (rssBytes - rssBaseBytes) / connections. */
  bytesPerConnection: number;
  /** Connections opened per second while reaching this level. */
  connectRate: number;
  connectP99Ms: number;
}

export interface LatencySummary {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface PhaseSummary extends LatencySummary {
  /** Target publish rate, messages/s. */
  rate: number;
  seconds: number;
  published: number;
  publishErrors: number;
  expected: number;
  delivered: number;
  deliveredPerSec: number;
  /** Expected deliveries that never arrived (by the end of the scenario). */
  lost: number;
  duplicates: number;
  /** Server CPU time per delivered message, µs (sum over the server nodes). */
  serverCpuUsPerDelivery: number;
  /** WebSocket payload bytes per delivery as the clients received them (gateway only; 0: not measured). */
  wireBytesPerDelivery: number;
  /** Redis CPU time per acknowledged publish, µs. */
  redisCpuUsPerPublish: number;
  /** Server CPU seconds per wall second (1.0 = one core), sum over the nodes. */
  serverCores: number;
  redisCores: number;
  /** Cores the load generators used. */
  generatorCores?: number;
  /** Cores busy with processes other than this benchmark's (other work on a shared machine). */
  otherCores?: number;
  /** Seconds of the phase (from its first send) whose worst delivery took over 100 ms: [second, worst ms]. */
  slowSeconds: Array<[number, number]>;
}

export interface SystemResult {
  system: 'relay' | 'socketio' | 'floor';
  label: string;
  idle: IdleLevel[];
  fanout: PhaseSummary[];
  /** Highest fanout step with p99 < 100 ms and nothing lost. */
  fanoutBest?: PhaseSummary;
  chat?: PhaseSummary;
  dm?: PhaseSummary;
  /** The same fanout and chat workloads with MessagePack clients (relaychat only); the fields above are JSON. */
  msgpack?: { fanout: PhaseSummary[]; fanoutBest?: PhaseSummary; chat?: PhaseSummary };
  /** Crashed processes, connections closed by the server, failed connects: anything that means "broken". */
  problems: string[];
}

export interface References {
  /** redis-benchmark PUBLISH of a 200-byte message, 50 clients, no pipelining. */
  redisPublishOpsPerSec?: number;
  /** The same with 16 commands pipelined per client. */
  redisPublishPipelinedOpsPerSec?: number;
  /** A single gateway node with the in-process memory engine (no Redis), fanout steps. */
  localFanout: PhaseSummary[];
  localFanoutBest?: PhaseSummary;
}

export interface BenchResult {
  startedAt: string;
  /** `git describe --always --dirty` of the tree the run was built from, when known. */
  commit?: string;
  quick: boolean;
  pinned?: { servers: string; generators: string };
  machine: { cpus: string; cores: number; memGiB: number; node: string; kernel: string; noFile: number };
  config: Record<string, unknown>;
  notes: string[];
  systems: SystemResult[];
  references: References;
}

export function latency(h: Histogram): LatencySummary {
  return { p50Ms: h.quantile(0.5) / 1000, p99Ms: h.quantile(0.99) / 1000, maxMs: h.max / 1000 };
}

export function summarise(
  p: PhaseResult,
  rate: number,
  seconds: number,
  serverCpuSeconds: number,
  redisCpuSeconds: number,
): PhaseSummary {
  return {
    rate,
    seconds,
    published: p.published,
    publishErrors: p.publishErrors,
    expected: p.expected,
    delivered: p.delivered,
    deliveredPerSec: p.delivered / seconds,
    lost: Math.max(0, p.expected - p.delivered),
    duplicates: p.duplicates,
    ...latency(p.latency),
    serverCpuUsPerDelivery: p.delivered > 0 ? (serverCpuSeconds * 1e6) / p.delivered : 0,
    wireBytesPerDelivery: p.delivered > 0 ? p.wireBytes / p.delivered : 0,
    redisCpuUsPerPublish: p.published > 0 ? (redisCpuSeconds * 1e6) / p.published : 0,
    serverCores: serverCpuSeconds / seconds,
    redisCores: redisCpuSeconds / seconds,
    slowSeconds: slowSeconds(p.timeline),
  };
}

function slowSeconds(timeline: Map<number, [number, number]>): Array<[number, number]> {
  const secs = [...timeline.keys()].sort((a, b) => a - b);
  const first = secs[0] ?? 0;
  return secs
    .filter((s) => timeline.get(s)![1] > 100_000)
    .map((s) => [s - first, Math.round(timeline.get(s)![1] / 1000)] as [number, number]);
}

/** Sustained: every expected delivery arrived and p99 stayed under 100 ms. */
export function sustained(s: PhaseSummary): boolean {
  return s.expected > 0 && s.lost === 0 && s.publishErrors === 0 && s.p99Ms < 100;
}
