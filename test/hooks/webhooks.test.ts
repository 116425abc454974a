// Webhooks out, at least once, through real gateway processes on a real Redis and a real HTTP backend: who is
// online and which rooms are occupied across two nodes, messages of chosen rooms, a backend that is down for a
// while, and a gateway SIGKILLed with deliveries in flight. Every delivery must carry a valid signature.
import { startBackend, gate, raw, type BackendRequest, type FakeBackend } from '../helpers/backend';
import {
  startGateway,
  startRedis,
  token,
  TestClient,
  until,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';
import { verify } from '../../services/gateway/src/hooks/signature';

const SECRET = 'webhook-secret-0123456789';
let redis: RedisProc;
let backend: FakeBackend;
let a: GatewayProc;
let b: GatewayProc;
let answer: (r: BackendRequest) => unknown = () => ({});
/** Requests the backend answered 200 to a gateway still there to read it. */
const delivered = (): BackendRequest[] => backend.requests.filter((r) => r.answered === 200);
let seq = 0;

interface Event {
  id: string;
  type: string;
  ts: number;
  node: string;
  data: Record<string, unknown>;
}

const events = () => delivered().map((r) => r.json as unknown as Event);
const about = (key: 'user' | 'room', value: string) =>
  events()
    .filter((e) => e.data[key] === value)
    .map((e) => e.type);

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: redis.url,
    PRESENCE_TTL_MS: '1000',
    WEBHOOK_URL: `${backend.url}/events`,
    WEBHOOK_SECRET: SECRET,
    WEBHOOK_MESSAGE_ROOMS: 'audit-*',
    WEBHOOK_TIMEOUT_MS: '5000',
    WEBHOOK_RETRY_MAX_MS: '500',
    WEBHOOK_CLAIM_IDLE_MS: '6000',
    ...extra,
  };
}

beforeAll(async () => {
  redis = await startRedis();
  backend = await startBackend((r) => answer(r));
  // b takes one delivery at a time: most events are in a's hands, which the crash test relies on.
  [a, b] = await Promise.all([startGateway(env()), startGateway(env({ WEBHOOK_CONCURRENCY: '1' }))]);
});
afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill()]);
  await backend?.stop();
  await redis?.stop();
});

function expectSigned(reqs: BackendRequest[]): void {
  expect(reqs.length).toBeGreaterThan(0);
  for (const r of reqs) {
    expect(verify(SECRET, r.raw, r.headers['x-relaychat-signature'] as string)).toBe(true);
    expect(r.headers['x-relaychat-id']).toBe(r.json.id);
    expect(r.headers['x-relaychat-event']).toBe(r.json.type);
  }
}

test('online at the first connection anywhere, offline at the last; occupied and vacated; each once, signed', async () => {
  const user = `alice-${++seq}`;
  const room = `lounge-${seq}`;
  const onA = await TestClient.connect(a.wsUrl, token(user));
  const onB = await TestClient.connect(b.wsUrl, token(user));
  await onA.ok({ type: 'join', room });
  await onB.ok({ type: 'join', room });
  await until(
    'online and occupied delivered',
    () => about('user', user).length === 1 && about('room', room).length === 1,
  );
  await onA.close();
  await onB.close();
  await until(
    'offline and vacated delivered',
    () => about('user', user).length === 2 && about('room', room).length === 2,
  );
  expect(about('user', user)).toEqual(['user.online', 'user.offline']);
  expect(about('room', room)).toEqual(['room.occupied', 'room.vacated']);
  const mine = delivered().filter((r) => (r.json.data as Record<string, unknown>)?.user === user);
  expectSigned(mine);
  expect(new Set(mine.map((r) => r.json.id)).size).toBe(2);
  for (const e of mine.map((r) => r.json as unknown as Event))
    expect(Math.abs(Date.now() - e.ts)).toBeLessThan(60_000);
});

test('every stored message of rooms matching WEBHOOK_MESSAGE_ROOMS, and none of other rooms', async () => {
  const c = await TestClient.connect(a.wsUrl, token(`writer-${++seq}`));
  const audited = `audit-${seq}`;
  const other = `chat-${seq}`;
  await c.ok({ type: 'join', room: other });
  await c.ok({ type: 'join', room: audited });
  await c.ok({ type: 'publish', room: other, body: { text: 'not audited' } });
  const sent = await c.ok({ type: 'publish', room: audited, body: { text: 'audited' } });
  await until('the audited message', () =>
    events().some((e) => e.type === 'message' && e.data.room === audited),
  );
  const e = events().find((x) => x.type === 'message' && x.data.room === audited)!;
  expect(e.data.message).toMatchObject({ id: sent.id, offset: sent.offset, body: { text: 'audited' } });
  expect(events().some((x) => x.type === 'message' && x.data.room === other)).toBe(false);
  await c.close();
});

