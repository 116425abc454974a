// The SDK against one real gateway process (memory engine): commands, typed errors, presence, ordering,
// idempotent publish, the bounded queue, timeouts, token refresh, recovery after a restart, server kick.
import { ChatClient, ChatError } from '../../client/src';
import { freePort, startGateway, token, until, type GatewayProc } from '../helpers/harness';
import { bodies, closeAll, sdk, waitEvent } from './util';

const API_KEY = 'sdk-test-api-key';
let gw: GatewayProc;

beforeAll(async () => {
  // The per-user message rate is raised so the ordering test can send a burst; the rate test uses the default
  // per-connection command rate.
  gw = await startGateway({ API_KEY, USER_MSG_RATE: '500' });
});

afterEach(() => closeAll());

afterAll(async () => {
  await gw?.kill();
});

test('connect reports connecting -> connected with the node id; commands resolve with the reply fields', async () => {
  const a = sdk('alice', { url: gw.wsUrl });
  await a.client.connect();
  expect(a.seen.state.map((s) => s.state)).toEqual(['connecting', 'connected']);
  expect(a.seen.connected[0]).toMatchObject({ node: gw.nodeId, user: 'alice', resumed: false });
  expect(a.client.node).toBe(gw.nodeId);

  const joined = await a.client.join('sdk-basic');
  expect(joined).toMatchObject({ room: 'sdk-basic', presence: ['alice'], offset: 0 });
  const pub = await a.client.publish('sdk-basic', { text: 'hi' });
  expect(pub).toMatchObject({ offset: 1, duplicate: false });
  expect(pub.key).toMatch(/^[0-9a-f]{32}$/);
  const msg = await waitEvent(a, 'message', (m) => m.room === 'sdk-basic');
  expect(msg).toMatchObject({ from: 'alice', offset: 1, id: pub.id, body: { text: 'hi' } });
  const hist = await a.client.history('sdk-basic', { limit: 10 });
  expect(hist.messages.map((m) => m.id)).toEqual([pub.id]);
  expect((await a.client.ping()).pong).toBe(true);
  expect(a.client.rooms()).toEqual(['sdk-basic']);
});

test('errors reject as ChatError with the protocol code and retryable flag', async () => {
  const a = sdk('alice', { url: gw.wsUrl });
  await a.client.connect();
  const notMember = await a.client.publish('never-joined', 'x').catch((e: unknown) => e);
  expect(notMember).toBeInstanceOf(ChatError);
  expect(notMember).toMatchObject({ code: 'not_member', retryable: false, command: 'publish' });
  const bad = await a.client.join('bad room name!').catch((e: unknown) => e);
  expect(bad).toMatchObject({ code: 'bad_request', retryable: false });
  // A failed join is not remembered (not rejoined later).
  expect(a.client.rooms()).toEqual([]);
});

test('presence per room follows the join reply and presence events', async () => {
  const a = sdk('alice', { url: gw.wsUrl });
  const b = sdk('bob', { url: gw.wsUrl });
  await Promise.all([a.client.connect(), b.client.connect()]);
  await a.client.join('sdk-presence');
  expect(a.client.presence('sdk-presence')).toEqual(['alice']);
  await b.client.join('sdk-presence');
  expect(b.client.presence('sdk-presence')).toEqual(['alice', 'bob']);
  await waitEvent(a, 'presence', (p) => p.room === 'sdk-presence' && p.joined.includes('bob'));
  expect(a.client.presence('sdk-presence')).toEqual(['alice', 'bob']);
  await b.client.leave('sdk-presence');
  await waitEvent(a, 'presence', (p) => p.left.includes('bob'));
  expect(a.client.presence('sdk-presence')).toEqual(['alice']);
  expect(b.client.rooms()).toEqual([]);
});

