// Fault test 7: a short soak. Steady chat load on two nodes for SOAK_MS (20 s by default; longer with
// SOAK_MS=120000); RSS and event-loop lag are sampled every second and must stay flat; nothing is lost.
import { startRedis, until, type GatewayProc, type RedisProc } from '../helpers/harness';
import { faultEnv, rssKb, startNodes } from './nodes';
import { percentile, Publisher, score, Subscriber } from './tracker';

const SOAK_MS = Number(process.env.SOAK_MS ?? 20_000);
let redis: RedisProc;
let nodes: GatewayProc[] = [];

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.kill()));
  await redis?.stop();
});

async function loopLagSeconds(node: GatewayProc): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('nodejs_eventloop_lag_p99_seconds'));
  return Number(line?.split(' ').pop());
}

test(`soak: steady load for ${SOAK_MS / 1000} s keeps RSS and event-loop lag flat and loses nothing`, async () => {
  redis = await startRedis();
  ({ nodes } = await startNodes(2, faultEnv(redis.url)));
  const urls = nodes.map((n) => n.wsUrl);
  const rooms = Array.from({ length: 10 }, (_, i) => `soak-${i}`);
  const subs = rooms.flatMap((room, r) =>
    Array.from({ length: 5 }, (_, i) => new Subscriber(`s${r}-${i}`, urls, room, i)),
  );
  await Promise.all(subs.map((s) => s.start()));
  const pubs = rooms.map((room) => new Publisher(`p-${room}`, urls, room));

  const samples: { t: number; rss: number[]; lag: number[] }[] = [];
  const start = Date.now();
  let seq = 0;
  const publishing = (async () => {
    // 10 rooms x 10 msg/s = 100 publishes/s, 500 deliveries/s.
    while (Date.now() - start < SOAK_MS) {
      seq++;
      await Promise.all(pubs.map((p) => p.publish(seq, Date.now() + 10_000)));
      const due = start + seq * 100;
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()));
    }
  })();
  while (Date.now() - start < SOAK_MS) {
    await new Promise((r) => setTimeout(r, 1000));
    samples.push({
      t: Date.now() - start,
      rss: nodes.map((n) => rssKb(n.pid)),
      lag: await Promise.all(nodes.map(loopLagSeconds)),
    });
  }
  await publishing;

  const lost = [];
  let duplicated = 0;
  for (const [i, p] of pubs.entries()) {
    const acked = [...p.acked.values()];
    const top = Math.max(...acked.map((a) => a.offset));
    const roomSubs = subs.filter((s) => s.name.startsWith(`s${i}-`));
    await until('subscribers caught up', () => roomSubs.every((s) => s.last >= top), 20_000);
    const r = score(seq, acked, roomSubs);
    lost.push(r.lost);
    duplicated += r.duplicated;
  }
  const half = Math.floor(samples.length / 2);
  const maxRss = (from: number, to: number) => Math.max(...samples.slice(from, to).flatMap((s) => s.rss));
  const rssFirstHalf = maxRss(0, half);
  const rssSecondHalf = maxRss(half, samples.length);
  const lags = samples.flatMap((s) => s.lag);
  const latencies = subs.flatMap((s) => s.latencies);
  const summary = {
    seconds: SOAK_MS / 1000,
    published: seq * rooms.length,
    delivered: subs.reduce((n, s) => n + s.order.length, 0),
    lost: lost.reduce((a, b) => a + b, 0),
    duplicated,
    latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99) },
    rssKb: { firstHalfMax: rssFirstHalf, secondHalfMax: rssSecondHalf },
    eventLoopLagP99Ms: { max: Math.max(...lags) * 1000, median: percentile(lags, 50) * 1000 },
  };
  console.log(`soak: ${JSON.stringify(summary)}`);
  await Promise.all([...pubs, ...subs].map((c) => c.stop()));

  expect(summary.lost).toBe(0);
  expect(duplicated).toBe(0);
  // Flat: the second half peaks no more than 32 MB above the first half (allocator noise), lag stays low.
  expect(rssSecondHalf - rssFirstHalf).toBeLessThan(32 * 1024);
  expect(summary.eventLoopLagP99Ms.max).toBeLessThan(500);
}, 120_000);