test('a backend down for a while: events wait in Redis, are retried with backoff, and all arrive once it is back', async () => {
  await backend.stop();
  const users = [`bob-${++seq}`, `bea-${seq}`];
  const clients = await Promise.all(users.map((u) => TestClient.connect(a.wsUrl, token(u))));
  await Promise.all(clients.map((c) => c.close()));
  const failed = async () => {
    let n = 0;
    for (const gw of [a, b]) {
      const text = await (await fetch(`${gw.url}/metrics`)).text();
      const line = text
        .split('\n')
        .find((l) => l.startsWith('gateway_webhook_deliveries_total{result="failed"'));
      n += line ? Number(line.split(' ').pop()) : 0;
    }
    return n;
  };
  await until('several failed attempts', async () => (await failed()) >= 4, 15_000);
  // The node keeps serving meanwhile.
  const probe = await TestClient.connect(b.wsUrl, token('probe'));
  expect((await probe.ok({ type: 'ping' })).pong).toBe(true);
  await backend.start();
  await until('every event after the outage', () => users.every((u) => about('user', u).length >= 2), 20_000);
  for (const u of users) {
    expect(new Set(about('user', u))).toEqual(new Set(['user.online', 'user.offline']));
    expectSigned(delivered().filter((r) => (r.json.data as Record<string, unknown>)?.user === u));
  }
  await probe.close();
});

test('a gateway SIGKILLed mid-delivery: another node claims its pending events and the sweep records its users offline', async () => {
  const held = gate();
  answer = () => held.wait.then(() => ({}));
  const users = Array.from({ length: 6 }, (_, i) => `carl-${++seq}-${i}`);
  const clients = await Promise.all(users.map((u) => TestClient.connect(a.wsUrl, token(u))));
  await until('six deliveries in flight', () => backend.pending() >= 6, 15_000);
  const heldFromA = backend.requests.filter(
    (r) =>
      String(r.headers['user-agent']).includes(a.nodeId) &&
      users.includes(String((r.json.data as Record<string, unknown>)?.user)),
  );
  expect(heldFromA.length).toBeGreaterThan(0);
  await a.kill();
  for (const c of clients) c.ws.terminate();
  await until("the dead node's connections to the backend closed", () =>
    heldFromA.every((r) => r.socket.destroyed),
  );
  held.open();
  answer = () => ({});
  await until(
    'online and offline for every user of the dead node',
    () =>
      users.every(
        (u) => about('user', u).includes('user.online') && about('user', u).includes('user.offline'),
      ),
    30_000,
  );
  for (const u of users)
    expectSigned(delivered().filter((r) => (r.json.data as Record<string, unknown>)?.user === u));
  // The redeliveries came from b, with the same ids as a's attempts.
  const redelivered = delivered().filter(
    (r) =>
      heldFromA.some((h) => h.json.id === r.json.id) && String(r.headers['user-agent']).includes(b.nodeId),
  );
  expect(redelivered.length).toBe(heldFromA.length);
  expect((await fetch(`${b.url}/readyz`)).status).toBe(200);
}, 60_000);

describe('memory engine (one node)', () => {
  let gw: GatewayProc;
  beforeAll(async () => {
    gw = await startGateway({
      WEBHOOK_URL: `${backend.url}/events`,
      WEBHOOK_SECRET: SECRET,
      WEBHOOK_TIMEOUT_MS: '1000',
      WEBHOOK_RETRY_MAX_MS: '300',
      WEBHOOK_CLAIM_IDLE_MS: '2000',
    });
  });
  afterAll(async () => {
    await gw?.kill();
  });

  test('the same events in-process; a failed delivery is retried with the same id until a 2xx', async () => {
    const user = `mem-${++seq}`;
    const room = `mroom-${seq}`;
    let failures = 0;
    answer = (r) =>
      (r.json.data as Record<string, unknown>)?.user === user && failures++ < 2 ? raw(500, 'down') : {};
    const c = await TestClient.connect(gw.wsUrl, token(user));
    await c.ok({ type: 'join', room });
    await c.close();
    await until(
      'all four events',
      () => about('user', user).length === 2 && about('room', room).length === 2,
      15_000,
    );
    // Not ordered: the online event was retried while the offline one went through.
    expect(about('user', user).sort()).toEqual(['user.offline', 'user.online']);
    const attempts = backend.requests.filter((r) => (r.json.data as Record<string, unknown>)?.user === user);
    // The two failed attempts and the delivery share ids: a receiver dedupes on them.
    expect(new Set(attempts.map((r) => r.json.id)).size).toBe(2);
    expect(attempts.length).toBe(4);
    expectSigned(attempts);
  });
});