test('messages arrive once each in offset order; a repeated idempotency key is stored once', async () => {
  const a = sdk('alice', { url: gw.wsUrl });
  const b = sdk('bob', { url: gw.wsUrl });
  await Promise.all([a.client.connect(), b.client.connect()]);
  await Promise.all([a.client.join('sdk-order'), b.client.join('sdk-order')]);
  const sent = await Promise.all(Array.from({ length: 30 }, (_, i) => a.client.publish('sdk-order', i)));
  const first = await a.client.publish('sdk-order', 'once', { key: 'fixed-key-1' });
  const again = await a.client.publish('sdk-order', 'once', { key: 'fixed-key-1' });
  expect(again).toMatchObject({ id: first.id, offset: first.offset, duplicate: true, key: 'fixed-key-1' });
  await until('bob has 31 messages', () => b.seen.message.length >= 31);
  const offsets = b.seen.message.map((m) => m.offset);
  expect(offsets).toEqual(Array.from({ length: 31 }, (_, i) => i + 1));
  expect(bodies(b, 'sdk-order').filter((x) => x === 'once')).toHaveLength(1);
  expect(new Set(sent.map((s) => s.offset)).size).toBe(30);
  expect(b.seen.gap).toEqual([]);
});

test('rate limiting rejects as a retryable ChatError that says when to retry', async () => {
  const c = sdk('rapid', { url: gw.wsUrl });
  await c.client.connect();
  const results = await Promise.allSettled(Array.from({ length: 160 }, () => c.client.ping()));
  const limited = results
    .filter((r): r is PromiseRejectedResult => r.status === 'rejected')
    .map((r) => r.reason as ChatError);
  expect(limited.length).toBeGreaterThan(0);
  expect(limited[0]).toBeInstanceOf(ChatError);
  expect(limited[0]).toMatchObject({ code: 'rate_limited', retryable: true });
  expect(limited[0]!.retryAfterMs).toBeGreaterThan(0);
});

test('commands issued while not connected wait in a bounded queue; overflow rejects with queue_full', async () => {
  const deadPort = await freePort(); // nothing listens: every attempt fails and the client keeps reconnecting
  const c = sdk('alice', { url: `ws://127.0.0.1:${deadPort}/ws`, maxQueue: 2 });
  void c.client.connect().catch(() => undefined);
  const p1 = c.client.ping();
  const p2 = c.client.join('queued');
  const overflow = await c.client.ping().catch((e: unknown) => e);
  expect(overflow).toMatchObject({ code: 'queue_full', retryable: true });
  expect(c.client.queued).toBe(2);
  await waitEvent(c, 'state', (s) => s.state === 'reconnecting' && (s.attempt ?? 0) >= 2);
  c.client.close();
  await expect(p1).rejects.toMatchObject({ code: 'closed' });
  await expect(p2).rejects.toMatchObject({ code: 'closed' });
  expect(c.client.state).toBe('disconnected');
});

test('queued commands are sent once the connection is up', async () => {
  const c = sdk('alice', { url: gw.wsUrl });
  const joined = c.client.join('sdk-queue'); // before connect(): queued
  const published = c.client.publish('sdk-queue', 'queued hello'); // sent after the join completed
  expect(c.client.queued).toBe(2);
  await c.client.connect();
  await expect(joined).resolves.toMatchObject({ room: 'sdk-queue' });
  await expect(published).resolves.toMatchObject({ offset: 1 });
});

test('a command without a reply rejects with a retryable timeout', async () => {
  const c = sdk('alice', { url: gw.wsUrl, pingIntervalMs: 0 });
  await c.client.connect();
  process.kill(gw.pid, 'SIGSTOP');
  try {
    const err = await c.client.ping({ timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'timeout', retryable: true, command: 'ping' });
  } finally {
    process.kill(gw.pid, 'SIGCONT');
  }
  await expect(c.client.ping()).resolves.toMatchObject({ pong: true });
});

