// Fault test 4: one client stops reading while thousands of messages flow. The node stops pushing to it at
// SLOW_CONSUMER_BYTES (memory stays bounded), everyone else keeps receiving, and once the slow client reads
// again it gets every message or an explicit gap for what the history no longer holds. On one Redis and on a
// Redis Cluster.
import { until, type GatewayProc } from '../helpers/harness';
import { faultEnv, rssKb, startBackend, startNodes, TOPOLOGIES, type Backend } from './nodes';
import { percentile, Publisher, score, Subscriber } from './tracker';

let backend: Backend | undefined;
let nodes: GatewayProc[] = [];
let sampler: NodeJS.Timeout | undefined;

afterEach(async () => {
  clearInterval(sampler);
  await Promise.all(nodes.map((n) => n.kill()));
  await backend?.stop();
  backend = undefined;
});

async function metric(node: GatewayProc, name: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').pop()) : 0;
}

describe.each(TOPOLOGIES)('on %s Redis', (topology) => {
  test('a slow reader is paused at the bound and caught up from history; others are unaffected', async () => {
    backend = await startBackend(topology);
    ({ nodes } = await startNodes(
      1,
      faultEnv(backend.env, { SLOW_CONSUMER_BYTES: '65536', HISTORY_SIZE: '1000' }),
    ));
    const [node] = nodes as [GatewayProc];
    const urls = [node.wsUrl];
    const fast = Array.from({ length: 3 }, (_, i) => new Subscriber(`fast${i}`, urls, 'firehose'));
    const slow = new Subscriber('slow', urls, 'firehose');
    await Promise.all([...fast, slow].map((s) => s.start()));
    slow.pauseReading();
    const baseline = rssKb(node.pid);

    const pub = new Publisher('pub', urls, 'firehose');
    const N = 4000;
    pub.pad = 'x'.repeat(2000);
    let peak = baseline;
    sampler = setInterval(() => (peak = Math.max(peak, rssKb(node.pid))), 50);
    // Publish in windows of 20 in flight: fast enough to outrun the paused socket's kernel buffers.
    for (let seq = 1; seq <= N; seq += 20) {
      await Promise.all(
        Array.from({ length: Math.min(20, N - seq + 1) }, (_, k) =>
          pub.publish(seq + k, Date.now() + 30_000),
        ),
      );
    }
    const acked = [...pub.acked.values()];
    const top = Math.max(...acked.map((a) => a.offset));
    await until('fast subscribers to get everything', () => fast.every((s) => s.last >= top), 30_000);
    clearInterval(sampler);
    const backpressure = await metric(node, 'gateway_backpressure_events_total');
    const slowNow = await metric(node, 'gateway_slow_consumers');

    slow.resumeReading();
    await until('the slow subscriber to catch up', () => slow.last >= top, 30_000);

    const fastScore = score(N, acked, fast);
    const latencies = fast.flatMap((s) => s.latencies);
    // Every offset 1..top is either received by the slow client or inside a gap event it got.
    const covered = new Set(slow.order.map(([, o]) => o));
    for (const g of slow.gaps) for (let o = g.from as number; o <= (g.to as number); o++) covered.add(o);
    const missing = acked.filter((a) => !covered.has(a.offset)).length;
    const dupes = slow.order.length - new Set(slow.order.map(([, o]) => o)).size;
    const summary = {
      fast: fastScore,
      fastLatencyMs: {
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        max: percentile(latencies, 100),
      },
      slow: {
        received: slow.order.length,
        gaps: slow.gaps.map((g) => [g.from, g.to]),
        missingWithoutGap: missing,
        duplicated: dupes,
      },
      backpressureEvents: backpressure,
      slowConsumersWhilePaused: slowNow,
      rssKb: { baseline, peak, growth: peak - baseline },
    };
    console.log(`slow-consumer (${topology}): ${JSON.stringify(summary)}`);
    await pub.stop();
    await Promise.all([...fast, slow].map((s) => s.stop()));

    expect(backpressure).toBeGreaterThan(0);
    expect(slowNow).toBe(1);
    expect(fastScore).toMatchObject({ acknowledged: N, lost: 0, duplicated: 0, outOfOrder: 0, gaps: 0 });
    expect(missing).toBe(0);
    expect(dupes).toBe(0);
    expect(slow.gaps.length).toBeGreaterThan(0); // 4000 messages, HISTORY_SIZE 1000: the early ones are gone
    expect(summary.slow.received).toBeGreaterThanOrEqual(1000);
    // Bounded: the paused socket holds at most SLOW_CONSUMER_BYTES plus a frame in the node (plus allocator noise).
    expect(peak - baseline).toBeLessThan(150 * 1024);
  }, 90_000);
});
