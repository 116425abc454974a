// Fault tests 1 and 2: a node is SIGKILLed, then every node is restarted in turn, during a steady publish stream.
// Acknowledged messages: 0 lost, 0 duplicated, in order, at every subscriber. On one Redis and on a Redis Cluster.
import { startGateway, until, type GatewayProc } from '../helpers/harness';
import { faultEnv, startBackend, startNodes, TOPOLOGIES, type Backend } from './nodes';
import { Publisher, score, stream, Subscriber } from './tracker';

let backend: Backend;
let nodes: GatewayProc[] = [];

async function run(room: string, urls: string[], count: number, rate: number, fault: () => Promise<void>) {
  const subs = Array.from({ length: 6 }, (_, i) => new Subscriber(`sub${i}`, urls, room, i));
  await Promise.all(subs.map((s) => s.start()));
  const pub = new Publisher('pub', urls, room);
  const streaming = stream(pub, count, rate, 60_000);
  await fault();
  await streaming;
  const acked = [...pub.acked.values()];
  const top = Math.max(...acked.map((a) => a.offset));
  await until(
    'every subscriber to reach the last acknowledged offset',
    () => subs.every((s) => s.last >= top),
    20_000,
  );
  await pub.stop();
  await Promise.all(subs.map((s) => s.stop()));
  const result = score(count, acked, subs);
  const reconnects = subs.reduce((n, s) => n + s.reconnects, 0);
  console.log(
    `${room} (${backend.topology}): ${JSON.stringify({ ...result, subscriberReconnects: reconnects, publishRetries: pub.attempts - count, publishErrors: Object.fromEntries(pub.errors) })}`,
  );
  return { result, reconnects };
}

describe.each(TOPOLOGIES)('on %s Redis', (topology) => {
  beforeEach(async () => {
    backend = await startBackend(topology);
  }, 60_000); // a Redis Cluster forms in a few seconds, more on a loaded machine
  afterEach(async () => {
    await Promise.all(nodes.map((n) => n.kill()));
    await backend.stop();
  });

  test('SIGKILL of one of three nodes mid-stream: its clients reconnect elsewhere and recover, 0 lost, 0 duplicated', async () => {
    const started = await startNodes(3, faultEnv(backend.env));
    nodes = started.nodes;
    const { result, reconnects } = await run('crash', started.urls, 300, 100, async () => {
      await new Promise((r) => setTimeout(r, 1000));
      await nodes[2]!.kill();
    });
    expect(reconnects).toBeGreaterThanOrEqual(2); // the two subscribers that started on node 2
    expect(result.acknowledged).toBe(300);
    expect(result).toMatchObject({ lost: 0, duplicated: 0, outOfOrder: 0, gaps: 0 });
  }, 60_000);

  test('rolling restart (SIGTERM each node in turn, then start it again) mid-stream: 0 lost, 0 duplicated', async () => {
    const started = await startNodes(3, faultEnv(backend.env));
    nodes = started.nodes;
    const { result, reconnects } = await run('rolling', started.urls, 400, 80, async () => {
      for (let i = 0; i < nodes.length; i++) {
        await new Promise((r) => setTimeout(r, 700));
        const old = nodes[i]!;
        expect(await old.stop()).toBe(0);
        nodes[i] = await startGateway({
          ...faultEnv(backend.env),
          PORT: String(old.port),
          NODE_ID: old.nodeId,
        });
      }
    });
    expect(reconnects).toBeGreaterThanOrEqual(6);
    expect(result.acknowledged).toBe(400);
    expect(result).toMatchObject({ lost: 0, duplicated: 0, outOfOrder: 0, gaps: 0 });
  }, 60_000);
});
