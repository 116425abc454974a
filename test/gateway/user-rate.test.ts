// USER_MSG_RATE on room messages, through real gateway processes on one Redis: the count is one per user across
// nodes, a message over it is answered rate_limited with its wait and stores nothing, and with a publish hook the
// backend never sees a message over the rate (the count then runs before the hook, not inside the append).
import { startBackend, type FakeBackend } from '../helpers/backend';
import {
  startGateway,
  startRedis,
  token,
  TestClient,
  type Frame,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';

let redis: RedisProc;
const nodes: GatewayProc[] = [];
let hooked: GatewayProc;
let backend: FakeBackend;

beforeAll(async () => {
  redis = await startRedis();
  backend = await startBackend(() => ({ allow: true }));
  const env = { REDIS_URL: redis.url, USER_MSG_RATE: '3' };
  [nodes[0], nodes[1], hooked] = await Promise.all([
    startGateway(env),
    startGateway(env),
    startGateway({ ...env, HOOK_PUBLISH_URL: `${backend.url}/publish` }),
  ]);
});
afterAll(async () => {
  await Promise.all([...nodes, hooked].map((n) => n?.kill()));
  await backend?.stop();
  await redis?.stop();
});

/** Sends `n` publishes at once, spread over the clients in turn; the replies in sending order. */
function burst(clients: TestClient[], room: string, n: number): Promise<Frame[]> {
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      clients[i % clients.length]!.request({ type: 'publish', room, body: { i } }),
    ),
  );
}

function expectLimited(replies: Frame[], allowed: number): void {
  expect(replies.filter((r) => r.ok).length).toBe(allowed);
  for (const r of replies.filter((x) => !x.ok)) {
    expect(r.error).toMatchObject({ code: 'rate_limited', message: 'too many messages from this user' });
    const wait = (r.error as { retryAfterMs: number }).retryAfterMs;
    expect(wait).toBeGreaterThan(0);
    expect(wait).toBeLessThanOrEqual(1000);
  }
}

test('one user on two nodes shares one count: a burst of 8 gets 3 publishes through, the rest rate_limited, and only those 3 are stored', async () => {
  const room = 'rated:room@1.x';
  const user = 'rate-user|{x}';
  const clients = await Promise.all(nodes.map((n) => TestClient.connect(n.wsUrl, token(user))));
  for (const c of clients) await c.ok({ type: 'join', room });
  const replies = await burst(clients, room, 8);
  expectLimited(replies, 3);
  const history = await clients[0]!.ok({ type: 'history', room, limit: 100 });
  expect((history.messages as Frame[]).map((m) => m.id).sort()).toEqual(
    replies
      .filter((r) => r.ok)
      .map((r) => r.id)
      .sort(),
  );
  // Another user is counted on its own.
  const other = await TestClient.connect(nodes[1]!.wsUrl, token('rate-other'));
  await other.ok({ type: 'join', room });
  expect((await other.request({ type: 'publish', room, body: 'mine' })).ok).toBe(true);
  await Promise.all([...clients, other].map((c) => c.close()));
});

test('with a publish hook, a message over the rate is refused before the hook: the backend sees only the ones within it', async () => {
  const room = 'rated-hooked';
  const c = await TestClient.connect(hooked.wsUrl, token('rate-hooked'));
  await c.ok({ type: 'join', room });
  const before = backend.requests.length;
  const replies = await burst([c], room, 6);
  expectLimited(replies, 3);
  expect(backend.requests.slice(before).filter((r) => r.json.hook === 'publish').length).toBe(3);
  await c.close();
});
