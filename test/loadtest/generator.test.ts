// The load generator end to end, with real parts: two generator processes (spawned exactly as the benchmark
// does), client sockets from several loopback source addresses, a real redis-server, a two-node Socket.IO +
// redis-adapter cluster (loadtest/socketio-server.ts), a two-node floor (loadtest/floor-server.ts) and a real
// gateway node. Proves the accounting: every
// acknowledged message is delivered once to every room member (or the DM recipient), each delivery has a latency,
// and nothing is counted twice.
import { build } from 'esbuild';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Layout } from '../../loadtest/lib/ipc';
import { GeneratorPool } from '../../loadtest/lib/pool';
import { startNode, type NodeProc } from '../../loadtest/lib/servers';
import { startGateway, startRedis, TEST_SECRET, type GatewayProc, type RedisProc } from '../helpers/harness';

const OUT = resolve(`.tmp/loadtest-test-${process.pid}`);
const GENERATOR = join(OUT, 'generator.js');

beforeAll(async () => {
  mkdirSync(OUT, { recursive: true });
  // A private build of the loadtest entries, so the test never runs a stale dist/.
  await build({
    entryPoints: ['loadtest/generator.ts', 'loadtest/socketio-server.ts', 'loadtest/floor-server.ts'],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    outdir: OUT,
    logLevel: 'warning',
  });
});
afterAll(() => rmSync(OUT, { recursive: true, force: true }));

function layout(
  system: Layout['system'],
  kind: Layout['kind'],
  urls: string[],
  total: number,
  roomSize: number,
) {
  return {
    system,
    kind,
    urls,
    secret: TEST_SECRET,
    userPrefix: `${kind}-${process.pid}-u`,
    roomPrefix: `${kind}-${process.pid}-r`,
    roomSize,
    total,
    localAddresses: ['127.0.0.2', '127.0.0.3', '127.0.0.4'],
    payloadBytes: 32,
    connectConcurrency: 8,
    timeoutMs: 10_000,
  } satisfies Layout;
}

/** Connects, publishes one phase, waits for the deliveries, and returns the merged counts. */
async function runPhase(l: Layout, rate: number, durationMs: number) {
  const pool = GeneratorPool.start({ script: GENERATOR, count: 2 });
  try {
    await pool.init(l);
    const c = await pool.connect(0, l.total, l.kind === 'rooms');
    expect(c.errors).toEqual([]);
    expect(c.connected).toBe(l.total);
    const sent = await pool.phase(1, rate, durationMs);
    expect(sent.errors).toEqual([]);
    await pool.drain([1], sent.expected, 2000, 10_000);
    const result = (await pool.collect([1])).get(1)!;
    return { sent, result, lost: pool.lost() };
  } finally {
    await pool.closeConnections();
    await pool.stop();
  }
}

describe('load generator against Socket.IO with the Redis adapter (two nodes)', () => {
  let redis: RedisProc;
  const nodes: NodeProc[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    for (const name of ['sio-a', 'sio-b'])
      nodes.push(
        await startNode({
          name,
          script: join(OUT, 'socketio-server.js'),
          env: { NODE_ID: name, JWT_SECRET: TEST_SECRET, REDIS_URL: redis.url },
          readyPath: '/healthz',
          clientPath: (port) => `http://127.0.0.1:${port}`,
        }),
      );
  });
  afterAll(async () => {
    for (const n of nodes) await n.stop();
    await redis?.stop();
  });

  test('room messages: every acknowledged publish reaches all members of its room, once', async () => {
    // 4 rooms of 6; members alternate between the nodes, so half of each room is across Redis.
    const { sent, result, lost } = await runPhase(
      layout(
        'socketio',
        'rooms',
        nodes.map((n) => n.clientUrl),
        24,
        6,
      ),
      40,
      1000,
    );
    expect(sent.published).toBe(40);
    expect(result.expected).toBe(40 * 6);
    expect(result.delivered).toBe(result.expected);
    expect(result.duplicates).toBe(0);
    expect(result.latency.count).toBe(result.delivered);
    expect(lost).toBe(0);
    expect(nodes.map((n) => n.crashed)).toEqual([undefined, undefined]);
  });

  test('direct messages: each reaches its recipient on the other node', async () => {
    const { sent, result } = await runPhase(
      layout(
        'socketio',
        'dm',
        nodes.map((n) => n.clientUrl),
        10,
        1,
      ),
      30,
      1000,
    );
    expect(sent.published).toBe(30);
    expect(result.expected).toBe(30);
    expect(result.delivered).toBe(30);
    expect(result.duplicates).toBe(0);
  });
});

