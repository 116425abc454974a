// Presence events are coalesced per room over PRESENCE_BATCH_MS: filling a room costs a member a few frames, not
// one per join, and the frames still add up to the room's true membership.
import {
  presenceChange,
  startGateway,
  startRedis,
  token,
  TestClient,
  until,
  type Frame,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';

let redis: RedisProc;
let a: GatewayProc;
let b: GatewayProc;
let single: GatewayProc;
const clients: TestClient[] = [];

async function connect(node: GatewayProc, user: string): Promise<TestClient> {
  const c = await TestClient.connect(node.wsUrl, token(user));
  clients.push(c);
  return c;
}

/** The membership a client following the protocol derives: the join reply's list, then every presence frame. */
function fold(initial: string[], frames: Frame[]): string[] {
  const members = new Set(initial);
  for (const f of frames) {
    if (f.type !== 'presence') continue;
    for (const u of (f.joined as string[]) ?? []) members.add(u);
    for (const u of (f.left as string[]) ?? []) members.delete(u);
  }
  return [...members].sort();
}

beforeAll(async () => {
  redis = await startRedis();
  [a, b, single] = await Promise.all([
    startGateway({ REDIS_URL: redis.url, PRESENCE_BATCH_MS: '1000' }),
    startGateway({ REDIS_URL: redis.url, PRESENCE_BATCH_MS: '1000' }),
    startGateway({ REDIS_URL: redis.url, PRESENCE_BATCH_MS: '0' }),
  ]);
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill(), single?.kill()]);
  await redis?.stop();
});

test('30 joins across two nodes reach a member in a few batched frames that add up to the presence list', async () => {
  const watcher = await connect(a, 'watcher');
  const initial = (await watcher.ok({ type: 'join', room: 'fill' })).presence as string[];
  const users = Array.from({ length: 30 }, (_, i) => `filler-${i}`);
  const joiners = await Promise.all(users.map((u, i) => connect(i % 2 ? a : b, u)));
  await Promise.all(joiners.map((c) => c.ok({ type: 'join', room: 'fill' })));
  const all = ['watcher', ...users].sort();
  await until('every join folded in', () => fold(initial, watcher.frames).length === all.length);
  const frames = watcher.frames.filter((f) => f.type === 'presence');
  // One frame per change would be 30 (31 with the watcher's own join).
  expect(frames.length).toBeLessThan(15);
  for (const f of frames) {
    const joined = (f.joined as string[]) ?? [];
    const left = (f.left as string[]) ?? [];
    expect(new Set([...joined, ...left]).size).toBe(joined.length + left.length);
    if (joined.length + left.length === 1) expect(f.user).toBe(joined[0] ?? left[0]);
    else expect(f.user).toBeUndefined();
  }
  expect(fold(initial, watcher.frames)).toEqual(all);
  expect(((await watcher.ok({ type: 'presence', room: 'fill' })).presence as string[]).sort()).toEqual(all);

  // Half of them leave, on both nodes: the frames still add up to the presence command's answer.
  await Promise.all(joiners.slice(0, 15).map((c) => c.ok({ type: 'leave', room: 'fill' })));
  const rest = ['watcher', ...users.slice(15)].sort();
  await until('every leave folded in', () => fold(initial, watcher.frames).length === rest.length);
  expect(fold(initial, watcher.frames)).toEqual(rest);
  expect(((await watcher.ok({ type: 'presence', room: 'fill' })).presence as string[]).sort()).toEqual(rest);
});

test('a user who joins and leaves within one window ends up absent; the frames never list a user twice', async () => {
  const watcher = await connect(a, 'watcher-2');
  const initial = (await watcher.ok({ type: 'join', room: 'flicker' })).presence as string[];
  const flicker = await connect(b, 'flicker');
  await flicker.ok({ type: 'join', room: 'flicker' });
  await flicker.ok({ type: 'leave', room: 'flicker' });
  const steady = await connect(b, 'steady');
  await steady.ok({ type: 'join', room: 'flicker' });
  await watcher.waitFor((f) => presenceChange(f, 'join', 'steady'));
  await until('flicker gone', () => !fold(initial, watcher.frames).includes('flicker'));
  expect(fold(initial, watcher.frames)).toEqual(['steady', 'watcher-2']);
  expect(((await watcher.ok({ type: 'presence', room: 'flicker' })).presence as string[]).sort()).toEqual([
    'steady',
    'watcher-2',
  ]);
});

test('PRESENCE_BATCH_MS=0 sends each change in its own frame with event and user', async () => {
  const watcher = await connect(single, 'watcher-3');
  await watcher.ok({ type: 'join', room: 'one-by-one' });
  const others = await Promise.all(['x1', 'x2', 'x3'].map((u) => connect(b, u)));
  await Promise.all(others.map((c) => c.ok({ type: 'join', room: 'one-by-one' })));
  for (const u of ['x1', 'x2', 'x3']) await watcher.waitFor((f) => presenceChange(f, 'join', u));
  const frames = watcher.frames.filter((f) => f.type === 'presence');
  // The watcher's own join and the three others, one frame each.
  expect(frames).toHaveLength(4);
  for (const f of frames) {
    expect(f.event).toBe('join');
    expect(f.joined).toEqual([f.user]);
    expect(f.left).toEqual([]);
  }
});

test('garbage on a room channel (a hostile or broken backend) is dropped; the node serves and later changes arrive', async () => {
  const watcher = await connect(a, 'watcher-4');
  await watcher.ok({ type: 'join', room: 'noise' });
  const channel = 'rc:{r:noise}';
  for (const payload of [
    'p|not json',
    'p|{"type":"presence","room":"noise","event":"explode","user":"z"}',
    'p|{"type":"presence","room":"noise","event":"join","user":{"no":1}}',
    'p|' + '['.repeat(100_000),
    'p|',
    'p',
  ])
    await redis.cli('PUBLISH', channel, payload);
  expect((await watcher.ok({ type: 'ping' })).pong).toBe(true);
  const late = await connect(b, 'late');
  await late.ok({ type: 'join', room: 'noise' });
  await watcher.waitFor((f) => presenceChange(f, 'join', 'late'));
  const listed = watcher.frames
    .filter((f) => f.type === 'presence')
    .flatMap((f) => [...((f.joined as string[]) ?? []), ...((f.left as string[]) ?? [])]);
  expect(listed.sort()).toEqual(['late', 'watcher-4']);
  expect((await watcher.ok({ type: 'ping' })).pong).toBe(true);
});
