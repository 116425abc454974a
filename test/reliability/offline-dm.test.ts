// Fault test 5 and the promise's other parts: offline DMs, idempotent publish, history paging, rate limits.
import {
  startRedis,
  token,
  TestClient,
  upgradeStatus,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';
import { faultEnv, startNodes } from './nodes';

let redis: RedisProc;
let nodes: GatewayProc[] = [];

beforeAll(async () => {
  redis = await startRedis();
  ({ nodes } = await startNodes(2, faultEnv(redis.url)));
});
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.kill()));
  await redis?.stop();
});

test('a DM to an offline user is stored and arrives on its next connection, on another node', async () => {
  const [a, b] = nodes as [GatewayProc, GatewayProc];
  const sender = await TestClient.connect(a.wsUrl, token('olive'));
  const r1 = await sender.ok({ type: 'dm', to: 'oscar', body: 'while you were out' });
  const r2 = await sender.ok({ type: 'dm', to: 'oscar', body: 'and another' });
  expect(r1).toMatchObject({ delivered: 0, live: false, stored: true });
  await sender.close();

  const oscar = await TestClient.connect(b.wsUrl, token('oscar'));
  const inbox = await oscar.ok({ type: 'inbox', since: { offset: 0 } });
  expect(inbox).toMatchObject({ recovered: true, offset: 2 });
  const first = await oscar.waitFor((f) => f.type === 'dm' && f.id === r1.id);
  const second = await oscar.waitFor((f) => f.type === 'dm' && f.id === r2.id);
  expect([first.body, second.body]).toEqual(['while you were out', 'and another']);
  expect([first.offset, second.offset]).toEqual([1, 2]);

  // Later: reconnect with the last inbox position; only newer DMs replay.
  await oscar.close();
  const sender2 = await TestClient.connect(a.wsUrl, token('olive'));
  const r3 = await sender2.ok({ type: 'dm', to: 'oscar', body: 'third' });
  const again = await TestClient.connect(a.wsUrl, token('oscar'));
  await again.ok({ type: 'inbox', since: { offset: 2, epoch: inbox.epoch } });
  const third = await again.waitFor((f) => f.type === 'dm' && f.id === r3.id);
  expect(third.offset).toBe(3);
  await again.ok({ type: 'ping' });
  expect(again.events('dm')).toHaveLength(1);
  await Promise.all([again.close(), sender2.close()]);
});

test('publish with an idempotency key: a retry returns the first result and fans out nothing new', async () => {
  const [a, b] = nodes as [GatewayProc, GatewayProc];
  const p = await TestClient.connect(a.wsUrl, token('pia'));
  const watcher = await TestClient.connect(b.wsUrl, token('wes'));
  await p.ok({ type: 'join', room: 'idem' });
  await watcher.ok({ type: 'join', room: 'idem' });
  const first = await p.ok({ type: 'publish', room: 'idem', body: 'once', key: 'k-1' });
  const retry = await p.ok({ type: 'publish', room: 'idem', body: 'once', key: 'k-1' });
  expect(retry).toMatchObject({ id: first.id, offset: first.offset, epoch: first.epoch, duplicate: true });
  const marker = await p.ok({ type: 'publish', room: 'idem', body: 'marker' });
  await watcher.waitFor((f) => f.type === 'message' && f.id === marker.id);
  expect(watcher.events('message', 'idem').map((f) => f.body)).toEqual(['once', 'marker']);
  await Promise.all([p.close(), watcher.close()]);
});

test('history pages back through stored messages', async () => {
  const c = await TestClient.connect(nodes[0]!.wsUrl, token('hal'));
  await c.ok({ type: 'join', room: 'scroll' });
  for (let i = 1; i <= 12; i++) await c.ok({ type: 'publish', room: 'scroll', body: i });
  const newest = await c.ok({ type: 'history', room: 'scroll', limit: 5 });
  expect((newest.messages as { body: number }[]).map((m) => m.body)).toEqual([8, 9, 10, 11, 12]);
  const older = await c.ok({ type: 'history', room: 'scroll', limit: 5, before: 8 });
  expect((older.messages as { offset: number }[]).map((m) => m.offset)).toEqual([3, 4, 5, 6, 7]);
  await c.close();
});

test('the per-user message rate holds across nodes and answers rate_limited with retryAfterMs', async () => {
  const { nodes: limited } = await startNodes(2, faultEnv(redis.url, { USER_MSG_RATE: '5' }));
  try {
    const c1 = await TestClient.connect(limited[0]!.wsUrl, token('rita'));
    const c2 = await TestClient.connect(limited[1]!.wsUrl, token('rita'));
    await c1.ok({ type: 'join', room: 'rl' });
    await c2.ok({ type: 'join', room: 'rl' });
    const replies = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        (i % 2 ? c1 : c2).request({ type: 'publish', room: 'rl', body: i }),
      ),
    );
    const refused = replies.filter((r) => !r.ok);
    expect(replies.filter((r) => r.ok).length).toBeLessThanOrEqual(5 * 2); // at most two 1 s windows
    expect(refused.length).toBeGreaterThan(0);
    expect(refused[0]!.error).toMatchObject({ code: 'rate_limited', retryable: true });
    expect(c1.closeCode).toBeNull();
    await Promise.all([c1.close(), c2.close()]);
  } finally {
    await Promise.all(limited.map((n) => n.kill()));
  }
});

test('new connections per address over CONN_RATE_PER_IP get 429', async () => {
  const RATE = 3;
  const ATTEMPTS = 20;
  const { nodes: limited } = await startNodes(1, faultEnv(redis.url, { CONN_RATE_PER_IP: String(RATE) }));
  try {
    // The limit is a token bucket per address (RATE at once, refilled at RATE per second), so what it lets
    // through depends on how long the attempts take: they are made all at once, and the bound is computed from
    // the time they took, whatever the machine's load (one attempt per user: the per-user cap plays no part).
    const start = performance.now();
    const statuses = await Promise.all(
      Array.from({ length: ATTEMPTS }, (_, i) =>
        upgradeStatus(limited[0]!.wsUrl, `?token=${token(`ivy-${i}`)}`).then((r) => r.status),
      ),
    );
    const seconds = (performance.now() - start) / 1000;
    const admitted = statuses.filter((s) => s === 101).length;
    expect(admitted).toBeGreaterThanOrEqual(1);
    expect(admitted).toBeLessThanOrEqual(Math.floor(RATE + RATE * seconds));
    expect(statuses.filter((s) => s !== 101)).toEqual(Array(ATTEMPTS - admitted).fill(429));
    expect(statuses).toContain(429);
  } finally {
    await limited[0]!.kill();
  }
});
