// The hub in process (real Hub and MemoryEngine, fake Connections): ordered delivery through backpressure and
// dropped writes, catch-up on drain, presence batching, and channels released with their last member.
import { CLOSE } from '../../protocol';
import { SendStatus } from '../../services/gateway/src/hub/client';
import { until } from '../helpers/harness';
import { startNode, type TestNode } from './node';

let node: TestNode;
afterEach(async () => {
  await node?.stop();
});

const offsets = (frames: { offset: number }[]) => frames.map((m) => m.offset);

test('a connection over SLOW_CONSUMER_BYTES is paused, then caught up from history on drain, in order, once each', async () => {
  node = await startNode({ SLOW_CONSUMER_BYTES: '1024' });
  const pub = await node.connect('alice');
  const slow = await node.connect('bob');
  await pub.ok({ type: 'join', room: 's' });
  await slow.ok({ type: 'join', room: 's' });
  slow.conn.status = SendStatus.BUFFERED;
  slow.conn.buffered = 4096;
  await pub.ok({ type: 'publish', room: 's', body: 1 });
  await until('the first write marks it slow', () => node.hub.slowConsumers === 1);
  for (let i = 2; i <= 6; i++) await pub.ok({ type: 'publish', room: 's', body: i });
  await until('the publisher has all six', () => pub.conn.events('message').length === 6);
  expect(offsets(slow.conn.events('message'))).toEqual([1]);
  // Still over half the bound: nothing resumes.
  slow.conn.buffered = 600;
  node.hub.drained(slow.client);
  expect(node.hub.slowConsumers).toBe(1);
  slow.conn.status = SendStatus.SENT;
  slow.conn.buffered = 0;
  node.hub.drained(slow.client);
  await until('caught up', () => slow.conn.events('message').length === 6);
  expect(offsets(slow.conn.events('message'))).toEqual([1, 2, 3, 4, 5, 6]);
  expect(node.hub.slowConsumers).toBe(0);
  await pub.ok({ type: 'publish', room: 's', body: 7 });
  await until('live again', () => slow.conn.events('message').length === 7);
});

test('a dropped write is not lost: the event is written again by the catch-up after drain', async () => {
  node = await startNode();
  const pub = await node.connect('alice');
  const flaky = await node.connect('bob');
  await pub.ok({ type: 'join', room: 'd' });
  await flaky.ok({ type: 'join', room: 'd' });
  flaky.conn.status = SendStatus.DROPPED;
  await pub.ok({ type: 'publish', room: 'd', body: 'lost?' });
  await until('marked slow', () => node.hub.slowConsumers === 1);
  expect(flaky.conn.events('message')).toEqual([]);
  flaky.conn.status = SendStatus.SENT;
  node.hub.drained(flaky.client);
  await until('delivered', () => flaky.conn.events('message').length === 1);
  expect(flaky.conn.events('message')[0]).toMatchObject({ offset: 1, body: 'lost?' });
});

test('presence changes within PRESENCE_BATCH_MS reach members as one frame; a join then a leave is a leave', async () => {
  node = await startNode({ PRESENCE_BATCH_MS: '100' });
  const watcher = await node.connect('watcher');
  await watcher.ok({ type: 'join', room: 'p' });
  await until('own join announced', () => watcher.conn.events('presence').length === 1);
  const [c1, c2, c3] = await Promise.all(['u1', 'u2', 'u3'].map((u) => node.connect(u)));
  await Promise.all([c1!, c2!, c3!].map((c) => c.ok({ type: 'join', room: 'p' })));
  await c3!.ok({ type: 'leave', room: 'p' });
  await until('one more frame', () => watcher.conn.events('presence').length === 2);
  const batch = watcher.conn.events('presence')[1]!;
  expect(batch.joined?.sort()).toEqual(['u1', 'u2']);
  expect(batch.left).toEqual(['u3']);
});

test('a room channel is released when its last local member leaves or disconnects', async () => {
  node = await startNode();
  const a = await node.connect('alice');
  const b = await node.connect('bob');
  const base = node.hub.channelCount; // the two inboxes
  await a.ok({ type: 'join', room: 'c' });
  await b.ok({ type: 'join', room: 'c' });
  expect(node.hub.channelCount).toBe(base + 1);
  expect(node.hub.roomCount).toBe(1);
  await a.ok({ type: 'leave', room: 'c' });
  expect(node.hub.roomCount).toBe(1);
  b.conn.close(1000, 'bye');
  expect(node.hub.roomCount).toBe(0);
  expect(node.hub.channelCount).toBe(base - 1); // bob's inbox went with him
});

