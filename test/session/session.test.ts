// The session layer in process: the real Gateway, Hub and MemoryEngine with fake Connections (test/session/node.ts),
// so the command handlers, their limits and the order of replies and follow-up frames are tested without spawning
// anything. Every frame sent is checked by the shared protocol validator. The spawned-process suites stay.
import { CLOSE, ERROR_CODES } from '../../protocol';
import { until } from '../helpers/harness';
import { startNode, type TestNode } from './node';
import type { Session } from '../../services/gateway/src/session/context';

let node: TestNode;
afterEach(async () => {
  await node?.stop();
});

test('welcome, join, publish: the reply and the event reach every member once, in order, in the shared types', async () => {
  node = await startNode();
  const a = await node.connect('alice');
  const b = await node.connect('bob');
  expect(a.conn.frames[0]).toMatchObject({
    type: 'welcome',
    user: 'alice',
    node: node.config.nodeId,
    protocol: 1,
  });
  expect(await a.ok({ type: 'join', room: 'r1' })).toMatchObject({
    room: 'r1',
    presence: ['alice'],
    offset: 0,
  });
  await b.ok({ type: 'join', room: 'r1' });
  const sent = [];
  for (let i = 1; i <= 5; i++)
    sent.push(await a.ok({ type: 'publish', room: 'r1', body: { n: i }, key: `k${i}` }));
  expect(sent.map((s) => s.offset)).toEqual([1, 2, 3, 4, 5]);
  for (const c of [a, b]) {
    await until('five messages', () => c.conn.events('message').length === 5);
    expect(c.conn.events('message').map((m) => [m.offset, m.body])).toEqual(
      sent.map((s, i) => [s.offset, { n: i + 1 }]),
    );
  }
  // The same key again: the first result, nothing stored or sent.
  expect(await a.ok({ type: 'publish', room: 'r1', body: { n: 1 }, key: 'k1' })).toMatchObject({
    offset: 1,
    duplicate: true,
  });
  const history = await b.ok({ type: 'history', room: 'r1', limit: 10 });
  expect(history.messages.map((m) => m.offset)).toEqual([1, 2, 3, 4, 5]);
  expect(b.conn.events('message')).toHaveLength(5);
});

test('a join with since answers first, then replays what was missed, then continues live', async () => {
  node = await startNode();
  const a = await node.connect('alice');
  await a.ok({ type: 'join', room: 'r2' });
  for (let i = 1; i <= 3; i++) await a.ok({ type: 'publish', room: 'r2', body: i });
  const b = await node.connect('bob');
  const reply = await b.ok({ type: 'join', room: 'r2', since: { offset: 1 } });
  expect(reply).toMatchObject({ offset: 3, recovered: true });
  await until('two replayed', () => b.conn.events('message').length === 2);
  const replyAt = b.conn.frames.findIndex(
    (f) => f.re !== undefined && (f as { room?: string }).room === 'r2',
  );
  const firstReplay = b.conn.frames.findIndex((f) => f.type === 'message');
  expect(replyAt).toBeLessThan(firstReplay);
  await a.ok({ type: 'publish', room: 'r2', body: 4 });
  await until('live after the replay', () => b.conn.events('message').length === 3);
  expect(b.conn.events('message').map((m) => m.offset)).toEqual([2, 3, 4]);
});

test('a DM reaches every connection of the recipient and the sender’s other connections, not the sending one', async () => {
  node = await startNode();
  const a1 = await node.connect('alice');
  const a2 = await node.connect('alice');
  const b1 = await node.connect('bob');
  const b2 = await node.connect('bob');
  const r = await a1.ok({ type: 'dm', to: 'bob', body: 'hi', key: 'dm-1' });
  expect(r).toMatchObject({ delivered: 2, live: true, stored: true, duplicate: false });
  for (const c of [b1, b2, a2]) await until('the dm', () => c.conn.events('dm').length === 1);
  expect(b1.conn.events('dm')[0]).toMatchObject({ from: 'alice', to: 'bob', body: 'hi', id: r.id });
  expect(a2.conn.events('dm')[0]).toMatchObject({ id: r.id });
  await a1.ok({ type: 'ping' });
  expect(a1.conn.events('dm')).toEqual([]);
});

