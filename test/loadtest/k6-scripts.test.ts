// Runs the k6 scripts' own code against a real gateway, since k6 itself cannot be installed here. A small shim
// (./k6-shim/) stands in for the k6 modules: each VU is a worker thread whose ws.connect blocks as in k6 while
// this thread does the networking with `ws`; metrics come back here and are checked like k6 thresholds would be.
// Executors are not emulated: each VU runs its scenario function once, with short durations from the env.
// What this proves: the scripts speak protocol v1 correctly (welcome, join, publish, dm, replies, offsets), mint
// tokens the gateway accepts, and their metrics say what they claim (no holes, no errors, latencies recorded).
import { build, type Plugin } from 'esbuild';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { MessageChannel, Worker } from 'node:worker_threads';
import WebSocket from 'ws';
import { startGateway, TEST_SECRET, type GatewayProc } from '../helpers/harness';

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
}

interface VuSpec {
  exec: string;
  scenario: { name: string; startTime: number; iteration: number };
}

/** Bundles `script` with the shim and runs one worker per VU; resolves with the metrics once all VUs end. */
async function runK6(
  script: string,
  env: Record<string, string>,
  vus: VuSpec[],
  delays: number[] = [],
): Promise<Metrics> {
  const entry = join(OUT, `${script}.entry.js`);
  writeFileSync(
    entry,
    `import { workerData } from 'node:worker_threads';
     import * as script from ${JSON.stringify(join(K6_DIR, script))};
     import { port } from ${JSON.stringify(join(SHIM, 'runtime.js'))};
     try { script[workerData.exec](); port.postMessage({ op: 'done' }); }
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

  const metrics: Metrics = { trend: {}, rate: {}, counter: {} };
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
      workerData: { port: port2, signal, slot, vu: slot + 1, env, scenario: spec.scenario, exec: spec.exec },
      transferList: [port2],
    });
    await new Promise<void>((resolveVu) => {
      port1.on('message', (m: { op: string; id: number; [k: string]: unknown }) => {
        if (m.op === 'metric') {
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
    };
  });
  afterAll(async () => {
    await gw?.stop();
    rmSync(OUT, { recursive: true, force: true });
  });

  const now = () => Date.now();
  const vus = (n: number, exec: string, name: string, startTime: number): VuSpec[] =>
    Array.from({ length: n }, (_, i) => ({ exec, scenario: { name, startTime, iteration: i } }));

  test('connect-storm.js: every session is welcomed, no errors', async () => {
    const m = await runK6(
      'connect-storm.js',
      { ...env, CONNECTIONS: '4', HOLD_S: '1' },
      vus(4, 'default', 'storm', now()),
    );
    expect(m.trend.welcome_time).toHaveLength(4);
    expect(m.counter.sessions_welcomed).toBe(4);
    expect(rate(m, 'errors')).toEqual({ trues: 0, total: 4 });
  });

  test('room-chat.js: members see every offset of their room, with latencies, and no errors', async () => {
    const e = { ...env, ROOMS: '2', ROOM_SIZE: '3', MSG_INTERVAL_MS: '300', RAMP_S: '0', DURATION_S: '3' };
    const m = await runK6('room-chat.js', e, vus(6, 'default', 'chat', now()));
    const sent = m.counter.messages_sent ?? 0;
    expect(sent).toBeGreaterThanOrEqual(6 * 5);
    // Each message reaches its room's 3 members, less those still in flight when the sessions closed.
    expect(m.counter.messages_received).toBeGreaterThan(sent * 3 * 0.8);
    expect(m.trend.e2e_latency!.length).toBe(m.counter.messages_received);
    expect(rate(m, 'delivery_ratio').trues).toBe(rate(m, 'delivery_ratio').total);
    expect(rate(m, 'errors').trues).toBe(0);
    expect(m.counter.duplicates ?? 0).toBe(0);
  });

  test('fanout.js: subscribers and publishers in their rooms, every offset delivered', async () => {
    const e = {
      ...env,
      ROOMS: '2',
      SUBSCRIBERS: '3',
      PUBLISHERS: '1',
      PUBLISH_RATE: '5',
      RAMP_S: '0',
      DURATION_S: '2',
    };
    // Subscribers stay for RAMP_S + DURATION_S + 10 s after their scenario starts; start it 9 s "earlier" so the
    // test does not wait out the settle margins.
    const subs = vus(6, 'subscriber', 'subscribers', now() - 9000);
    const pubs = vus(2, 'publisher', 'publishers', now() + 500);
    const m = await runK6('fanout.js', e, [...subs, ...pubs], [...subs.map(() => 0), 500, 500]);
    const sent = m.counter.messages_sent ?? 0;
    expect(sent).toBeGreaterThanOrEqual(2 * 8);
    // 3 subscribers + the publisher itself per room.
    expect(m.counter.messages_received).toBeGreaterThan(sent * 4 * 0.8);
    expect(rate(m, 'delivery_ratio').trues).toBe(rate(m, 'delivery_ratio').total);
    expect(rate(m, 'errors').trues).toBe(0);
  });

  test('dm.js: partners receive each other’s DMs in sequence', async () => {
    const e = { ...env, PAIRS: '2', DM_INTERVAL_MS: '200', RAMP_S: '0', DURATION_S: '2' };
    const m = await runK6('dm.js', e, vus(4, 'default', 'dm', now()));
    expect(m.counter.messages_sent).toBeGreaterThanOrEqual(4 * 7);
    expect(m.counter.messages_received).toBeGreaterThan((m.counter.messages_sent ?? 0) * 0.8);
    expect(rate(m, 'delivery_ratio').trues).toBe(rate(m, 'delivery_ratio').total);
    expect(rate(m, 'errors').trues).toBe(0);
  });
});
