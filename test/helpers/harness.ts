// Real parts for tests: a redis-server the test owns, gateway child processes configured through env, tokens,
// and a small raw WebSocket client that speaks protocol v1. Every process started here is killed by its owner
// (stop()/kill()) and, as a safety net, when the test process exits.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import jwt from 'jsonwebtoken';
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const GATEWAY_MAIN = join(ROOT, 'dist', 'gateway', 'main.js');
export const TEST_SECRET = 'test-secret-0123456789abcdef';

const owned = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of owned) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

export async function freePort(): Promise<number> {
  const srv = createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  srv.close();
  await once(srv, 'close');
  return port;
}

/** Polls `check` until it returns a truthy value; fails with `what` after `timeoutMs`. */
export async function until<T>(
  what: string,
  check: () => Promise<T> | T,
  timeoutMs = 10_000,
  everyMs = 25,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

function exited(p: ChildProcess): Promise<number | null> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(p.exitCode);
  return once(p, 'exit').then(([code]) => code as number | null);
}

export interface RedisProc {
  port: number;
  url: string;
  pid: number;
  /** Runs a redis-cli command against this server and returns its output. */
  cli(...args: string[]): Promise<string>;
  pause(): void;
  resume(): void;
  kill(): Promise<void>;
  /** Stops (SIGKILL) and starts again on the same port, with the same persistence settings. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Fails with what to install when a tool the tests run is missing (instead of a spawn ENOENT in some worker). */
export function requireTool(command: string, install: string): void {
  const found = spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
  if (!found)
    throw new Error(`${command} is not installed: ${install}; \`bash .ci/run\` installs everything`);
}

export async function startRedis(opts: { appendonly?: boolean } = {}): Promise<RedisProc> {
  requireTool('redis-server', 'install Redis 7 (Debian: apt-get install redis-server redis-tools)');
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'rc-redis-'));
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir];
  args.push('--appendonly', opts.appendonly ? 'yes' : 'no');
  if (opts.appendonly) args.push('--appendfsync', 'always');
  let proc: ChildProcess;
  const launch = async () => {
    proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    owned.add(proc);
    let out = '';
    proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until(
      `redis on ${port} (${out.slice(-200)})`,
      () => out.includes('Ready to accept connections'),
      10_000,
      10,
    );
  };
  await launch();
  const cli = (...a: string[]) =>
    new Promise<string>((res, rej) => {
      const c = spawn('redis-cli', ['-p', String(port), ...a]);
      let out = '';
      c.stdout.on('data', (d: Buffer) => (out += d.toString()));
      // 'close', not 'exit': stdout may still hold output when the process exits.
      c.on('close', (code) =>
        code === 0 ? res(out.trim()) : rej(new Error(`redis-cli ${a.join(' ')} exited ${code}`)),
      );
    });
  const kill = async () => {
    proc.kill('SIGKILL');
    await exited(proc);
    owned.delete(proc);
  };
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    get pid() {
      return proc.pid!;
    },
    cli,
    pause: () => proc.kill('SIGSTOP'),
    resume: () => proc.kill('SIGCONT'),
    kill,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: async () => {
      proc.kill('SIGCONT');
      proc.kill('SIGTERM');
      await exited(proc);
      owned.delete(proc);
    },
  };
}

export interface GatewayProc {
  port: number;
  url: string;
  wsUrl: string;
  nodeId: string;
  pid: number;
  proc: ChildProcess;
  logs(): string;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
  exited: Promise<number | null>;
}

let gatewayCount = 0;

/**
 * Starts `node dist/gateway/main.js` with env on a free port; resolves once /readyz answers 200. The gateway
 * listens with an exclusive port, so a port that another test process took between freePort() and the listen
 * makes it exit at once ("cannot listen"): a port this function chose is then chosen again.
 */
export async function startGateway(
  env: Record<string, string> = {},
  opts: { waitReady?: boolean } = {},
): Promise<GatewayProc> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startGatewayOnce(env, opts);
    } catch (err) {
      if (env.PORT || attempt >= 5 || !(err instanceof PortTaken)) throw err;
    }
  }
}

class PortTaken extends Error {}

