// Presence is the truth: whatever the interleaving of join, leave, close and the room's subscription, a user is
// listed exactly while one of their connections is in the room. Each try joins a room new to the node (so the
// join waits for a SUBSCRIBE) and leaves it at once, closes the socket, or drops the TCP connection.
import {
  startGateway,
  startRedis,
  token,
  TestClient,
  until,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';
import { faultEnv, startNodes } from './nodes';

const API_KEY = 'presence-truth-api-key';
const TRIES = 60;

let redis: RedisProc;
let node: GatewayProc;

beforeAll(async () => {
  redis = await startRedis();
  node = (await startNodes(1, faultEnv(redis.url, { API_KEY }))).nodes[0]!;
});
afterAll(async () => {
  await node?.kill();
  await redis?.stop();
});

async function apiPresence(room: string): Promise<string[]> {
  const res = await fetch(`${node.url}/api/presence/${room}`, {
    headers: { authorization: `Bearer ${API_KEY}` },
  });
  if (res.status !== 200) throw new Error(`presence ${room}: ${res.status}`);
  return ((await res.json()) as { presence: string[] }).presence;
}

/** Every presence key in Redis with an entry, and this node's index entries for presence. */
async function presenceInRedis(prefix: string): Promise<{ entries: string[]; indexed: string[] }> {
  const entries: string[] = [];
  for (const key of (await redis.cli('--scan', '--pattern', `rc:{r:${prefix}*}:p*`)).split('\n')) {
    if (!key) continue;
    const type = await redis.cli('TYPE', key);
    const n = Number(await redis.cli(type === 'zset' ? 'ZCARD' : 'HLEN', key));
    if (n > 0) entries.push(`${key} (${n}, ttl ${await redis.cli('TTL', key)})`);
  }
  // The node's index, under its instance id (`<NODE_ID>#<random>`); gone when it holds nothing.
  const indexKeys = (await redis.cli('--scan', '--pattern', `rc:node:${node.nodeId}#*:idx`))
    .split('\n')
    .filter(Boolean);
  expect(indexKeys.length).toBeLessThanOrEqual(1);
  const index = indexKeys[0] ? (await redis.cli('SMEMBERS', indexKeys[0])).split('\n') : [];
  const indexed = index.filter((m) => m.startsWith('["p",') && m.includes(`"${prefix}`));
  return { entries, indexed };
}

/** Waits until neither the API nor Redis lists anyone in the rooms; a ghost never leaves, so this times out. */
async function expectEmpty(prefix: string): Promise<void> {
  const rooms = Array.from({ length: TRIES }, (_, i) => `${prefix}${i}`);
  await until(
    `presence of ${prefix}* to be empty`,
    async () => {
      const listed = await Promise.all(rooms.map(apiPresence));
      const { entries, indexed } = await presenceInRedis(prefix);
      return listed.every((p) => p.length === 0) && entries.length === 0 && indexed.length === 0;
    },
    5000,
  );
  const { entries, indexed } = await presenceInRedis(prefix);
  expect({ entries, indexed }).toEqual({ entries: [], indexed: [] });
  expect(await apiPresence(`${prefix}0`)).toEqual([]);
}

async function expectServing(): Promise<void> {
  const c = await TestClient.connect(node.wsUrl, token('bystander'));
  expect((await c.ok({ type: 'ping' })).pong).toBe(true);
  await c.close();
}

test(`join then leave at once, ${TRIES} rooms new to the node: nobody is left in presence`, async () => {
  const c = await TestClient.connect(node.wsUrl, token('lena'));
  const replies = await Promise.all(
    Array.from({ length: TRIES }, (_, i) => {
      const room = `pt-leave-${i}`;
      const joined = c.request({ type: 'join', room });
      const left = c.request({ type: 'leave', room });
      return Promise.all([joined, left]);
    }),
  );
  for (const [joined, left] of replies) {
    // The join either completed first or was overtaken by the leave; the leave always succeeds.
    if (!joined.ok) expect(joined.error).toMatchObject({ code: 'not_member' });
    expect(left.ok).toBe(true);
  }
  await expectEmpty('pt-leave-');
  await c.close();
  await expectServing();
});

test(`join then close the socket at once, ${TRIES} times: nobody is left in presence`, async () => {
  for (let i = 0; i < TRIES; i++) {
    const c = await TestClient.connect(node.wsUrl, token(`cole-${i % 3}`));
    c.sendRaw(JSON.stringify({ id: 1, type: 'join', room: `pt-close-${i}` }));
    await c.close();
  }
  await expectEmpty('pt-close-');
  await expectServing();
});

test(`join then drop the TCP connection at once, ${TRIES} times: nobody is left in presence`, async () => {
  for (let i = 0; i < TRIES; i++) {
    const c = await TestClient.connect(node.wsUrl, token(`drew-${i % 3}`));
    c.sendRaw(JSON.stringify({ id: 1, type: 'join', room: `pt-drop-${i}` }));
    c.ws.terminate(); // destroys the socket: no close frame
    await c.waitClosed();
  }
  await expectEmpty('pt-drop-');
  await expectServing();
});

test('two connections of one user joining and leaving the same fresh rooms in a storm: listed exactly while one is in', async () => {
  const a = await TestClient.connect(node.wsUrl, token('mona'));
  const b = await TestClient.connect(node.wsUrl, token('mona'));
  // a stays in the even rooms; b joins and leaves every room at once.
  await Promise.all(
    Array.from({ length: TRIES }, (_, i) => {
      const room = `pt-pair-${i}`;
      const steps = [b.request({ type: 'join', room }), b.request({ type: 'leave', room })];
      if (i % 2 === 0) steps.push(a.ok({ type: 'join', room }));
      return Promise.all(steps);
    }),
  );
  const expected = Array.from({ length: TRIES }, (_, i) => (i % 2 === 0 ? ['mona'] : []));
  const listed = () => Promise.all(expected.map((_, i) => apiPresence(`pt-pair-${i}`)));
  // b's last removals may still be on their way to Redis; a ghost or a missing mark would stay.
  await until(
    'presence to settle',
    async () => JSON.stringify(await listed()) === JSON.stringify(expected),
    5000,
  );
  expect(await listed()).toEqual(expected);
  await a.close();
  await b.close();
  await expectEmpty('pt-pair-');
});

test('a leave whose presence removal fails while Redis is frozen is retried until it holds: no ghost after Redis is back', async () => {
  const gw = await startGateway({
    ...faultEnv(redis.url, { API_KEY, REDIS_COMMAND_TIMEOUT_MS: '300' }),
    NODE_ID: 'presence-truth-frozen',
  });
  try {
    const c = await TestClient.connect(gw.wsUrl, token('fay'));
    await c.ok({ type: 'join', room: 'pt-frozen' });
    expect(await apiPresence('pt-frozen')).toEqual(['fay']);
    redis.pause();
    try {
      await c.close();
      await until('the failed removal to be logged', () => gw.logs().includes('presence write failed'), 5000);
    } finally {
      redis.resume();
    }
    await until(
      'presence to be empty again',
      async () => (await apiPresence('pt-frozen')).length === 0,
      5000,
    );
    expect(await redis.cli('ZCARD', 'rc:{r:pt-frozen}:p')).toBe('0');
    expect(await redis.cli('HLEN', 'rc:{r:pt-frozen}:pu')).toBe('0');
  } finally {
    await gw.kill();
  }
});
