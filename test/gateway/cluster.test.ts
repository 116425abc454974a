// Two gateway nodes on one Redis: rooms, DMs and presence cross nodes; nothing reaches non-members.
import {
  presenceChange,
  startGateway,
  startRedis,
  token,
  TestClient,
  until,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';

let redis: RedisProc;
let a: GatewayProc;
let b: GatewayProc;
const clients: TestClient[] = [];

async function connect(node: GatewayProc, user: string): Promise<TestClient> {
  const c = await TestClient.connect(node.wsUrl, token(user));
  clients.push(c);
  return c;
}

beforeAll(async () => {
  redis = await startRedis();
  [a, b] = await Promise.all([
    startGateway({ REDIS_URL: redis.url, PRESENCE_TTL_MS: '3000' }),
    startGateway({ REDIS_URL: redis.url, PRESENCE_TTL_MS: '3000' }),
  ]);
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill()]);
  await redis?.stop();
});

test('a room message crosses nodes in both directions and reaches the sender too', async () => {
  const alice = await connect(a, 'alice');
  const bob = await connect(b, 'bob');
  await alice.ok({ type: 'join', room: 'r1' });
  await bob.ok({ type: 'join', room: 'r1' });

  const p1 = await alice.ok({ type: 'publish', room: 'r1', body: { text: 'from a' } });
  const atBob = await bob.waitFor((f) => f.type === 'message' && f.id === p1.id);
  expect(atBob).toMatchObject({
    room: 'r1',
    from: 'alice',
    body: { text: 'from a' },
    offset: p1.offset,
    epoch: p1.epoch,
  });
  await alice.waitFor((f) => f.type === 'message' && f.id === p1.id);

  const p2 = await bob.ok({ type: 'publish', room: 'r1', body: 'from b' });
  expect(p2.offset).toBe((p1.offset as number) + 1);
  const atAlice = await alice.waitFor((f) => f.type === 'message' && f.id === p2.id);
  expect(atAlice).toMatchObject({ from: 'bob', body: 'from b' });
});

test('non-members get nothing, and a node subscribes a room channel only while it has local members', async () => {
  const alice = await connect(a, 'alice');
  const carol = await connect(b, 'carol');
  const { channel } = { channel: 'rc:{r:quiet}' };
  await alice.ok({ type: 'join', room: 'quiet' });
  expect(await redis.cli('PUBSUB', 'NUMSUB', channel)).toBe(`${channel}\n1`);
  await alice.ok({ type: 'publish', room: 'quiet', body: 'secret' });
  await alice.waitFor((f) => f.type === 'message' && f.room === 'quiet');
  // A round trip on carol's socket after the publish was fanned out: anything for her would have come first.
  await carol.ok({ type: 'ping' });
  expect(carol.frames.filter((f) => f.room === 'quiet')).toEqual([]);

  await carol.ok({ type: 'join', room: 'quiet' });
  expect(await redis.cli('PUBSUB', 'NUMSUB', channel)).toBe(`${channel}\n2`);
  await alice.ok({ type: 'leave', room: 'quiet' });
  await until(
    'node a to unsubscribe',
    async () => (await redis.cli('PUBSUB', 'NUMSUB', channel)) === `${channel}\n1`,
  );
});

test('a DM reaches every connection of the recipient on both nodes and the sender’s other connection', async () => {
  const sender = await connect(a, 'dave');
  const senderOther = await connect(b, 'dave');
  const erinA = await connect(a, 'erin');
  const erinB = await connect(b, 'erin');
  const reply = await sender.ok({ type: 'dm', to: 'erin', body: 'hello erin' });
  expect(reply).toMatchObject({ delivered: 2, live: true, stored: true });
  for (const c of [erinA, erinB, senderOther]) {
    const dm = await c.waitFor((f) => f.type === 'dm' && f.id === reply.id);
    expect(dm).toMatchObject({ from: 'dave', to: 'erin', body: 'hello erin' });
  }
  await sender.ok({ type: 'ping' });
  expect(sender.events('dm')).toEqual([]);
});

test('presence is answered across nodes with join and leave events', async () => {
  const alice = await connect(a, 'alice');
  const bob = await connect(b, 'bob');
  const j1 = await alice.ok({ type: 'join', room: 'pres' });
  expect(j1.presence).toEqual(['alice']);
  const j2 = await bob.ok({ type: 'join', room: 'pres' });
  expect((j2.presence as string[]).sort()).toEqual(['alice', 'bob']);
  await alice.waitFor((f) => presenceChange(f, 'join', 'bob'));
  const p = await alice.ok({ type: 'presence', room: 'pres' });
  expect((p.presence as string[]).sort()).toEqual(['alice', 'bob']);

  // A second connection of bob joining is not a new presence join; its leave is not a presence leave.
  const bob2 = await connect(a, 'bob');
  await bob2.ok({ type: 'join', room: 'pres' });
  await bob2.ok({ type: 'leave', room: 'pres' });
  await bob.ok({ type: 'leave', room: 'pres' });
  await alice.waitFor((f) => presenceChange(f, 'leave', 'bob'));
  expect(
    alice.frames.filter((f) => presenceChange(f, 'join', 'bob') || presenceChange(f, 'leave', 'bob')),
  ).toHaveLength(2);
  expect((await alice.ok({ type: 'presence', room: 'pres' })).presence).toEqual(['alice']);
});

