// Runs the k6 scripts' own code against a real gateway, since k6 itself cannot be installed here. A small shim
// (./k6-shim/) stands in for the k6 modules: each VU is a worker thread whose ws.connect blocks as in k6 while
// this thread does the networking with `ws`; metrics come back here and are checked like k6 thresholds would be.
// Executors are not emulated: each VU runs its scenario function once, with short durations from the env.
// What this proves: the scripts speak protocol v1 correctly (welcome, join, publish, dm, replies, offsets), mint
// tokens the gateway accepts, and their thresholds, evaluated here as k6 evaluates them (a threshold on a metric
// with no samples passes), pass against a healthy gateway and FAIL against a server that delivers nothing, one
// that delivers everything twice, one that drops every socket, and a gateway SIGKILLed mid-run.
// What it cannot prove: that k6 itself loads the scripts (k6-syntax.test.ts parses them at k6 v0.48's language
// level) or how k6's executors schedule VUs.
import { build, type Plugin } from 'esbuild';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MessageChannel, Worker } from 'node:worker_threads';
import WebSocket, { WebSocketServer } from 'ws';
import { TcpProxy } from '../client/tcp-proxy';
import { startGateway, TEST_SECRET, until, type GatewayProc } from '../helpers/harness';

const K6_DIR = resolve('loadtest/k6');
const SHIM = resolve('test/loadtest/k6-shim');
const OUT = resolve(`.tmp/k6-shim-${process.pid}`);
const SHIMS: Record<string, string> = {
  k6: 'k6.js',
  'k6/ws': 'ws.js',
  'k6/http': 'http.js',
  'k6/metrics': 'metrics.js',
  'k6/execution': 'execution.js',
  'k6/data': 'data.js',
  'k6/crypto': 'crypto.js',
  'k6/encoding': 'encoding.js',
};

const shimPlugin: Plugin = {
  name: 'k6-shim',
  setup(b) {
    b.onResolve({ filter: /^k6(\/.*)?$/ }, (args) => {
      const file = SHIMS[args.path];
      if (!file) throw new Error(`the k6 shim has no ${args.path}`);
      return { path: join(SHIM, file) };
    });
  },
};

interface Metrics {
  trend: Record<string, number[]>;
  rate: Record<string, { trues: number; total: number }>;
  counter: Record<string, number>;
  thresholds: Record<string, string[]>;
}

/** The thresholds that fail, evaluated as k6 does: a metric with no samples is not evaluated (passes). */
function failedThresholds(m: Metrics): string[] {
  const failed: string[] = [];
  for (const [name, rules] of Object.entries(m.thresholds)) {
    for (const rule of rules) {
      const r = /^(p\((\d+(?:\.\d+)?)\)|rate|count)\s*(<=|>=|<|>)\s*([\d.]+)$/.exec(rule);
      if (!r) throw new Error(`cannot evaluate ${name}: ${rule}`);
      let value: number | undefined;
      if (r[1] === 'count') value = m.counter[name];
      else if (r[1] === 'rate') {
        const x = m.rate[name];
        value = x && x.total > 0 ? x.trues / x.total : undefined;
      } else {
        const xs = [...(m.trend[name] ?? [])].sort((a, b) => a - b);
        value = xs.length
          ? xs[Math.min(xs.length - 1, Math.ceil((Number(r[2]) / 100) * xs.length) - 1)]
          : undefined;
      }
      if (value === undefined) continue;
      const lim = Number(r[4]);
      const ok = { '<': value < lim, '<=': value <= lim, '>': value > lim, '>=': value >= lim }[r[3]!];
      if (!ok) failed.push(`${name} ${rule} (${value})`);
    }
  }
  return failed;
}

interface VuSpec {
  exec: string;
  scenario: { name: string; startTime: number; iteration: number };
  /** Iterations to run one after the other (k6 starts the next when one returns); 1 by default. */
  iterations?: number;
  /** Environment of this VU only, over the shared one. */
  env?: Record<string, string>;
}

