// Overflow replays what is kept, and every jump is announced. A position older than what an inbox or a room
// keeps (INBOX_SIZE / HISTORY_SIZE small here) gets one gap event for what is gone, then every kept event in
// order, then live ones. A hole between consecutive offsets (as a failover's offset jump leaves, written here
// straight into Redis the way the append script does it) is preceded by a gap wherever events are written.
import { FAILOVER_OFFSET_JUMP } from '../../services/gateway/src/engine/scripts';
import {
  startRedis,
  token,
  TestClient,
  type Frame,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';
import { faultEnv, startNodes } from './nodes';

const KEPT = 5;

let redis: RedisProc;
let nodes: GatewayProc[] = [];

beforeAll(async () => {
  redis = await startRedis();
  ({ nodes } = await startNodes(
    2,
    faultEnv(redis.url, { INBOX_SIZE: String(KEPT), HISTORY_SIZE: String(KEPT) }),
  ));
});
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.kill()));
  await redis?.stop();
});

/** The stream's events (messages or DMs, and gaps) as a client saw them, in order, compactly. */
function seen(c: TestClient, kind: 'dm' | 'message', room?: string): string[] {
  return c.frames
    .filter((f) => (f.type === kind || f.type === 'gap') && (room === undefined ? true : f.room === room))
    .filter((f) => (kind === 'dm' ? f.type === 'dm' || f.inbox === true : true))
    .map((f) => (f.type === 'gap' ? `gap ${String(f.from)}-${String(f.to)}` : String(f.offset)));
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => String(from + i));

test('an inbox overflowed while its user was offline: one gap, then exactly the kept DMs in order, then live', async () => {
  const [a, b] = nodes as [GatewayProc, GatewayProc];
  const sender = await TestClient.connect(a.wsUrl, token('ovid'));
  const ivy = await TestClient.connect(b.wsUrl, token('ivy'), { query: 'inbox=0' });
  for (let i = 1; i <= 2; i++) await sender.ok({ type: 'dm', to: 'ivy', body: i });
  const second = await ivy.waitFor((f) => f.type === 'dm' && f.offset === 2);
  await ivy.close();
  // 10 more while offline: the inbox keeps the last 5 (8..12).
  for (let i = 3; i <= 12; i++) await sender.ok({ type: 'dm', to: 'ivy', body: i });

  const back = await TestClient.connect(a.wsUrl, token('ivy'), { query: `inbox=2:${String(second.epoch)}` });
  expect(back.welcome.inbox).toEqual({ offset: 2, epoch: second.epoch, recovered: false });
  await back.waitFor((f) => f.type === 'dm' && f.offset === 12);
  const live = await sender.ok({ type: 'dm', to: 'ivy', body: 13 });
  await back.waitFor((f) => f.type === 'dm' && f.id === live.id);
  expect(seen(back, 'dm')).toEqual(['gap 3-7', ...range(8, 13)]);
  expect(back.frames.find((f) => f.type === 'gap')).toMatchObject({ inbox: true, epoch: second.epoch });
  expect(back.events('dm').map((d) => d.body)).toEqual([8, 9, 10, 11, 12, 13]);
  await Promise.all([back.close(), sender.close()]);
});

test('the inbox command of an old client after an overflow: the same gap, then the kept DMs', async () => {
  const sender = await TestClient.connect(nodes[0]!.wsUrl, token('omar'));
  for (let i = 1; i <= 9; i++) await sender.ok({ type: 'dm', to: 'iris', body: i });
  const iris = await TestClient.connect(nodes[1]!.wsUrl, token('iris'));
  const r = await iris.ok({ type: 'inbox', since: { offset: 0 } });
  expect(r).toMatchObject({ recovered: false, offset: 9 });
  await iris.waitFor((f) => f.type === 'dm' && f.offset === 9);
  await iris.ok({ type: 'ping' });
  expect(seen(iris, 'dm')).toEqual(['gap 1-4', ...range(5, 9)]);
  await Promise.all([iris.close(), sender.close()]);
});

test('an old client whose inbox overflowed and that got DMs live before its inbox command: gap, kept DMs, none twice', async () => {
  const sender = await TestClient.connect(nodes[0]!.wsUrl, token('olly'));
  for (let i = 1; i <= 9; i++) await sender.ok({ type: 'dm', to: 'ines', body: i });
  const ines = await TestClient.connect(nodes[1]!.wsUrl, token('ines'));
  expect(ines.welcome.inbox).toMatchObject({ offset: 9 });
  for (let i = 10; i <= 11; i++) await sender.ok({ type: 'dm', to: 'ines', body: i });
  await ines.waitFor((f) => f.type === 'dm' && f.offset === 11);
  // Kept now: 7..11, of which 10 and 11 were already sent live on this connection.
  expect(await ines.ok({ type: 'inbox', since: { offset: 0 } })).toMatchObject({ recovered: false });
  await ines.waitFor((f) => f.type === 'dm' && f.offset === 9);
  const live = await sender.ok({ type: 'dm', to: 'ines', body: 12 });
  await ines.waitFor((f) => f.type === 'dm' && f.id === live.id);
  expect(seen(ines, 'dm')).toEqual(['10', '11', 'gap 1-6', '7', '8', '9', '12']);
  await Promise.all([ines.close(), sender.close()]);
});