test('the token getter is called again to refresh before expiresAt; the connection outlives the first token', async () => {
  const calls: string[] = [];
  const c = sdk('alice', {
    url: gw.wsUrl,
    token: (reason) => {
      calls.push(reason);
      return token('alice', { expiresIn: 2 });
    },
  });
  await c.client.connect();
  const firstExpiry = c.seen.connected[0]!.expiresAt!;
  expect(firstExpiry).toBeGreaterThan(Date.now());
  await until('refresh', () => calls.includes('refresh'), 5000);
  // Past the first token's expiry: still the same connection (no 4001 close).
  await until('first token expired', () => Date.now() > firstExpiry + 300, 5000);
  await expect(c.client.ping()).resolves.toMatchObject({ pong: true });
  expect(c.seen.disconnected).toEqual([]);
  expect(calls[0]).toBe('connect');
});

test('the server kicking the user (4003) ends the client: disconnected, no reconnect, pending commands closed', async () => {
  const c = sdk('mallory', { url: gw.wsUrl });
  await c.client.connect();
  const res = await fetch(`${gw.url}/api/disconnect`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'mallory' }),
  });
  expect(res.status).toBe(200);
  await waitEvent(c, 'state', (s) => s.state === 'disconnected');
  expect(c.seen.disconnected[0]).toMatchObject({ code: 4003, willReconnect: false });
  await expect(c.client.ping()).rejects.toMatchObject({ code: 'closed' });
});

test('a room whose history was lost in a restart is reported as a gap, never hidden', async () => {
  // A second memory-engine node of our own, restarted on the same port: its history (and epoch) is gone.
  const port = await freePort();
  let node = await startGateway({ PORT: String(port) });
  const c = sdk('alice', { url: node.wsUrl });
  const other = sdk('bob', { url: node.wsUrl });
  try {
    await Promise.all([c.client.connect(), other.client.connect()]);
    await Promise.all([c.client.join('sdk-gap'), other.client.join('sdk-gap')]);
    await other.client.publish('sdk-gap', 'before');
    await waitEvent(c, 'message', (m) => m.body === 'before');
    await node.kill();
    await waitEvent(c, 'state', (s) => s.state === 'reconnecting');
    // Listening before the restart: the SDK may report the gaps before it reports itself connected.
    const roomGap = waitEvent(c, 'gap', (g) => g.room === 'sdk-gap');
    node = await startGateway({ PORT: String(port) });
    await waitEvent(c, 'connected', (e) => e.resumed);
    const gap = await roomGap;
    expect(gap).toMatchObject({ room: 'sdk-gap', reason: 'gap', from: 2 });
    expect(gap.to).toBeUndefined(); // a reset: everything after offset 1 of the old epoch is gone
    expect(gap.previousEpoch).toBeDefined();
    expect(gap.epoch).not.toBe(gap.previousEpoch);
    // Rejoined: the room works again in the new epoch, and the client follows it.
    await waitEvent(other, 'connected', (e) => e.resumed);
    await other.client.publish('sdk-gap', 'after');
    await waitEvent(c, 'message', (m) => m.body === 'after');
    expect(bodies(c, 'sdk-gap')).toEqual(['before', 'after']);
    // The inbox was reset too, but alice's position there was offset 0 (she had no DM): nothing was missed, and
    // offset 0 continues into the new epoch without a gap (PROTOCOL.md, "Empty streams").
    expect(c.seen.gap.filter((g) => g.inbox === true)).toEqual([]);
  } finally {
    c.client.close();
    other.client.close();
    await node.kill();
  }
});

test('a client without any WebSocket implementation fails loudly', () => {
  const saved = (globalThis as { WebSocket?: unknown }).WebSocket;
  (globalThis as { WebSocket?: unknown }).WebSocket = undefined;
  try {
    expect(() => new ChatClient({ url: 'ws://127.0.0.1:1/ws', token: 't' })).toThrow(/WebSocket/);
  } finally {
    (globalThis as { WebSocket?: unknown }).WebSocket = saved;
  }
});
