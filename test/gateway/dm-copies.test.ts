// DMs are written whole, and Redis keys built from user-given parts are unambiguous.
// The faults are real: the gateway runs as a Redis ACL user whose key permissions are narrowed for one DM, so Redis
// itself refuses it; and a recipient copy stored alone is written by the APPEND script, as a node that died between
// the Cluster path's two writes leaves it.
import { dmFrameParts } from '../../services/gateway/src/engine/engine';
import { APPEND } from '../../services/gateway/src/engine/scripts';
import {
  startGateway,
  startRedis,
  token,
  TestClient,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';

let redis: RedisProc;
let gw: GatewayProc;
const clients: TestClient[] = [];

beforeAll(async () => {
  redis = await startRedis();
  await redis.cli('ACL', 'SETUSER', 'gw', 'on', '>gw-pass', '~*', '&*', '+@all');
  gw = await startGateway({
    REDIS_URL: `redis://gw:gw-pass@127.0.0.1:${redis.port}`,
    USER_MSG_RATE: '0',
  });
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});
afterAll(async () => {
  await gw?.kill();
  await redis?.stop();
});

async function connect(user: string): Promise<TestClient> {
  const c = await TestClient.connect(gw.wsUrl, token(user));
  clients.push(c);
  return c;
}

/** Resolves once every DM sent before it has reached `c` (a marker DM after them, delivered in order). */
async function settle(c: TestClient, from: TestClient, to: string): Promise<void> {
  const marker = await from.ok({ type: 'dm', to, body: 'marker' });
  await c.waitFor((f) => f.type === 'dm' && f.id === marker.id);
}

test('a DM whose sender inbox is refused stores neither copy on a single Redis (one script, its keys checked before it runs); the retry stores both once', async () => {
  const a1 = await connect('sender-a');
  const a2 = await connect('sender-a');
  const b = await connect('recipient-b');

  // Only the recipient's keys (and the node lease) are writable: the script naming the sender's keys is refused.
  await redis.cli('ACL', 'SETUSER', 'gw', 'resetkeys', '~rc:{u:recipient-b}*', '~rc:nodes', '~rc:node:*');
  let first;
  try {
    first = await a1.request({ type: 'dm', to: 'recipient-b', body: { text: 'whole?' }, key: 'k-1' });
  } finally {
    await redis.cli('ACL', 'SETUSER', 'gw', 'resetkeys', '~*');
  }
  expect(first).toMatchObject({ ok: false, error: { code: 'unavailable' } });
  expect(await redis.cli('XLEN', 'rc:{u:recipient-b}:h')).toBe('0');
  expect(await redis.cli('XLEN', 'rc:{u:sender-a}:h')).toBe('0');

  const retry = await a1.ok({ type: 'dm', to: 'recipient-b', body: { text: 'whole?' }, key: 'k-1' });
  expect(retry.duplicate).toBe(false);
  await b.waitFor((f) => f.type === 'dm' && f.id === retry.id);
  await a2.waitFor((f) => f.type === 'dm' && f.id === retry.id);
  await settle(b, a1, 'recipient-b');
  await settle(a2, a1, 'recipient-b');
  expect(b.frames.filter((f) => f.type === 'dm' && f.id === retry.id)).toHaveLength(1);
  expect(a2.frames.filter((f) => f.type === 'dm' && f.id === retry.id)).toHaveLength(1);
  expect(a1.frames.filter((f) => f.type === 'dm' && f.id === retry.id)).toHaveLength(0);
});

test('a DM of which only the recipient copy was stored (a node died between the two writes of the Cluster path) is completed by its retry: the sender copy gets the first id, the recipient gets the DM once', async () => {
  const a1 = await connect('sender-f');
  const a2 = await connect('sender-f');
  const b = await connect('recipient-g');
  // The first write, exactly as the Cluster path (or a node of an older version) makes it: the recipient's copy
  // with its dedup record on (sender, key), stored and published by the APPEND script. Then the node "died".
  const [id, ts] = ['first-id', 1_767_225_600_000];
  const frame = dmFrameParts('recipient', {
    from: 'sender-f',
    to: 'recipient-g',
    id,
    ts,
    body: '{"text":"whole?"}',
  });
  await redis.cli(
    'EVAL',
    APPEND,
    '3',
    'rc:{u:recipient-g}:m',
    'rc:{u:recipient-g}:h',
    'rc:{u:recipient-g}:d:sender-f:k-3',
    frame.head,
    frame.tail,
    String(ts),
    '',
    '1000',
    '604800',
    '300',
    'e0',
    'rc:{u:recipient-g}',
    '1',
    'publish',
    id,
    '0',
    frame.mid,
  );
  const atB = await b.waitFor((f) => f.type === 'dm' && f.id === id);
  expect(await redis.cli('XLEN', 'rc:{u:sender-f}:h')).toBe('0');

  const retry = await a1.ok({ type: 'dm', to: 'recipient-g', body: { text: 'whole?' }, key: 'k-3' });
  expect(retry).toMatchObject({ id, ts, offset: atB.offset, epoch: atB.epoch, duplicate: true });
  // The sender's other connection gets the sender copy, with the same message id.
  const atA2 = await a2.waitFor((f) => f.type === 'dm' && f.id === id);
  expect(atA2).toMatchObject({ from: 'sender-f', to: 'recipient-g', ts, body: { text: 'whole?' } });
  expect(await redis.cli('XLEN', 'rc:{u:sender-f}:h')).toBe('1');

  // A third try changes nothing: each copy is idempotent on its own key.
  expect(await a1.ok({ type: 'dm', to: 'recipient-g', body: { text: 'whole?' }, key: 'k-3' })).toMatchObject({
    id,
    duplicate: true,
  });
  expect(await redis.cli('XLEN', 'rc:{u:sender-f}:h')).toBe('1');
  await settle(b, a1, 'recipient-g');
  await settle(a2, a1, 'recipient-g');
  expect(b.frames.filter((f) => f.type === 'dm' && f.id === id)).toHaveLength(1);
  expect(a2.frames.filter((f) => f.type === 'dm' && f.id === id)).toHaveLength(1);
  expect(a1.frames.filter((f) => f.type === 'dm' && f.id === id)).toHaveLength(0);
  // The node kept serving throughout.
  expect(await a1.ok({ type: 'ping' })).toMatchObject({ pong: true });
});

test('a DM whose recipient copy fails stores nothing; the retry stores both copies once', async () => {
  const a1 = await connect('sender-c');
  const a2 = await connect('sender-c');
  const b = await connect('recipient-d');
  await redis.cli('ACL', 'SETUSER', 'gw', 'resetkeys', '~rc:{u:sender-c}*', '~rc:nodes', '~rc:node:*');
  let first;
  try {
    first = await a1.request({ type: 'dm', to: 'recipient-d', body: 1, key: 'k-2' });
  } finally {
    await redis.cli('ACL', 'SETUSER', 'gw', 'resetkeys', '~*');
  }
  expect(first).toMatchObject({ ok: false, error: { code: 'unavailable' } });
  expect(await redis.cli('XLEN', 'rc:{u:sender-c}:h')).toBe('0');
  const retry = await a1.ok({ type: 'dm', to: 'recipient-d', body: 1, key: 'k-2' });
  expect(retry.duplicate).toBe(false);
  await b.waitFor((f) => f.type === 'dm' && f.id === retry.id);
  await a2.waitFor((f) => f.type === 'dm' && f.id === retry.id);
  await settle(b, a1, 'recipient-d');
  expect(b.frames.filter((f) => f.type === 'dm' && f.id === retry.id)).toHaveLength(1);
});

test('ids containing the key separators (":", "{", "}", "|", "%") get keys of their own; two (sender, key) pairs that used to collide are both stored', async () => {
  // Before: the dedup key joined sender and key with ':', so ("x:y", "z") and ("x", "y:z") shared one key and
  // the second DM was answered ok, duplicate:true and never stored.
  const s1 = await connect('x:y');
  const s2 = await connect('x');
  const to = await connect('to:{r:x}|%');
  const d1 = await s1.ok({ type: 'dm', to: 'to:{r:x}|%', body: 'one', key: 'z' });
  const d2 = await s2.ok({ type: 'dm', to: 'to:{r:x}|%', body: 'two', key: 'y:z' });
  expect(d1.duplicate).toBe(false);
  expect(d2.duplicate).toBe(false);
  expect(d2.offset).toBe((d1.offset as number) + 1);
  await to.waitFor((f) => f.type === 'dm' && f.id === d2.id);
  expect(to.events('dm').map((f) => [f.from, f.body])).toEqual([
    ['x:y', 'one'],
    ['x', 'two'],
  ]);

  // Users whose ids look like another user's key layout: each has its own inbox, live and stored.
  const evil = ['a}', '{u:a}', 'a:c', 'a%3Ac', 'a|b'];
  const victims = await Promise.all([connect('a'), ...evil.map((u) => connect(u))]);
  const sender = await connect('sender-e');
  for (const user of ['a', ...evil]) await sender.ok({ type: 'dm', to: user, body: user });
  for (const [i, user] of ['a', ...evil].entries()) {
    const v = victims[i]!;
    await settle(v, sender, user);
    expect(v.events('dm').map((f) => f.body)).toEqual([user, 'marker']);
    const replay = await v.ok({ type: 'inbox', since: { offset: 0 } });
    expect(replay.offset).toBe(2);
  }

  // Every key of a user lies in its hash tag: one Cluster slot per user, whatever the id.
  const keys = (await redis.cli('--scan', '--pattern', '*')).split('\n').filter((k) => k.includes('{u:'));
  for (const k of keys) expect(k).toMatch(/^rc:\{u:[^{}:|]*\}(:[a-z]+)?(:[^:{}|]*:[^:{}|]*)?$/);
  // "a" and "a}" have separate keys (before, "a}"'s keys were inside user "a"'s hash tag).
  expect(keys.filter((k) => k.startsWith('rc:{u:a}'))).not.toHaveLength(0);
  expect(keys.filter((k) => k.startsWith('rc:{u:a%7D}'))).not.toHaveLength(0);
});

test('room publishes with separator-bearing senders and keys that used to collide are both stored', async () => {
  const s1 = await connect('p:q');
  const s2 = await connect('p');
  await s1.ok({ type: 'join', room: 'shared:room' });
  await s2.ok({ type: 'join', room: 'shared:room' });
  const m1 = await s1.ok({ type: 'publish', room: 'shared:room', body: 1, key: 'r' });
  const m2 = await s2.ok({ type: 'publish', room: 'shared:room', body: 2, key: 'q:r' });
  expect([m1.duplicate, m2.duplicate]).toEqual([false, false]);
  expect(m2.offset).toBe((m1.offset as number) + 1);
  const h = await s1.ok({ type: 'history', room: 'shared:room', limit: 10 });
  expect((h.messages as { body: unknown }[]).map((m) => m.body)).toEqual([1, 2]);
  // The same (sender, key) is still a duplicate.
  expect(await s1.ok({ type: 'publish', room: 'shared:room', body: 1, key: 'r' })).toMatchObject({
    duplicate: true,
    offset: m1.offset,
  });
});
