// What REDIS_WAIT_REPLICAS costs: append latency and throughput through the real engine on a primary with one
// replica (behind a Sentinel), without and with WAIT 1. Prints the figures docs/SCALING.md quotes; asserts only
// that every durable append was acknowledged by the replica and that the replica holds all of them.
import { pino } from 'pino';
import { RedisEngine } from '../../services/gateway/src/engine/redis-engine';
import { storedEventParts } from '../../protocol';
import { until } from '../helpers/harness';
import { startSentinel, type SentinelProc } from '../helpers/redis-topologies';

let setup: SentinelProc;

beforeAll(async () => {
  setup = await startSentinel({ replicas: 1, sentinels: 1 });
}, 60_000);

afterAll(async () => {
  await setup?.stop();
});

function engine(waitReplicas: number): RedisEngine {
  return new RedisEngine(
    {
      sentinels: setup.sentinels.map((s) => s.addr),
      sentinelName: setup.name,
      waitReplicas,
      waitTimeoutMs: 1000,
      nodeId: `wait-${waitReplicas}`,
      keyPrefix: 'wc',
      commandTimeoutMs: 3000,
      historySize: 1000,
      historyTtlS: 600,
      inboxSize: 1000,
      inboxTtlS: 600,
      dedupWindowS: 60,
      presenceTtlMs: 5000,
    },
    pino({ level: 'silent' }),
  );
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
};

async function measure(waitReplicas: number) {
  const e = engine(waitReplicas);
  await e.start();
  await until('engine ready', () => e.ready());
  const body = JSON.stringify({ text: 'x'.repeat(120) });
  let n = 0;
  const append = (room: string) =>
    e.append(
      { kind: 'room', name: room },
      {
        id: `m${++n}`,
        ts: Date.now(),
        frame: storedEventParts('message', { room, id: `m${n}`, from: 'u', ts: Date.now() }, body),
      },
    );
  for (let i = 0; i < 50; i++) await append(`warm-${waitReplicas}`);
  // Latency: one append at a time.
  const lat: number[] = [];
  for (let i = 0; i < 400; i++) {
    const t = performance.now();
    await append(`seq-${waitReplicas}`);
    lat.push(performance.now() - t);
  }
  // Throughput: 64 appends in flight over 16 rooms.
  const total = 4000;
  let started = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: 64 }, async (_, w) => {
      while (started < total) {
        started++;
        await append(`par-${waitReplicas}-${w % 16}`);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  await e.stop();
  return {
    waitReplicas,
    p50ms: +pct(lat, 50).toFixed(3),
    p99ms: +pct(lat, 99).toFixed(3),
    appendsPerS: Math.round(total / seconds),
  };
}

test('WAIT 1 costs one replica round trip per append; every durable append reaches the replica', async () => {
  const without = await measure(0);
  const withWait = await measure(1);
  console.log(`wait-cost: ${JSON.stringify([without, withWait])}`);
  const replica = setup.data[1]!;
  // 400 sequential + 4000 concurrent + 50 warm-up durable appends, all on the replica once WAIT answered.
  let onReplica = Number(await replica.cli('XLEN', 'wc:{r:seq-1}:h'));
  for (let w = 0; w < 16; w++) onReplica += Number(await replica.cli('XLEN', `wc:{r:par-1-${w}}:h`));
  expect(onReplica).toBe(400 + 4000);
  expect(withWait.appendsPerS).toBeGreaterThan(0);
}, 90_000);
