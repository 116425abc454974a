// Starting and stopping the processes under test: a private redis-server (never daemonized, never the shared
// 6379), gateway nodes and Socket.IO nodes, each optionally pinned to CPUs with taskset.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, connect as tcpConnect } from 'node:net';

export interface ServerProc {
  readonly name: string;
  readonly pid: number;
  readonly port: number;
  /** Set when the process exited before stop() was called: a crash. */
  readonly crashed?: string;
  stop(): Promise<void>;
  /** SIGKILL, as a crash would (not counted as one), and wait for the exit. */
  kill(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/** A child process with the last lines of its stderr kept for error messages. */
class Launched {
  readonly child: ChildProcess;
  private tail = '';
  private stopping = false;
  /** Set when the process exited before stop() was called: a crash. */
  crashed?: string;

  constructor(
    readonly name: string,
    cmd: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    cpus?: string,
  ) {
    const [c, a] = cpus ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
    this.child = spawn(c, a, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.tail = (this.tail + d.toString()).slice(-4000);
    });
    this.child.on('exit', (code, signal) => {
      if (!this.stopping) this.crashed = `${name} exited (${code ?? signal}) ${this.lastLines()}`.trim();
    });
  }

  get exited(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  lastLines(): string {
    return this.tail.trim().split('\n').slice(-5).join(' | ');
  }

  async waitReady(check: () => Promise<boolean>, timeoutMs = 20000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.exited) throw new Error(`${this.name} exited during start-up: ${this.lastLines()}`);
      if (await check().catch(() => false)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    this.child.kill('SIGKILL');
    throw new Error(`${this.name} not ready within ${timeoutMs} ms`);
  }

  proc(port: number): ServerProc {
    const crashed = () => this.crashed;
    return {
      name: this.name,
      pid: this.child.pid!,
      port,
      get crashed() {
        return crashed();
      },
      stop: () => this.stop(),
      kill: () => this.stop('SIGKILL'),
    };
  }

  stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    this.stopping = true;
    return new Promise<void>((resolve) => {
      if (this.exited) return resolve();
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 10000);
      this.child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      this.child.kill(signal);
    });
  }
}

function redisPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, '127.0.0.1');
    s.setTimeout(500, () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', () => resolve(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      s.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
  });
}

async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
  await res.arrayBuffer();
  return res.status === 200;
}

export async function startRedis(cpus?: string): Promise<ServerProc & { url: string }> {
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'];
  args.push('--maxclients', '1000', '--loglevel', 'warning');
  const p = new Launched('redis-server', 'redis-server', args, process.env, cpus);
  await p.waitReady(() => redisPing(port));
  return Object.assign(p.proc(port), { url: `redis://127.0.0.1:${port}` });
}

export interface NodeProc extends ServerProc {
  /** What clients connect to: ws://…/ws for the gateway, http://… for Socket.IO. */
  clientUrl: string;
}

/** Starts `node <script>` with env, waits for `readyPath` to answer 200. */
export async function startNode(opts: {
  name: string;
  script: string;
  env: Record<string, string>;
  readyPath: string;
  clientPath: (port: number) => string;
  cpus?: string;
}): Promise<NodeProc> {
  const port = await freePort();
  const env = { ...process.env, ...opts.env, PORT: String(port) };
  const p = new Launched(opts.name, process.execPath, [opts.script], env, opts.cpus);
  await p.waitReady(() => httpOk(`http://127.0.0.1:${port}${opts.readyPath}`));
  return Object.assign(p.proc(port), { clientUrl: opts.clientPath(port) });
}

/** Output of a command, or undefined when it is not installed or fails. */
export function run(
  cmd: string,
  args: string[],
  cpus?: string,
  timeoutMs = 60000,
): Promise<string | undefined> {
  return new Promise((resolve) => {
    const [c, a] = cpus ? ['taskset', ['-c', cpus, cmd, ...args]] : [cmd, args];
    const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', () => resolve(undefined));
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve(code === 0 ? out : undefined);
    });
  });
}