describe('load generator against a gateway node (memory engine)', () => {
  let gw: GatewayProc;

  beforeAll(async () => {
    gw = await startGateway({ CONN_RATE_PER_IP: '100000', USER_MSG_RATE: '1000' });
  });
  afterAll(async () => {
    await gw?.stop();
  });

  test('room messages and DMs over protocol v1 are all delivered once', async () => {
    const rooms = await runPhase(layout('relay', 'rooms', [gw.wsUrl], 20, 5), 40, 1000);
    expect(rooms.result.expected).toBe(40 * 5);
    expect(rooms.result.delivered).toBe(rooms.result.expected);
    expect(rooms.result.duplicates).toBe(0);
    expect(rooms.result.latency.count).toBe(rooms.result.delivered);
    const dms = await runPhase(layout('relay', 'dm', [gw.wsUrl], 10, 1), 30, 1000);
    expect(dms.result.delivered).toBe(30);
    expect(dms.result.duplicates).toBe(0);
    expect(rooms.lost + dms.lost).toBe(0);
  });
});

describe('load generator against the floor (two bare uWS nodes relaying Redis PUBLISH into native topics)', () => {
  let redis: RedisProc;
  const nodes: NodeProc[] = [];

  beforeAll(async () => {
    redis = await startRedis();
    for (const name of ['floor-a', 'floor-b'])
      nodes.push(
        await startNode({
          name,
          script: join(OUT, 'floor-server.js'),
          env: { NODE_ID: name, REDIS_URL: redis.url },
          readyPath: '/readyz',
          clientPath: (port) => `ws://127.0.0.1:${port}/ws`,
        }),
      );
  });
  afterAll(async () => {
    for (const n of nodes) await n.stop();
    await redis?.stop();
  });

  test('room messages across both nodes and DMs to the other node are all delivered once', async () => {
    const urls = nodes.map((n) => n.clientUrl);
    const rooms = await runPhase(layout('floor', 'rooms', urls, 24, 6), 40, 1000);
    expect(rooms.sent.published).toBe(40);
    expect(rooms.result.expected).toBe(40 * 6);
    expect(rooms.result.delivered).toBe(rooms.result.expected);
    expect(rooms.result.duplicates).toBe(0);
    expect(rooms.result.latency.count).toBe(rooms.result.delivered);
    const dms = await runPhase(layout('floor', 'dm', urls, 10, 1), 30, 1000);
    expect(dms.sent.published).toBe(30);
    expect(dms.result.delivered).toBe(30);
    expect(dms.result.duplicates).toBe(0);
    expect(rooms.lost + dms.lost).toBe(0);
    expect(nodes.map((n) => n.crashed)).toEqual([undefined, undefined]);
  });
});

describe('reconnect storm against two gateway nodes on one Redis', () => {
  let redis: RedisProc;
  let a: GatewayProc;
  let b: GatewayProc;

  beforeAll(async () => {
    redis = await startRedis();
    const env = { REDIS_URL: redis.url, CONN_RATE_PER_IP: '100000', USER_MSG_RATE: '1000' };
    a = await startGateway(env);
    b = await startGateway(env);
  });
  afterAll(async () => {
    await a?.stop();
    await b?.stop();
    await redis?.stop();
  });

  test('clients of a killed node resume on the other from their offsets: what was sent meanwhile arrives once', async () => {
    // 4 rooms of 6, members alternating between the nodes. B is killed before the phase, so every message of the
    // phase reaches B's former clients only as a replay when they rejoin A with `since`.
    const l = layout('relay', 'rooms', [a.wsUrl, b.wsUrl], 24, 6);
    const pool = GeneratorPool.start({ script: GENERATOR, count: 2 });
    try {
      await pool.init(l);
      expect((await pool.connect(0, l.total, true)).connected).toBe(24);
      await pool.arm(b.wsUrl);
      await b.kill();
      const sent = await pool.phase(1, 40, 1000);
      expect(sent.errors).toEqual([]);
      expect(sent.published).toBe(40);
      const back = await pool.reconnect(a.wsUrl);
      expect(back.errors).toEqual([]);
      expect(back.connected).toBe(12);
      expect(back.unrecovered).toBe(0);
      await pool.drain([1], sent.expected, 2000, 10_000);
      const result = (await pool.collect([1])).get(1)!;
      expect(result.expected).toBe(40 * 6);
      expect(result.delivered).toBe(result.expected);
      expect(result.duplicates).toBe(0);
      expect(pool.lost()).toBe(0);
      expect(pool.gapped()).toBe(0);
    } finally {
      await pool.closeConnections();
      await pool.stop();
    }
  });
});