/** Bundles `script` with the shim and runs one worker per VU; resolves with the metrics once all VUs end. */
async function runK6(
  script: string,
  env: Record<string, string>,
  vus: VuSpec[],
  delays: number[] = [],
): Promise<Metrics> {
  // Scenario start times are given relative to the call: the time spent bundling does not count.
  const called = Date.now();
  const entry = join(OUT, `${script}.entry.js`);
  writeFileSync(
    entry,
    `import { workerData } from 'node:worker_threads';
     import * as script from ${JSON.stringify(join(K6_DIR, script))};
     import { port } from ${JSON.stringify(join(SHIM, 'runtime.js'))};
     port.postMessage({ op: 'options', thresholds: script.options.thresholds });
     try {
       for (let i = 0; i < workerData.iterations; i++) { globalThis.__ITER = i; script[workerData.exec](); }
       port.postMessage({ op: 'done' });
     }
     catch (e) { port.postMessage({ op: 'done', error: String(e && e.stack || e) }); }`,
  );
  const bundle = join(OUT, `${script}.vu.mjs`);
  await build({
    entryPoints: [entry],
    bundle: true,
    format: 'esm',
    platform: 'node',
    outfile: bundle,
    plugins: [shimPlugin],
    logLevel: 'silent',
  });

  const bundled = Date.now() - called;
  vus = vus.map((v) => ({ ...v, scenario: { ...v.scenario, startTime: v.scenario.startTime + bundled } }));
  const metrics: Metrics = { trend: {}, rate: {}, counter: {}, thresholds: {} };
  const signal = new Int32Array(new SharedArrayBuffer(4 * vus.length));
  const errors: string[] = [];
  const runs = vus.map(async (spec, slot) => {
    if (delays[slot]) await new Promise((r) => setTimeout(r, delays[slot]));
    const { port1, port2 } = new MessageChannel();
    const sockets = new Map<number, WebSocket>();
    const post = (msg: Record<string, unknown>) => {
      port1.postMessage(msg);
      Atomics.add(signal, slot, 1);
      Atomics.notify(signal, slot);
    };
    const worker = new Worker(bundle, {
      workerData: {
        port: port2,
        signal,
        slot,
        vu: slot + 1,
        env: { ...env, ...spec.env },
        scenario: spec.scenario,
        exec: spec.exec,
        iterations: spec.iterations ?? 1,
      },
      transferList: [port2],
    });
    await new Promise<void>((resolveVu) => {
      port1.on('message', (m: { op: string; id: number; [k: string]: unknown }) => {
        if (m.op === 'options') metrics.thresholds = m.thresholds as Record<string, string[]>;
        else if (m.op === 'metric') {
          const { type, name, value, tags } = m as unknown as {
            type: string;
            name: string;
            value: number;
            tags?: { __declare?: boolean };
          };
          if (tags?.__declare) return;
          if (type === 'trend') (metrics.trend[name] ??= []).push(value);
          else if (type === 'rate') {
            const r = (metrics.rate[name] ??= { trues: 0, total: 0 });
            r.total += 1;
            if (value !== 0) r.trues += 1;
          } else if (type === 'counter') metrics.counter[name] = (metrics.counter[name] ?? 0) + value;
        } else if (m.op === 'connect') {
          const ws = new WebSocket(m.url as string, { headers: m.headers as Record<string, string> });
          sockets.set(m.id, ws);
          ws.on('open', () => post({ id: m.id, kind: 'open' }));
          ws.on('message', (data: Buffer) => post({ id: m.id, kind: 'message', data: data.toString() }));
          ws.on('unexpected-response', (_req, res) => {
            post({ id: m.id, kind: 'close', status: res.statusCode, code: 1006 });
            ws.terminate();
          });
          ws.on('error', (e) => post({ id: m.id, kind: 'error', message: e.message }));
          ws.on('close', (code: number) => post({ id: m.id, kind: 'close', code }));
        } else if (m.op === 'send') sockets.get(m.id)?.send(m.data as string);
        else if (m.op === 'close') sockets.get(m.id)?.close(1000);
        else if (m.op === 'done') {
          if (m.error) errors.push(`VU ${slot + 1}: ${String(m.error)}`);
          resolveVu();
        }
      });
    });
    await worker.terminate();
    port1.close();
  });
  await Promise.all(runs);
  expect(errors).toEqual([]);
  return metrics;
}

const rate = (m: Metrics, name: string) => m.rate[name] ?? { trues: 0, total: 0 };