test('a room overflowed while a member was away: join since gets one gap, then exactly the kept messages, then live', async () => {
  const [a, b] = nodes as [GatewayProc, GatewayProc];
  const room = 'of-room';
  const pub = await TestClient.connect(a.wsUrl, token('pam'));
  await pub.ok({ type: 'join', room });
  const rob = await TestClient.connect(b.wsUrl, token('rob'));
  await rob.ok({ type: 'join', room });
  for (let i = 1; i <= 2; i++) await pub.ok({ type: 'publish', room, body: i });
  // The room was empty at the join (epoch ""): its epoch comes with its first message, as a client keeps it.
  const joined = await rob.waitFor((f) => f.type === 'message' && f.offset === 2);
  await rob.close();
  for (let i = 3; i <= 12; i++) await pub.ok({ type: 'publish', room, body: i });

  const back = await TestClient.connect(a.wsUrl, token('rob'));
  const r = await back.ok({ type: 'join', room, since: { offset: 2, epoch: joined.epoch } });
  expect(r).toMatchObject({ recovered: false, offset: 12, epoch: joined.epoch });
  await back.waitFor((f) => f.type === 'message' && f.offset === 12);
  const live = await pub.ok({ type: 'publish', room, body: 13 });
  await back.waitFor((f) => f.type === 'message' && f.id === live.id);
  expect(seen(back, 'message', room)).toEqual(['gap 3-7', ...range(8, 13)]);
  // The reply comes before the replay.
  const replyAt = back.frames.findIndex((f) => f.re !== undefined && f.recovered === false);
  const gapAt = back.frames.findIndex((f) => f.type === 'gap');
  expect(replyAt).toBeLessThan(gapAt);
  await Promise.all([back.close(), pub.close()]);
});

test('a position in an epoch that is gone: a reset gap (to: null), then every DM of the new epoch', async () => {
  const sender = await TestClient.connect(nodes[0]!.wsUrl, token('olaf'));
  const old = await sender.ok({ type: 'dm', to: 'una', body: 'old' });
  // The inbox expires (INBOX_TTL_S) or Redis loses it: a new epoch starts with the next DM.
  await redis.cli('DEL', 'rc:{u:una}:m', 'rc:{u:una}:h');
  for (let i = 1; i <= 3; i++) await sender.ok({ type: 'dm', to: 'una', body: i });
  const una = await TestClient.connect(nodes[1]!.wsUrl, token('una'), {
    query: `inbox=${String(old.offset)}:${String(old.epoch)}`,
  });
  expect(una.welcome.inbox).toEqual({ offset: 1, epoch: old.epoch, recovered: false });
  await una.waitFor((f) => f.type === 'dm' && f.body === 3);
  expect(seen(una, 'dm')).toEqual(['gap 2-null', '1', '2', '3']);
  const gap = una.frames.find((f) => f.type === 'gap')!;
  expect(gap.epoch).not.toBe(old.epoch);
  expect(una.events('dm').every((d) => d.epoch === gap.epoch)).toBe(true);
  await Promise.all([una.close(), sender.close()]);
});

/** Bumps a stream's offset the way the append script does after a failover (FAILOVER_OFFSET_JUMP). */
async function jump(metaKey: string): Promise<void> {
  await redis.cli('HINCRBY', metaKey, 'o', String(FAILOVER_OFFSET_JUMP));
}

test('a failover offset jump inside a history page: a late joiner from 0 and a live member both get a gap before it', async () => {
  const gw = nodes[0]!;
  const room = 'jump-room';
  const pub = await TestClient.connect(gw.wsUrl, token('jon'));
  const member = await TestClient.connect(gw.wsUrl, token('meg'));
  await pub.ok({ type: 'join', room });
  await member.ok({ type: 'join', room });
  for (let i = 1; i <= 3; i++) await pub.ok({ type: 'publish', room, body: i });
  await jump(`rc:{r:${room}}:m`);
  const acks: Frame[] = [];
  for (let i = 4; i <= 5; i++) acks.push(await pub.ok({ type: 'publish', room, body: i }));
  const top = 3 + FAILOVER_OFFSET_JUMP + 2;
  expect(acks.at(-1)!.offset).toBe(top);
  const expected = ['1', '2', '3', `gap 4-${3 + FAILOVER_OFFSET_JUMP}`, String(top - 1), String(top)];

  await member.waitFor((f) => f.type === 'message' && f.offset === top);
  expect(seen(member, 'message', room)).toEqual(expected);

  const late = await TestClient.connect(gw.wsUrl, token('lou'));
  // recovered: the history reaches back to the position; the hole inside it is announced in the replay.
  expect(await late.ok({ type: 'join', room, since: { offset: 0 } })).toMatchObject({ recovered: true });
  await late.waitFor((f) => f.type === 'message' && f.offset === top);
  expect(seen(late, 'message', room)).toEqual(expected);
  await Promise.all([pub.close(), member.close(), late.close()]);
});

test('a failover offset jump in an inbox: replayed from 0 with a gap before it', async () => {
  const gw = nodes[1]!;
  const sender = await TestClient.connect(gw.wsUrl, token('jay'));
  await sender.ok({ type: 'dm', to: 'jan', body: 1 });
  await sender.ok({ type: 'dm', to: 'jan', body: 2 });
  await jump('rc:{u:jan}:m');
  const last = await sender.ok({ type: 'dm', to: 'jan', body: 3 });
  const jan = await TestClient.connect(gw.wsUrl, token('jan'), { query: 'inbox=0' });
  await jan.waitFor((f) => f.type === 'dm' && f.id === last.id);
  expect(seen(jan, 'dm')).toEqual(['1', '2', `gap 3-${2 + FAILOVER_OFFSET_JUMP}`, String(last.offset)]);
  await Promise.all([jan.close(), sender.close()]);
});