test('replies share the one egress: a reply into a backed-up socket pauses live pushes, and over MAX_BUFFERED_BYTES closes it', async () => {
  node = await startNode({ SLOW_CONSUMER_BYTES: '1024', MAX_BUFFERED_BYTES: '262144' });
  const pub = await node.connect('alice');
  const c = await node.connect('bob');
  await pub.ok({ type: 'join', room: 'e' });
  await c.ok({ type: 'join', room: 'e' });
  c.conn.status = SendStatus.BUFFERED;
  c.conn.buffered = 4096;
  expect(await c.ok({ type: 'ping' })).toMatchObject({ pong: true }); // written (queued), and counted as slow
  expect(node.hub.slowConsumers).toBe(1);
  await pub.ok({ type: 'publish', room: 'e', body: 'held' });
  await until('the publisher has it', () => pub.conn.events('message').length === 1);
  expect(c.conn.events('message')).toEqual([]);
  c.conn.status = SendStatus.SENT;
  c.conn.buffered = 0;
  node.hub.drained(c.client);
  await until('caught up', () => c.conn.events('message').length === 1);
  c.conn.status = SendStatus.BUFFERED;
  c.conn.buffered = 300_000;
  await c.reply({ type: 'ping' });
  expect(c.conn.closedWith?.code).toBe(CLOSE.slowConsumer);
});

test('native topics: a member that stops reading leaves its topic before uWS would skip it, and rejoins once caught up', async () => {
  node = await startNode({
    SLOW_CONSUMER_BYTES: '8192',
    MAX_BUFFERED_BYTES: '65536',
    MAX_MESSAGE_BYTES: '4096',
    MAX_FRAME_BYTES: '8192',
    USER_MSG_RATE: '0',
    CMD_RATE: '100000',
    CMD_BURST: '100000',
  });
  const pub = await node.connect('alice');
  const reader = await node.connect('bob');
  const stalled = await node.connect('carol');
  for (const c of [pub, reader, stalled]) await c.ok({ type: 'join', room: 'n' });
  await pub.ok({ type: 'publish', room: 'n', body: 0 });
  await until('all three in the native topic', () => node.hub.nativeMembers === 3);
  stalled.conn.stalled = true;
  const pad = 'x'.repeat(500);
  for (let i = 1; i < 200; i++) await pub.ok({ type: 'publish', room: 'n', body: { i, pad } });
  await until('the reader has everything', () => reader.conn.events('message').length === 200);
  expect(node.hub.slowConsumers).toBe(1);
  expect(node.hub.nativeMembers).toBe(2);
  // Taken out before its buffer passed MAX_BUFFERED_BYTES: nothing was ever skipped, nothing closed.
  expect(stalled.conn.buffered).toBeLessThanOrEqual(65536);
  expect(stalled.conn.closedWith).toBeUndefined();
  stalled.conn.stalled = false;
  stalled.conn.buffered = 0;
  node.hub.drained(stalled.client);
  await until('caught up', () => stalled.conn.events('message').length === 200);
  await until('back in the topic', () => node.hub.nativeMembers === 3);
  await pub.ok({ type: 'publish', room: 'n', body: 'after' });
  await until('live again', () => stalled.conn.events('message').length === 201);
  for (const c of [pub, reader, stalled]) {
    expect(offsets(c.conn.events('message'))).toEqual(Array.from({ length: 201 }, (_, k) => k + 1));
    expect(c.conn.silentlyDropped).toBe(0);
  }
});

test('native topics: a DM sender connection passes over its own copy while its other connection gets it from the topic', async () => {
  node = await startNode();
  const a1 = await node.connect('ann');
  const a2 = await node.connect('ann');
  const bo = await node.connect('bo');
  for (let i = 1; i <= 30; i++) {
    if (i % 3 === 0) await a1.ok({ type: 'dm', to: 'bo', body: i });
    else await bo.ok({ type: 'dm', to: 'ann', body: i });
  }
  await until('a2 has all 30', () => a2.conn.events('dm').length === 30);
  await until('a1 has the 20 from bo', () => a1.conn.events('dm').length === 20);
  expect(offsets(a2.conn.events('dm'))).toEqual(Array.from({ length: 30 }, (_, k) => k + 1));
  expect(offsets(a1.conn.events('dm'))).toEqual(
    Array.from({ length: 30 }, (_, k) => k + 1).filter((o) => o % 3 !== 0),
  );
  expect(node.hub.nativeMembers).toBeGreaterThanOrEqual(2);
});