test('a SIGKILLed node’s users leave presence and the connection map within the TTL', async () => {
  const c = await startGateway({ REDIS_URL: redis.url, PRESENCE_TTL_MS: '3000' });
  const watcher = await connect(a, 'watcher');
  await watcher.ok({ type: 'join', room: 'crash' });
  const doomed = await TestClient.connect(c.wsUrl, token('frank'));
  await doomed.ok({ type: 'join', room: 'crash' });
  await watcher.waitFor((f) => presenceChange(f, 'join', 'frank'));
  expect(await redis.cli('ZCARD', 'rc:{u:frank}:c')).toBe('1');

  const killedAt = Date.now();
  await c.kill();
  await watcher.waitFor((f) => presenceChange(f, 'leave', 'frank'), 15_000);
  const seconds = (Date.now() - killedAt) / 1000;
  expect(seconds).toBeLessThan(30);
  expect((await watcher.ok({ type: 'presence', room: 'crash' })).presence).toEqual(['watcher']);
  const dm = await watcher.ok({ type: 'dm', to: 'frank', body: 'are you there' });
  expect(dm).toMatchObject({ delivered: 0, live: false, stored: true });
  expect(await redis.cli('ZCARD', 'rc:{u:frank}:c')).toBe('0');
});

test('the server API publishes to a room, answers presence and disconnects a user on every node', async () => {
  const d = await startGateway({ REDIS_URL: redis.url, API_KEY: 'test-api-key' });
  try {
    const gina = await connect(a, 'gina');
    const ginaB = await connect(b, 'gina');
    await gina.ok({ type: 'join', room: 'news' });
    const auth = { authorization: 'Bearer test-api-key', 'content-type': 'application/json' };

    const denied = await fetch(`${d.url}/api/publish`, { method: 'POST', body: '{"room":"news","body":1}' });
    expect(denied.status).toBe(401);

    const res = await fetch(`${d.url}/api/publish`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify({ room: 'news', body: 'extra!' }),
    });
    expect(res.status).toBe(200);
    const published = (await res.json()) as { id: string; offset: number };
    expect(await gina.waitFor((f) => f.type === 'message' && f.id === published.id)).toMatchObject({
      from: 'server',
      body: 'extra!',
    });

    const pres = await fetch(`${d.url}/api/presence/news`, { headers: auth });
    expect(await pres.json()).toEqual({ room: 'news', presence: ['gina'] });

    const bad = await fetch(`${d.url}/api/publish`, {
      method: 'POST',
      headers: auth,
      body: '{"room":"bad room!","body":1}',
    });
    expect(bad.status).toBe(400);

    const kick = await fetch(`${d.url}/api/disconnect`, {
      method: 'POST',
      headers: auth,
      body: '{"user":"gina"}',
    });
    expect(kick.status).toBe(200);
    expect(await gina.waitClosed()).toBe(4003);
    expect(await ginaB.waitClosed()).toBe(4003);
  } finally {
    await d.kill();
  }
});

test('SIGTERM drains: not ready, reconnect event and 1001 to clients, Redis entries removed, exit 0', async () => {
  const e = await startGateway({ REDIS_URL: redis.url, SHUTDOWN_GRACE_MS: '3000' });
  const henry = await TestClient.connect(e.wsUrl, token('henry'));
  await henry.ok({ type: 'join', room: 'drain' });
  expect(await redis.cli('HKEYS', 'rc:{r:drain}:pu')).toBe('henry');
  e.proc.kill('SIGTERM');
  await henry.waitFor((f) => f.type === 'reconnect');
  expect(await henry.waitClosed()).toBe(1001);
  expect(await e.exited).toBe(0);
  expect(await redis.cli('HKEYS', 'rc:{r:drain}:pu')).toBe('');
  expect(await redis.cli('ZCARD', 'rc:{u:henry}:c')).toBe('0');
});

test('a dead socket (no pongs) is closed after IDLE_TIMEOUT_S and leaves its rooms and presence on every node', async () => {
  const f = await startGateway({ REDIS_URL: redis.url, IDLE_TIMEOUT_S: '8' });
  try {
    const watcher = await connect(a, 'watcher2');
    await watcher.ok({ type: 'join', room: 'idle' });
    const ghost = await TestClient.connect(f.wsUrl, token('ghost'));
    await ghost.ok({ type: 'join', room: 'idle' });
    await watcher.waitFor((fr) => presenceChange(fr, 'join', 'ghost'));
    // Stop reading: the client no longer answers the server's pings, like a peer that vanished.
    (ghost.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    await watcher.waitFor((fr) => presenceChange(fr, 'leave', 'ghost'), 20_000);
    expect((await watcher.ok({ type: 'presence', room: 'idle' })).presence).toEqual(['watcher2']);
  } finally {
    await f.kill();
  }
}, 30_000);

test('the same room joined twice at once by one connection counts once: its leave ends presence and the subscription', async () => {
  const watcher = await connect(a, 'watcher3');
  await watcher.ok({ type: 'join', room: 'twice' });
  const dup = await connect(b, 'doubler');
  const [j1, j2] = await Promise.all([
    dup.request({ type: 'join', room: 'twice' }),
    dup.request({ type: 'join', room: 'twice' }),
  ]);
  expect([j1.ok, j2.ok]).toEqual([true, true]);
  const channel = 'rc:{r:twice}';
  expect(await redis.cli('PUBSUB', 'NUMSUB', channel)).toBe(`${channel}\n2`);
  const p = await watcher.ok({ type: 'publish', room: 'twice', body: 'once' });
  await dup.waitFor((f) => f.type === 'message' && f.id === p.id);
  await dup.ok({ type: 'leave', room: 'twice' });
  await watcher.waitFor((f) => presenceChange(f, 'leave', 'doubler'));
  await until(
    'node b to unsubscribe',
    async () => (await redis.cli('PUBSUB', 'NUMSUB', channel)) === `${channel}\n1`,
  );
  expect(dup.events('message', 'twice')).toHaveLength(1);
});