async function connections(g: GatewayProc): Promise<number> {
  const text = await (await fetch(`${g.url}/metrics`)).text();
  return Number(/^gateway_connections(?:\{[^}]*\})? (\d+)$/m.exec(text)?.[1]);
}

type FakeMode = 'silent' | 'twice' | 'drop';

/**
 * A server that speaks enough of protocol v1 for the scripts (welcome, join, publish, dm, inbox, all answered
 * ok) but misbehaves: `silent` delivers nothing, `twice` delivers every message twice, `drop` closes every socket
 * after a second.
 */
async function fakeServer(mode: FakeMode): Promise<{ url: string; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise<void>((r) => wss.once('listening', () => r()));
  const rooms = new Map<string, { offset: number; members: Set<WebSocket> }>();
  const roomOf = (name: string) => {
    let r = rooms.get(name);
    if (!r) rooms.set(name, (r = { offset: 0, members: new Set() }));
    return r;
  };
  wss.on('connection', (ws) => {
    const send = (f: object) => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(f));
    send({ type: 'welcome', session: 's', user: 'u', node: 'fake', protocol: 1, expiresAt: null });
    if (mode === 'drop') setTimeout(() => ws.terminate(), 1000);
    ws.on('message', (raw) => {
      const c = JSON.parse(String(raw)) as {
        id: number;
        type: string;
        room: string;
        to: string;
        body: unknown;
      };
      const reply = (fields: object) => send({ re: c.id, ok: true, ...fields });
      if (c.type === 'join') {
        const r = roomOf(c.room);
        r.members.add(ws);
        reply({ room: c.room, presence: [], offset: r.offset, epoch: 'e' });
      } else if (c.type === 'publish') {
        const r = roomOf(c.room);
        r.offset += 1;
        reply({ id: `m${r.offset}`, offset: r.offset, epoch: 'e', ts: Date.now(), duplicate: false });
        const event = {
          type: 'message',
          room: c.room,
          offset: r.offset,
          epoch: 'e',
          from: 'u',
          body: c.body,
        };
        if (mode === 'silent') return;
        for (const m of r.members) {
          if (m.readyState !== WebSocket.OPEN) continue;
          m.send(JSON.stringify(event));
          if (mode === 'twice') m.send(JSON.stringify(event));
        }
      } else if (c.type === 'dm') {
        reply({ id: 'd', offset: 1, epoch: 'e', ts: Date.now(), delivered: 0, live: false, stored: true });
      } else reply({ offset: 0, epoch: 'e', recovered: true });
    });
  });
  const port = (wss.address() as { port: number }).port;
  return {
    url: `ws://127.0.0.1:${port}/ws`,
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => r());
      }),
  };
}