test('bad frames are answered with their documented code; MAX_VIOLATIONS of them close with 1008; the node serves on', async () => {
  node = await startNode({ MAX_VIOLATIONS: '3' });
  const bad = await node.connect('mallory');
  const good = await node.connect('alice');
  bad.raw('not json');
  bad.raw('{"id":99,"type":"fly"}');
  expect(await bad.reply({ type: 'join', room: 'bad room!' })).toMatchObject({
    ok: false,
    error: { code: 'bad_request', retryable: false },
  });
  const codes = bad.conn.frames.filter((f) => f.ok === false).map((f) => (f.error as { code: string }).code);
  expect(codes).toEqual(['bad_request', 'unknown_type', 'bad_request']);
  expect(codes.every((c) => ERROR_CODES[c as keyof typeof ERROR_CODES].violation)).toBe(true);
  expect(bad.conn.closedWith).toEqual({ code: CLOSE.policy, reason: 'too many bad frames' });
  expect(node.gateway.sessions.has(bad.client)).toBe(false);
  // Errors that are not violations do not count: a non-member publish three times leaves the socket open.
  for (let i = 0; i < 3; i++)
    expect(await good.reply({ type: 'publish', room: 'nope', body: 1 })).toMatchObject({
      error: { code: 'not_member' },
    });
  expect(good.conn.closedWith).toBeUndefined();
  expect(await good.ok({ type: 'ping' })).toMatchObject({ pong: true });
});

test('the command bucket answers rate_limited with retryAfterMs once the burst is spent', async () => {
  node = await startNode({ CMD_RATE: '1', CMD_BURST: '3' });
  const a = await node.connect('alice');
  for (let i = 0; i < 3; i++) await a.ok({ type: 'ping' });
  const limited = await a.reply({ type: 'ping' });
  expect(limited).toMatchObject({ ok: false, error: { code: 'rate_limited', retryable: true } });
  expect((limited as { error: { retryAfterMs: number } }).error.retryAfterMs).toBeGreaterThan(0);
  expect(a.conn.closedWith).toBeUndefined();
});

test('refresh: another user’s token is unauthorized; a narrower rooms claim leaves rooms, the reply before `left`', async () => {
  node = await startNode();
  const a = await node.connect('alice');
  await a.ok({ type: 'join', room: 'team-a' });
  await a.ok({ type: 'join', room: 'lobby' });
  expect(await a.reply({ type: 'refresh', token: node.token('bob') })).toMatchObject({
    ok: false,
    error: { code: 'unauthorized', message: 'token is for another user' },
  });
  expect(await a.reply({ type: 'refresh', token: 'garbage' })).toMatchObject({
    error: { code: 'unauthorized' },
  });
  const r = await a.ok({ type: 'refresh', token: node.token('alice', ['lobby']) });
  expect(r.expiresAt).toBeGreaterThan(Date.now());
  await until('left', () => a.conn.events('left').length === 1);
  expect(a.conn.events('left')[0]).toEqual({ type: 'left', rooms: ['team-a'], reason: 'token' });
  const replyAt = a.conn.frames.findIndex((f) => 'expiresAt' in f && f.ok === true);
  expect(replyAt).toBeLessThan(a.conn.frames.findIndex((f) => f.type === 'left'));
  expect([...a.client.rooms.keys()]).toEqual(['lobby']);
  expect(await a.reply({ type: 'join', room: 'team-a' })).toMatchObject({ error: { code: 'forbidden' } });
});

test('MAX_ROOMS_PER_CONNECTION: one join past it is too_many_rooms; leaving makes room', async () => {
  node = await startNode({ MAX_ROOMS_PER_CONNECTION: '2' });
  const a = await node.connect('alice');
  await a.ok({ type: 'join', room: 'x1' });
  await a.ok({ type: 'join', room: 'x2' });
  expect(await a.reply({ type: 'join', room: 'x3' })).toMatchObject({ error: { code: 'too_many_rooms' } });
  await a.ok({ type: 'join', room: 'x2' }); // already a member: still ok
  await a.ok({ type: 'leave', room: 'x1' });
  await a.ok({ type: 'join', room: 'x3' });
  expect([...a.client.rooms.keys()].sort()).toEqual(['x2', 'x3']);
});

test('drain: every connection gets `reconnect`, then a 1001 close', async () => {
  node = await startNode();
  const a = await node.connect('alice');
  const b = await node.connect('bob');
  node.gateway.goAway();
  for (const c of [a, b]) {
    expect(c.conn.events('reconnect')).toEqual([{ type: 'reconnect', reason: 'draining' }]);
    expect(c.conn.closedWith?.code).toBe(CLOSE.goingAway);
  }
  expect(node.gateway.sessions.size).toBe(0);
});

test('an idle connection keeps no settled promise, no token claims and no per-command state; inbox {since} still answers', async () => {
  node = await startNode();
  const a = await node.connect('alice');
  // Welcomed: the inbox is live, so the promise that set it up is not kept (client.inbox is the live sub).
  await until('inbox setup settled', () => a.client.inboxReady === undefined);
  expect(a.client.inbox).toBeDefined();
  const session = a.client as Session;
  expect(session.identity.claims).toBeUndefined();
  expect(session.bucket).toBeUndefined();
  expect(session.violations).toBeUndefined();
  expect(session.replyBudget).toBeUndefined();
  // The `inbox` command runs on the live sub without the promise.
  expect(await a.ok({ type: 'inbox', since: { offset: 0 } })).toMatchObject({ offset: 0, recovered: true });
  expect(session.replyBudget).toBeDefined();
});
