// The SDK against two real gateway nodes on one real Redis: failing over to the other node recovers every
// missed room message and DM in order, a publish/dm in flight across a reconnect is stored once, and a drain
// moves clients to another node.
import { startGateway, startRedis, until, type GatewayProc, type RedisProc } from '../helpers/harness';
import { TcpProxy } from './tcp-proxy';
import { bodies, closeAll, sdk, waitEvent } from './util';

let redis: RedisProc;
let b: GatewayProc;
const extra: GatewayProc[] = [];
const proxies: TcpProxy[] = [];

function node(): Promise<GatewayProc> {
  return startGateway({ REDIS_URL: redis.url, USER_MSG_RATE: '500', SHUTDOWN_GRACE_MS: '2000' }).then((g) => {
    extra.push(g);
    return g;
  });
}

async function proxy(to: GatewayProc): Promise<TcpProxy> {
  const p = await TcpProxy.start(to.port);
  proxies.push(p);
  return p;
}

beforeAll(async () => {
  redis = await startRedis();
  b = await startGateway({ REDIS_URL: redis.url, USER_MSG_RATE: '500' });
});

afterEach(async () => {
  closeAll();
  await Promise.all(proxies.splice(0).map((p) => p.close()));
  await Promise.all(extra.splice(0).map((g) => g.kill()));
});

afterAll(async () => {
  await b?.kill();
  await redis?.stop();
});

test('when its node dies the client reconnects to the other node and receives every missed message and DM once, in order', async () => {
  const a = await node();
  const toB = await proxy(b); // the second URL; held so the reconnect waits while messages are sent
  const bob = sdk('bob', { url: [a.wsUrl, toB.wsUrl] });
  const carol = sdk('carol', { url: b.wsUrl });
  await Promise.all([bob.client.connect(), carol.client.connect()]);
  expect(bob.client.node).toBe(a.nodeId);
  await Promise.all([bob.client.join('fo-room'), carol.client.join('fo-room')]);
  for (let i = 0; i < 5; i++) await carol.client.publish('fo-room', `live-${i}`);
  await until('bob has the live messages', () => bob.seen.message.length === 5);

  toB.hold();
  await a.kill();
  await waitEvent(bob, 'state', (s) => s.state === 'reconnecting');
  for (let i = 0; i < 20; i++) await carol.client.publish('fo-room', `missed-${i}`);
  await carol.client.dm('bob', 'dm while you were away');
  expect(bob.client.state).toBe('reconnecting');
  toB.release();

  const back = await waitEvent(bob, 'connected', (c) => c.resumed);
  expect(back.node).toBe(b.nodeId);
  for (let i = 0; i < 5; i++) await carol.client.publish('fo-room', `after-${i}`);
  await until('bob has all 30 messages', () => bob.seen.message.length >= 30);

  const expected = [
    ...Array.from({ length: 5 }, (_, i) => `live-${i}`),
    ...Array.from({ length: 20 }, (_, i) => `missed-${i}`),
    ...Array.from({ length: 5 }, (_, i) => `after-${i}`),
  ];
  expect(bodies(bob, 'fo-room')).toEqual(expected);
  expect(bob.seen.message.map((m) => m.offset)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  await waitEvent(bob, 'dm');
  expect(bob.seen.dm.map((d) => d.body)).toEqual(['dm while you were away']);
  expect(bob.seen.gap).toEqual([]);
  expect(bob.client.presence('fo-room')).toEqual(expect.arrayContaining(['bob', 'carol']));
});

test('a publish and a dm whose replies were lost are sent again with the same key after reconnecting: stored once', async () => {
  const a = await node();
  const toA = await proxy(a);
  const bob = sdk('bob', { url: [toA.wsUrl, b.wsUrl] });
  const carol = sdk('carol', { url: b.wsUrl });
  await Promise.all([bob.client.connect(), carol.client.connect()]);
  await Promise.all([bob.client.join('retry-room'), carol.client.join('retry-room')]);

  toA.muteDownstream(); // commands reach node A, nothing comes back
  const published = bob.client.publish('retry-room', 'exactly once');
  const dmSent = bob.client.dm('carol', 'dm exactly once');
  await waitEvent(carol, 'message', (m) => m.body === 'exactly once');
  await waitEvent(carol, 'dm', (d) => d.body === 'dm exactly once');
  toA.cut(); // the connection dies with both replies lost

  const pub = await published;
  const dm = await dmSent;
  expect(pub.duplicate).toBe(true);
  expect(dm.duplicate).toBe(true);
  expect(bob.client.node).toBe(b.nodeId);
  // Bob's own copy of the message arrives through the rejoin's replay, once.
  await waitEvent(bob, 'message', (m) => m.body === 'exactly once');
  await carol.client.publish('retry-room', 'marker');
  await waitEvent(bob, 'message', (m) => m.body === 'marker');
  expect(bodies(bob, 'retry-room')).toEqual(['exactly once', 'marker']);
  expect(bodies(carol, 'retry-room')).toEqual(['exactly once', 'marker']);
  expect(carol.seen.dm.filter((d) => d.body === 'dm exactly once')).toHaveLength(1);
  const history = await carol.client.history('retry-room');
  expect(history.messages.map((m) => m.body)).toEqual(['exactly once', 'marker']);
});

test('a draining node tells clients to go; they reconnect to another node and keep their rooms', async () => {
  const a = await node();
  const bob = sdk('bob', { url: [a.wsUrl, b.wsUrl] });
  const carol = sdk('carol', { url: b.wsUrl });
  await Promise.all([bob.client.connect(), carol.client.connect()]);
  await Promise.all([bob.client.join('drain-room'), carol.client.join('drain-room')]);
  const stopped = a.stop(); // SIGTERM: drain
  await waitEvent(bob, 'draining');
  const moved = await waitEvent(bob, 'connected', (c) => c.resumed);
  expect(moved.node).toBe(b.nodeId);
  expect(bob.seen.disconnected[0]).toMatchObject({ code: 1001, willReconnect: true });
  await carol.client.publish('drain-room', 'after the drain');
  await waitEvent(bob, 'message', (m) => m.body === 'after the drain');
  expect(await stopped).toBe(0);
});
