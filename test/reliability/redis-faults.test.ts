// Fault test 3: Redis paused, and Redis restarted with and without persistence, under live gateways.
import { startRedis, until, type GatewayProc, type RedisProc } from '../helpers/harness';
import { faultEnv, startNodes } from './nodes';
import { Publisher, score, stream, Subscriber } from './tracker';

let redis: RedisProc;
let nodes: GatewayProc[] = [];

afterEach(async () => {
  await Promise.all(nodes.map((n) => n.kill()));
  await redis.stop();
});

const ready = async (n: GatewayProc) => (await fetch(`${n.url}/readyz`)).status;

test('Redis paused (SIGSTOP 3 s): publishes fail instead of ok, /readyz says so, service resumes, 0 lost', async () => {
  redis = await startRedis();
  ({ nodes } = await startNodes(2, faultEnv(redis.url, { REDIS_COMMAND_TIMEOUT_MS: '500' })));
  const urls = nodes.map((n) => n.wsUrl);
  const subs = Array.from({ length: 4 }, (_, i) => new Subscriber(`sub${i}`, urls, 'paused', i));
  await Promise.all(subs.map((s) => s.start()));
  const pub = new Publisher('pub', urls, 'paused');
  const ackTimes: number[] = [];
  const origSet = pub.acked.set.bind(pub.acked);
  pub.acked.set = (k, v) => {
    ackTimes.push(Date.now());
    return origSet(k, v);
  };
  const streaming = stream(pub, 250, 50, 60_000);

  await new Promise((r) => setTimeout(r, 1000));
  redis.pause();
  const pausedAt = Date.now();
  const statuses = new Set<number>();
  await until('both nodes to report not ready', async () => {
    const s = await Promise.all(nodes.map(ready));
    s.forEach((x) => statuses.add(x));
    return s.every((x) => x === 503);
  });
  await new Promise((r) => setTimeout(r, Math.max(0, pausedAt + 3000 - Date.now())));
  const resumedAt = Date.now();
  redis.resume();
  await until('nodes ready again', async () => (await Promise.all(nodes.map(ready))).every((x) => x === 200));
  await streaming;

  const acked = [...pub.acked.values()];
  const top = Math.max(...acked.map((a) => a.offset));
  await until('subscribers caught up', () => subs.every((s) => s.last >= top), 20_000);
  const result = score(250, acked, subs);
  console.log(
    `redis-pause: ${JSON.stringify({ ...result, publishErrors: Object.fromEntries(pub.errors), retriedDuplicates: pub.duplicates })}`,
  );
  await pub.stop();
  await Promise.all(subs.map((s) => s.stop()));

  expect(statuses.has(503)).toBe(true);
  expect(pub.errors.get('unavailable') ?? 0).toBeGreaterThan(0);
  // No publish was acknowledged while Redis was frozen (a little slack for replies already in flight).
  expect(ackTimes.filter((t) => t > pausedAt + 100 && t < resumedAt)).toEqual([]);
  expect(result.acknowledged).toBe(250);
  expect(result).toMatchObject({ lost: 0, duplicated: 0, outOfOrder: 0, gaps: 0 });
});

async function restartScenario(appendonly: boolean) {
  redis = await startRedis({ appendonly });
  ({ nodes } = await startNodes(2, faultEnv(redis.url)));
  const urls = nodes.map((n) => n.wsUrl);
  const subs = Array.from({ length: 2 }, (_, i) => new Subscriber(`sub${i}`, urls, 'restart', i));
  await Promise.all(subs.map((s) => s.start()));
  const pub = new Publisher('pub', urls, 'restart');
  for (let seq = 1; seq <= 20; seq++) await pub.publish(seq, Date.now() + 5000);
  const before = [...pub.acked.values()];
  await until('subscribers got the first 20', () => subs.every((s) => s.last >= 20));
  const oldEpoch = before[0]!.epoch;

  await redis.restart();
  await until('nodes ready again', async () => (await Promise.all(nodes.map(ready))).every((x) => x === 200));
  for (let seq = 21; seq <= 40; seq++) await pub.publish(seq, Date.now() + 10_000);
  const after = [...pub.acked.values()].slice(20);
  await until(
    'subscribers got the last message',
    () => subs.every((s) => s.counts.has(`${after[19]!.epoch}:${after[19]!.offset}`)),
    10_000,
  );

  // A client that was away across the restart rejoins with its old position.
  const late = new Subscriber('late', urls, 'restart');
  late.epoch = oldEpoch;
  late.last = 10;
  await late.start();
  if (appendonly) await until('late client replayed 11..40', () => late.order.length === 30);
  const result = score(40, [...pub.acked.values()], subs);
  console.log(
    `redis-restart (appendonly ${appendonly}): ${JSON.stringify({ ...result, newEpoch: after[0]!.epoch !== oldEpoch, lateRecovered: late.notRecovered === 0, lateReceived: late.order.length })}`,
  );
  await pub.stop();
  await Promise.all([...subs, late].map((s) => s.stop()));
  return { result, oldEpoch, newEpoch: after[0]!.epoch, late, subs };
}

test('Redis restarted without persistence: the epoch changes and clients are told (gap / recovered:false), never silently', async () => {
  const { result, oldEpoch, newEpoch, late, subs } = await restartScenario(false);
  expect(newEpoch).not.toBe(oldEpoch);
  expect(result).toMatchObject({ acknowledged: 40, lost: 0, duplicated: 0, outOfOrder: 0 });
  // Each live subscriber got an explicit reset gap (to: null) naming the new epoch, or "" when it learnt of the
  // reset before the first new message was stored (offset 0 then continues into the new epoch, no second gap).
  for (const s of subs) {
    const resets = s.gaps.filter((g) => g.type === 'gap' && g.to === null);
    expect(resets).toHaveLength(1);
    expect(['', newEpoch]).toContain(resets[0]!.epoch);
    expect(s.counts.has(`${newEpoch}:1`)).toBe(true);
  }
  expect(late.notRecovered).toBe(1);
});

test('Redis restarted with appendonly persistence: same epoch, no gap, a returning client recovers fully', async () => {
  const { result, oldEpoch, newEpoch, late } = await restartScenario(true);
  expect(newEpoch).toBe(oldEpoch);
  expect(result).toMatchObject({ acknowledged: 40, lost: 0, duplicated: 0, outOfOrder: 0, gaps: 0 });
  expect(late.notRecovered).toBe(0);
  expect(late.order.map(([, o]) => o)).toEqual(Array.from({ length: 30 }, (_, i) => i + 11));
});
