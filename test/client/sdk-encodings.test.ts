// The SDK's `encoding` option against two real gateway nodes on one real Redis: a JSON client and a MessagePack
// client share a room and DM each other, a binary body crosses encodings, and the token travels in
// Sec-WebSocket-Protocol by default (the query-string carrier stays available).
import WebSocket from 'ws';
import { startGateway, startRedis, type GatewayProc, type RedisProc } from '../helpers/harness';
import { bodies, closeAll, sdk, waitEvent } from './util';

let redis: RedisProc;
let a: GatewayProc;
let b: GatewayProc;

beforeAll(async () => {
  redis = await startRedis();
  [a, b] = await Promise.all([
    startGateway({ REDIS_URL: redis.url }),
    startGateway({ REDIS_URL: redis.url }),
  ]);
});

afterEach(() => closeAll());

afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill()]);
  await redis?.stop();
});

test('a JSON and a MessagePack SDK client on two nodes see the same room messages and DM each other', async () => {
  const j = sdk('sdk-json', { url: a.wsUrl });
  const m = sdk('sdk-msgpack', { url: b.wsUrl, encoding: 'msgpack' });
  await Promise.all([j.client.connect(), m.client.connect()]);
  await Promise.all([j.client.join('enc-room'), m.client.join('enc-room')]);
  await j.client.publish('enc-room', { text: 'from json', n: [1, 2.5, null] });
  await m.client.publish('enc-room', 'from msgpack');
  await waitEvent(j, 'message', (e) => e.body === 'from msgpack');
  await waitEvent(m, 'message', (e) => e.body === 'from msgpack');
  expect(bodies(m, 'enc-room')).toEqual(bodies(j, 'enc-room'));
  expect(bodies(j, 'enc-room')).toEqual([{ text: 'from json', n: [1, 2.5, null] }, 'from msgpack']);
  // Every field of every event (id, from, offset, epoch, ts, body) is the same in both encodings.
  expect(m.seen.message).toEqual(j.seen.message);

  await j.client.dm('sdk-msgpack', 'hi m');
  await m.client.dm('sdk-json', { hi: 'j' });
  expect((await waitEvent(m, 'dm', (e) => e.from === 'sdk-json')).body).toBe('hi m');
  expect((await waitEvent(j, 'dm', (e) => e.from === 'sdk-msgpack')).body).toEqual({ hi: 'j' });
});

test('a Uint8Array body from a MessagePack client arrives as bytes there and as {"$bin":base64} in JSON', async () => {
  const j = sdk('bin-json', { url: a.wsUrl });
  const m1 = sdk('bin-m1', { url: b.wsUrl, encoding: 'msgpack' });
  const m2 = sdk('bin-m2', { url: a.wsUrl, encoding: 'msgpack' });
  await Promise.all([j, m1, m2].map((c) => c.client.connect()));
  await Promise.all([j, m1, m2].map((c) => c.client.join('bin-room')));
  const bytes = new Uint8Array([9, 8, 7, 0, 255]);
  await m1.client.publish('bin-room', bytes);
  expect((await waitEvent(j, 'message')).body).toEqual({ $bin: Buffer.from(bytes).toString('base64') });
  const got = (await waitEvent(m2, 'message')).body as Uint8Array;
  expect(got).toBeInstanceOf(Uint8Array);
  expect([...got]).toEqual([...bytes]);
});

test('the token travels in Sec-WebSocket-Protocol by default, never in the URL; query stays available', async () => {
  const opened: { url: string; protocols: string[] }[] = [];
  class Recording extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      opened.push({ url, protocols: ([] as string[]).concat(protocols ?? []) });
      super(url, protocols);
    }
  }
  const s = sdk('sub-carrier', { url: a.wsUrl, WebSocket: Recording });
  await s.client.connect();
  expect(s.client.user).toBe('sub-carrier');
  expect(opened[0]!.url).not.toContain('token');
  expect(opened[0]!.protocols[0]).toBe('relaychat.v1.json');
  expect(opened[0]!.protocols[1]).toMatch(/^relaychat\.token\.ey/);
  const q = sdk('query-carrier', {
    url: a.wsUrl,
    tokenCarrier: 'query',
    encoding: 'msgpack',
    WebSocket: Recording,
  });
  await q.client.connect();
  expect(q.client.user).toBe('query-carrier');
  expect(opened[1]!.url).toContain('?token=ey');
  expect(opened[1]!.protocols).toEqual(['relaychat.v1.msgpack']);
});
