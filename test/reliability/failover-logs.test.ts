// A Redis Cluster failover does not flood the logs: while a primary is replaced, every subscription on its shard
// fails to be placed again and again (before, one warning per channel per pass: ~90 lines a second per gateway).
// Now one line when the outage starts and one when every subscription is placed again; the attempts are counted
// in gateway_redis_errors_total{command="ssubscribe"}.
import { startGateway, token, TestClient, until, type GatewayProc } from '../helpers/harness';
import { startCluster, type RedisClusterProc } from '../helpers/redis-topologies';

let cluster: RedisClusterProc;
let gw: GatewayProc;
const clients: TestClient[] = [];

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await gw?.kill();
  await cluster?.stop();
});

async function metric(node: GatewayProc, series: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(series));
  return line ? Number(line.split(' ').pop()) : 0;
}

const count = (text: string, needle: string) => text.split(needle).length - 1;

test('a primary killed under 30 subscribed rooms: one log line when subscriptions start failing, one when placed again', async () => {
  cluster = await startCluster({ primaries: 3, replicas: 1 });
  gw = await startGateway({ REDIS_CLUSTER_NODES: cluster.seeds, CMD_RATE: '1000', CMD_BURST: '1000' });
  const watcher = await TestClient.connect(gw.wsUrl, token('watcher'));
  const speaker = await TestClient.connect(gw.wsUrl, token('speaker'));
  clients.push(watcher, speaker);
  const rooms = Array.from({ length: 30 }, (_, i) => `fo-${i}`);
  for (const room of rooms) await watcher.ok({ type: 'join', room });
  await speaker.ok({ type: 'join', room: rooms[0]! });

  const victim = await cluster.primaryOf(`rc:{r:${rooms[0]}}`);
  const heir = await cluster.replicaOf(victim);
  const logsBefore = gw.logs().length;
  await victim.kill();
  await until(
    'the replica promoted',
    async () => (await cluster.primaryOf(`rc:{r:${rooms[0]}}`)) === heir,
    30_000,
  );

  // Served again: a publish on the failed-over shard reaches the watcher live.
  let seq = 0;
  await until(
    'a publish on the failed-over shard to reach the watcher',
    async () => {
      const r = await speaker.request({ type: 'publish', room: rooms[0], body: ++seq });
      if (!r.ok) return false;
      await watcher.waitFor((f) => f.type === 'message' && f.id === r.id, 2000);
      return true;
    },
    30_000,
    200,
  );
  await until('the outage to be logged as over', () => {
    const logs = gw.logs().slice(logsBefore);
    return count(logs, 'sharded subscriptions failing') === count(logs, 'placed again after failures');
  });

  const logs = gw.logs().slice(logsBefore);
  const failing = count(logs, 'sharded subscriptions failing');
  const failedAttempts = await metric(gw, 'gateway_redis_errors_total{command="ssubscribe"');
  console.log(
    `failover-logs: ${JSON.stringify({ failingLines: failing, placedLines: count(logs, 'placed again after failures'), failedAttempts, warnLines: logs.split('\n').filter((l) => l.includes('"level":40')).length })}`,
  );
  expect(logs).not.toContain('sharded subscribe failed');
  expect(logs).not.toContain('MaxListenersExceededWarning');
  // What else a failover may log (the command client's reconnects) stays a handful of lines, not a flood.
  expect(logs.split('\n').filter((l) => l.includes('"level":40')).length).toBeLessThanOrEqual(10);
  expect(failing).toBeLessThanOrEqual(2);
  expect(count(logs, 'placed again after failures')).toBe(failing);
  if (failing > 0) expect(failedAttempts).toBeGreaterThanOrEqual(failing);
  // Every other room is still served.
  for (const room of rooms.slice(1, 4)) {
    await speaker.ok({ type: 'join', room });
    const r = await speaker.ok({ type: 'publish', room, body: 'after' });
    await watcher.waitFor((f) => f.type === 'message' && f.id === r.id);
  }
}, 90_000);