describe('k6 scripts run against a real gateway through the k6 shim', () => {
  let gw: GatewayProc;
  let env: Record<string, string>;

  beforeAll(async () => {
    mkdirSync(OUT, { recursive: true });
    gw = await startGateway({ CONN_RATE_PER_IP: '1000' });
    env = {
      WS_URL: gw.wsUrl,
      JWT_SECRET: TEST_SECRET,
      USER_PREFIX: `k6-${process.pid}-`,
      ROOM_PREFIX: `k6-${process.pid}-r`,
      MIN_SESSION_S: '1',
      // These tests prove delivery (counts, order, duplicates, lost connections, checks), not speed: a latency
      // figure depends on the machine's load. The latency thresholds stay in the scripts and are evaluated, with
      // a bound no sample can reach (longer than any session here); the scripts' defaults (250 ms, 1000 ms) are
      // for real k6 runs (loadtest/README.md).
      P99_MS: '600000',
      CONNECT_P99_MS: '600000',
    };
  });
  afterAll(async () => {
    await gw?.stop();
    rmSync(OUT, { recursive: true, force: true });
  });

  const now = () => Date.now();
  const vus = (n: number, exec: string, name: string, startTime: number): VuSpec[] =>
    Array.from({ length: n }, (_, i) => ({ exec, scenario: { name, startTime, iteration: i } }));
  const chat = { ROOMS: '2', ROOM_SIZE: '3', MSG_INTERVAL_MS: '300', RAMP_S: '0', DURATION_S: '3' };

  test('connect-storm.js: every session is welcomed, no errors, thresholds pass', async () => {
    const m = await runK6(
      'connect-storm.js',
      { ...env, CONNECTIONS: '4', RAMP_S: '0', HOLD_S: '3' },
      vus(4, 'default', 'storm', now()),
    );
    expect(m.trend.welcome_time).toHaveLength(4);
    expect(m.counter.sessions_welcomed).toBe(4);
    expect(rate(m, 'errors')).toEqual({ trues: 0, total: 4 });
    expect(m.counter.connections_lost).toBe(0);
    expect(failedThresholds(m)).toEqual([]);
  });

  test('room-chat.js: members see every offset of their room, with latencies; thresholds pass', async () => {
    const m = await runK6('room-chat.js', { ...env, ...chat }, vus(6, 'default', 'chat', now()));
    const sent = m.counter.messages_sent ?? 0;
    expect(sent).toBeGreaterThanOrEqual(6 * 3); // every member publishes, several times
    // Each message reaches its room's 3 members, less those still in flight when the sessions closed.
    expect(m.counter.messages_received).toBeGreaterThan(sent * 3 * 0.8);
    expect(m.trend.e2e_latency!.length).toBe(m.counter.messages_received);
    expect(rate(m, 'delivery_ratio').trues).toBe(rate(m, 'delivery_ratio').total);
    expect(rate(m, 'errors').trues).toBe(0);
    expect(m.counter.duplicates).toBe(0);
    expect(rate(m, 'checks')).toEqual({ trues: 12, total: 12 }); // handshake + messages received, per VU
    expect(failedThresholds(m)).toEqual([]);
  });

  test('fanout.js: subscribers and publishers in their rooms, every offset delivered; thresholds pass', async () => {
    const e = {
      ...env,
      ROOMS: '2',
      SUBSCRIBERS: '3',
      PUBLISHERS: '1',
      PUBLISH_RATE: '5',
      RAMP_S: '0',
      // Publishers' sessions last DURATION_S from their start: enough left after a slow worker start.
      DURATION_S: '4',
      SETTLE_S: '1',
    };
    const subs = vus(6, 'subscriber', 'subscribers', now());
    const pubs = vus(2, 'publisher', 'publishers', now() + 500);
    const m = await runK6('fanout.js', e, [...subs, ...pubs], [...subs.map(() => 0), 500, 500]);
    const sent = m.counter.messages_sent ?? 0;
    expect(sent).toBeGreaterThanOrEqual(2 * 3); // 5/s for up to 4 s each, less the worker start, connect and join
    // 3 subscribers + the publisher itself per room.
    expect(m.counter.messages_received).toBeGreaterThan(sent * 4 * 0.8);
    expect(rate(m, 'delivery_ratio').trues).toBe(rate(m, 'delivery_ratio').total);
    expect(rate(m, 'errors').trues).toBe(0);
    expect(failedThresholds(m)).toEqual([]);
  });

  test('fanout.js in `k6 run --vus --duration` mode: the default function plays both roles', async () => {
    const e = { ...env, ROOMS: '1', SUBSCRIBERS: '2', PUBLISHERS: '1', DURATION_S: '3', SETTLE_S: '1' };
    const m = await runK6('fanout.js', e, vus(3, 'default', 'default', now()));
    expect(m.counter.messages_sent).toBeGreaterThanOrEqual(4);
    expect(m.counter.messages_received).toBeGreaterThan((m.counter.messages_sent ?? 0) * 3 * 0.8);
    expect(failedThresholds(m)).toEqual([]);
  });

  test('dm.js: partners receive each other’s DMs in sequence; thresholds pass', async () => {
    const e = { ...env, PAIRS: '2', DM_INTERVAL_MS: '200', RAMP_S: '0', DURATION_S: '3' };
    const m = await runK6('dm.js', e, vus(4, 'default', 'dm', now()));
    expect(m.counter.messages_sent).toBeGreaterThanOrEqual(4 * 3); // every user sends, several times
    expect(m.counter.messages_received).toBeGreaterThan((m.counter.messages_sent ?? 0) * 0.8);
    expect(rate(m, 'delivery_ratio').trues).toBe(rate(m, 'delivery_ratio').total);
    expect(rate(m, 'errors').trues).toBe(0);
    expect(failedThresholds(m)).toEqual([]);
  });

  test('room-chat.js: a VU whose connection is cut reconnects after a backoff and rejoins with `since`', async () => {
    const proxy = await TcpProxy.start(gw.port);
    try {
      const e = {
        ...env,
        ROOMS: '1',
        ROOM_SIZE: '2',
        MSG_INTERVAL_MS: '200',
        RAMP_S: '0',
        DURATION_S: '5',
        BACKOFF_MS: '200',
      };
      const [direct, viaProxy] = vus(2, 'default', 'chat', now());
      viaProxy!.env = { WS_URL: proxy.wsUrl, ROOM_PREFIX: `${env.ROOM_PREFIX}-since-` };
      direct!.env = { ROOM_PREFIX: `${env.ROOM_PREFIX}-since-` };
      viaProxy!.iterations = 2;
      const run = runK6('room-chat.js', e, [direct!, viaProxy!]);
      await until('both members joined', async () => (await connections(gw)) >= 2);
      await new Promise((r) => setTimeout(r, 1000)); // let messages flow before the cut
      proxy.hold();
      proxy.cut();
      await new Promise((r) => setTimeout(r, 2000)); // the other member publishes ~10 messages meanwhile
      proxy.release();
      const m = await run;
      const sent = m.counter.messages_sent ?? 0;
      expect(m.counter.connections_lost).toBe(1);
      expect(rate(m, 'errors').trues).toBe(1);
      // Both members got every message, those published while one was away included (replayed after `since`),
      // less at most the last two per member, in flight when the sessions ended.
      expect(m.counter.messages_received).toBeGreaterThanOrEqual(2 * sent - 4);
      expect(rate(m, 'delivery_ratio').trues).toBe(rate(m, 'delivery_ratio').total);
      expect(m.counter.duplicates).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  describe('thresholds fail when the server misbehaves', () => {
    const attack = async (mode: FakeMode, script: string, extra: Record<string, string>, n: number) => {
      const fake = await fakeServer(mode);
      try {
        return await runK6(script, { ...env, ...extra, WS_URL: fake.url }, vus(n, 'default', 'x', now()));
      } finally {
        await fake.close();
      }
    };

    test('room-chat.js against a server that delivers nothing', async () => {
      const m = await attack('silent', 'room-chat.js', chat, 3);
      expect(m.counter.messages_sent).toBeGreaterThan(0);
      expect(m.counter.messages_received).toBe(0);
      const failed = failedThresholds(m).join('\n');
      expect(failed).toMatch(/^messages_received count>0/m);
      expect(failed).toMatch(/^checks rate>=0.99/m);
    });

    test('dm.js against a server that delivers nothing', async () => {
      const m = await attack(
        'silent',
        'dm.js',
        { PAIRS: '1', DM_INTERVAL_MS: '200', RAMP_S: '0', DURATION_S: '2' },
        2,
      );
      expect(m.counter.messages_sent).toBeGreaterThan(0);
      expect(failedThresholds(m).join('\n')).toMatch(/^messages_received count>0/m);
    });

    test('room-chat.js against a server that delivers every message twice', async () => {
      const m = await attack('twice', 'room-chat.js', chat, 3);
      expect(m.counter.duplicates).toBeGreaterThan(0);
      expect(failedThresholds(m).join('\n')).toMatch(/^duplicates count<=0/m);
    });

    test('room-chat.js against a server that drops every socket after a second', async () => {
      const m = await attack('drop', 'room-chat.js', chat, 3);
      expect(m.counter.connections_lost).toBe(3);
      expect(rate(m, 'errors').trues).toBeGreaterThanOrEqual(3);
      const failed = failedThresholds(m).join('\n');
      expect(failed).toMatch(/^connections_lost count<=0/m);
      expect(failed).toMatch(/^errors rate</m);
    });

    test('room-chat.js against a real gateway SIGKILLed mid-run', async () => {
      const victim = await startGateway({ CONN_RATE_PER_IP: '1000' });
      const run = runK6(
        'room-chat.js',
        { ...env, ...chat, WS_URL: victim.wsUrl },
        vus(3, 'default', 'x', now()),
      );
      await until('3 connections on the victim', async () => (await connections(victim)) === 3);
      await victim.kill();
      const m = await run;
      expect(m.counter.connections_lost).toBe(3);
      expect(failedThresholds(m).join('\n')).toMatch(/^connections_lost count<=0/m);
    });
  });
});