async function startGatewayOnce(
  env: Record<string, string>,
  opts: { waitReady?: boolean },
): Promise<GatewayProc> {
  if (!existsSync(GATEWAY_MAIN))
    throw new Error('dist/gateway/main.js is missing: run `npm run build` first');
  const port = env.PORT ? Number(env.PORT) : await freePort();
  const nodeId = env.NODE_ID ?? `gw-test-${process.pid}-${++gatewayCount}`;
  const proc = spawn(process.execPath, [GATEWAY_MAIN], {
    env: {
      PATH: process.env.PATH,
      JWT_SECRET: TEST_SECRET,
      LOG_LEVEL: 'warn',
      HOST: '127.0.0.1',
      ...env,
      PORT: String(port),
      NODE_ID: nodeId,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  owned.add(proc);
  let logs = '';
  proc.stdout!.on('data', (d: Buffer) => (logs += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (logs += d.toString()));
  const done = exited(proc).finally(() => owned.delete(proc));
  const url = `http://127.0.0.1:${port}`;
  if (opts.waitReady !== false) {
    await until(`gateway ${nodeId} ready`, async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) return true;
      const r = await fetch(`${url}/readyz`);
      return r.status === 200;
    });
    if (proc.exitCode !== null || proc.signalCode !== null) {
      await done;
      if (logs.includes('cannot listen')) throw new PortTaken(`port ${port} taken: ${logs}`);
      throw new Error(`gateway exited ${proc.exitCode ?? proc.signalCode}: ${logs}`);
    }
  }
  return {
    port,
    url,
    wsUrl: `ws://127.0.0.1:${port}/ws`,
    nodeId,
    pid: proc.pid!,
    proc,
    logs: () => logs,
    stop: async () => {
      proc.kill('SIGTERM');
      return done;
    },
    kill: async () => {
      proc.kill('SIGKILL');
      await done;
    },
    exited: done,
  };
}

export function token(
  user: string,
  opts: { secret?: string; rooms?: string[]; expiresIn?: number; extra?: Record<string, unknown> } = {},
): string {
  const payload: Record<string, unknown> = { ...opts.extra };
  if (opts.rooms) payload.rooms = opts.rooms;
  return jwt.sign(payload, opts.secret ?? TEST_SECRET, {
    algorithm: 'HS256',
    subject: user,
    expiresIn: opts.expiresIn ?? 600,
  });
}

export type Frame = Record<string, unknown> & { type?: string; re?: number | null; ok?: boolean };

/** Plain MessagePack, as the gateway speaks it (no msgpackr records or extensions). */
export const msgpack = {
  packr: new Packr({ useRecords: false, moreTypes: false, bundleStrings: false, encodeUndefinedAsNil: true }),
  unpackr: new Unpackr({ useRecords: false, moreTypes: false, mapsAsObjects: true, int64AsType: 'number' }),
};

export interface ConnectOptions {
  localAddress?: string;
  /** Wire encoding: offers relaychat.v1.json or relaychat.v1.msgpack. Default: no subprotocol (JSON). */
  encoding?: 'json' | 'msgpack';
  /** Where the token goes. Default: the query parameter. */
  carrier?: 'query' | 'subprotocol' | 'cookie' | 'bearer';
  headers?: Record<string, string>;
  /** More upgrade parameters, e.g. `inbox=4:9b2e01`. */
  query?: string;
  /** The id of this client's first request (default 1): out of the range of ids a test sends in raw frames. */
  firstId?: number;
}

/** A raw protocol v1 client over `ws`: requests by id, a log of every frame, and waits on predicates. */
export class TestClient {
  readonly frames: Frame[] = [];
  welcome!: Frame;
  closeCode: number | null = null;
  /** The upgrade response's Sec-WebSocket-Protocol header (undefined when absent). */
  responseProtocol: string | undefined;
  binaryFrames = 0;
  textFrames = 0;
  private nextId = 1;
  private waiters: { pred: (f: Frame) => boolean; resolve: (f: Frame) => void }[] = [];
  private closed: Promise<number>;

  private constructor(
    readonly ws: WebSocket,
    readonly encoding: 'json' | 'msgpack' = 'json',
  ) {
    this.closed = new Promise((resolve) =>
      ws.on('close', (code) => {
        this.closeCode = code;
        resolve(code);
      }),
    );
    ws.on('upgrade', (res) => {
      const p = res.headers['sec-websocket-protocol'];
      this.responseProtocol = Array.isArray(p) ? p.join(',') : p;
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) this.binaryFrames++;
      else this.textFrames++;
      if (isBinary && encoding === 'json') return;
      const f = (isBinary ? msgpack.unpackr.unpack(data as Buffer) : JSON.parse(data.toString())) as Frame;
      this.frames.push(f);
      this.waiters = this.waiters.filter((w) => {
        if (!w.pred(f)) return true;
        w.resolve(f);
        return false;
      });
    });
  }

  static async connect(wsUrl: string, tok: string, opts: ConnectOptions = {}): Promise<TestClient> {
    const carrier = opts.carrier ?? 'query';
    const protocols: string[] = [];
    if (opts.encoding) protocols.push(`relaychat.v1.${opts.encoding}`);
    if (carrier === 'subprotocol') protocols.push(`relaychat.token.${tok}`);
    const headers: Record<string, string> = { ...opts.headers };
    if (carrier === 'cookie') headers.cookie = `relaychat_token=${tok}`;
    if (carrier === 'bearer') headers.authorization = `Bearer ${tok}`;
    const params = [carrier === 'query' ? `token=${encodeURIComponent(tok)}` : '', opts.query ?? ''].filter(
      Boolean,
    );
    const url = params.length ? `${wsUrl}?${params.join('&')}` : wsUrl;
    const ws = new WebSocket(url, protocols, { localAddress: opts.localAddress, headers });
    const client = new TestClient(ws, opts.encoding);
    if (opts.firstId !== undefined) client.nextId = opts.firstId;
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    });
    // A socket the node drops before its welcome fails here, naming its close code, rather than as a timeout.
    client.welcome = await Promise.race([
      client.waitFor((f) => f.type === 'welcome'),
      client.closed.then((code) => {
        throw new Error(`connection closed (${code}) before its welcome`);
      }),
    ]);
    return client;
  }

  /** Resolves with the first frame (already received or future) matching pred. */
  waitFor(pred: (f: Frame) => boolean, timeoutMs = 10_000): Promise<Frame> {
    const seen = this.frames.find(pred);
    if (seen) return Promise.resolve(seen);
    return this.next(pred, timeoutMs);
  }

  /** Resolves with the next future frame matching pred. */
  next(pred: (f: Frame) => boolean, timeoutMs = 10_000): Promise<Frame> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no matching frame within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
      });
    });
  }

  sendRaw(data: string | Buffer, binary = false): void {
    this.ws.send(data, { binary });
  }

  /** Sends a command (id assigned) and resolves with its reply, ok or not. */
  request(cmd: Record<string, unknown>, timeoutMs = 10_000): Promise<Frame> {
    const id = this.nextId++;
    const reply = this.next((f) => f.re === id, timeoutMs);
    if (this.encoding === 'msgpack') this.ws.send(msgpack.packr.pack({ id, ...cmd }), { binary: true });
    else this.ws.send(JSON.stringify({ id, ...cmd }));
    return reply;
  }

  /** Like request, but throws unless the reply is ok. */
  async ok(cmd: Record<string, unknown>): Promise<Frame> {
    const r = await this.request(cmd);
    if (!r.ok) throw new Error(`${String(cmd.type)} failed: ${JSON.stringify(r.error)}`);
    return r;
  }

  events(type: string, room?: string): Frame[] {
    return this.frames.filter((f) => f.type === type && (room === undefined || f.room === room));
  }

  waitClosed(timeoutMs = 10_000): Promise<number> {
    return Promise.race([
      this.closed,
      new Promise<number>((_, reject) =>
        setTimeout(() => reject(new Error('socket did not close')), timeoutMs),
      ),
    ]);
  }

  close(): Promise<number> {
    if (this.closeCode === null) this.ws.close();
    return this.closed;
  }
}

/** The HTTP status and JSON body an upgrade attempt gets (for rejected tokens). */
export async function upgradeStatus(
  wsUrl: string,
  query: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsUrl}${query}`, { headers });
    ws.on('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: body ? (JSON.parse(body) as unknown) : null }),
      );
    });
    ws.on('open', () => {
      ws.close();
      resolve({ status: 101, body: null });
    });
    ws.on('error', (err) => {
      if (!String(err.message).includes('Unexpected server response')) reject(err);
    });
  });
}

/** A presence frame that reports `user` joining (or leaving) the room (changes are batched: see docs/PROTOCOL.md). */
export function presenceChange(f: Frame, event: 'join' | 'leave', user: string): boolean {
  const list = f[event === 'join' ? 'joined' : 'left'];
  return f.type === 'presence' && Array.isArray(list) && list.includes(user);
}
