// JSON and MessagePack clients on the same rooms across two nodes on a real Redis; the token carriers; hostile
// MessagePack frames. Every frame a MessagePack client gets is decoded from a binary frame.
import { readFileSync } from 'node:fs';
import { Packr } from 'msgpackr';
import {
  msgpack,
  startGateway,
  startRedis,
  token,
  TestClient,
  until,
  upgradeStatus,
  type ConnectOptions,
  type Frame,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';

let redis: RedisProc;
let a: GatewayProc;
let b: GatewayProc;
const clients: TestClient[] = [];

const ENV = { MAX_FRAME_BYTES: '65536', MAX_FRAME_DEPTH: '16', MAX_VIOLATIONS: '1000', CMD_BURST: '1000' };

async function connect(node: GatewayProc, user: string, opts: ConnectOptions = {}): Promise<TestClient> {
  const c = await TestClient.connect(node.wsUrl, token(user), opts);
  clients.push(c);
  return c;
}

beforeAll(async () => {
  redis = await startRedis();
  [a, b] = await Promise.all([
    startGateway({ REDIS_URL: redis.url, ...ENV }),
    startGateway({ REDIS_URL: redis.url, ...ENV }),
  ]);
});

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill()]);
  await redis?.stop();
});

/** The fields of a delivered event that are the same for every recipient. */
function eventFields(f: Frame): Record<string, unknown> {
  const { type, room, to, from, id, offset, epoch, ts, body } = f;
  return { type, room, to, from, id, offset, epoch, ts, body };
}

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

describe('negotiation', () => {
  test('no subprotocol means JSON text frames and no Sec-WebSocket-Protocol in the response', async () => {
    const c = await connect(a, 'plain');
    expect(c.responseProtocol).toBeUndefined();
    expect(c.welcome.protocol).toBe(1);
    expect(c.textFrames).toBeGreaterThan(0);
    expect(c.binaryFrames).toBe(0);
  });

  test('relaychat.v1.msgpack is echoed alone and every frame is binary MessagePack', async () => {
    const c = await connect(a, 'packed', { encoding: 'msgpack' });
    expect(c.responseProtocol).toBe('relaychat.v1.msgpack');
    expect(c.welcome.user).toBe('packed');
    expect((await c.ok({ type: 'ping' })).pong).toBe(true);
    expect(c.textFrames).toBe(0);
    expect(c.binaryFrames).toBeGreaterThanOrEqual(2);
  });

  test('relaychat.v1.json offered explicitly is echoed and gets text frames', async () => {
    const c = await connect(a, 'explicit', { encoding: 'json' });
    expect(c.responseProtocol).toBe('relaychat.v1.json');
    expect(c.binaryFrames).toBe(0);
  });
});

describe('token carriers', () => {
  test('a token in Sec-WebSocket-Protocol is accepted and never echoed: the response names the encoding only', async () => {
    for (const encoding of ['json', 'msgpack'] as const) {
      const c = await connect(b, `sub-${encoding}`, { encoding, carrier: 'subprotocol' });
      expect(c.welcome.user).toBe(`sub-${encoding}`);
      expect(c.responseProtocol).toBe(`relaychat.v1.${encoding}`);
    }
  });

  test('a bad token in Sec-WebSocket-Protocol gets 401', async () => {
    const r = await upgradeStatus(a.wsUrl, '', {
      'sec-websocket-protocol': 'relaychat.v1.json, relaychat.token.not-a-jwt',
    });
    expect(r.status).toBe(401);
  });

  test('a token in the relaychat_token cookie is accepted without an Origin and from the same origin', async () => {
    const c = await connect(a, 'cookie-user', { carrier: 'cookie' });
    expect(c.welcome.user).toBe('cookie-user');
    const same = await connect(a, 'cookie-same', {
      carrier: 'cookie',
      headers: { origin: `http://127.0.0.1:${a.port}` },
    });
    expect(same.welcome.user).toBe('cookie-same');
  });

  test('a cookie-carried token from a foreign origin is refused with 403 (cross-site WebSocket hijacking)', async () => {
    const r = await upgradeStatus(a.wsUrl, '', {
      cookie: `relaychat_token=${token('victim')}`,
      origin: 'https://evil.example',
    });
    expect(r.status).toBe(403);
    expect(r.body).toEqual({ error: 'forbidden', reason: 'cookie_origin' });
  });

  test('Authorization: Bearer is accepted', async () => {
    const c = await connect(b, 'bearer-user', { carrier: 'bearer', encoding: 'msgpack' });
    expect(c.welcome.user).toBe('bearer-user');
  });
});

describe('JSON and MessagePack clients together across two nodes', () => {
  test('they join one room, see the same events field by field, and DM each other', async () => {
    const j = await connect(a, 'jay', { encoding: 'json' });
    const m = await connect(b, 'em', { encoding: 'msgpack' });
    await j.ok({ type: 'join', room: 'mixed' });
    await m.ok({ type: 'join', room: 'mixed' });
    await j.waitFor(
      (f) => f.type === 'presence' && (f.joined as string[] | undefined)?.includes('em') === true,
    );
    const presM = await m.waitFor(
      (f) => f.type === 'presence' && (f.joined as string[] | undefined)?.includes('em') === true,
    );
    expect(presM.room).toBe('mixed');

    const body = { text: 'héllo', n: 3, f: 1.5, list: [1, 'two', null, true], nested: { deep: [{ x: -7 }] } };
    await j.ok({ type: 'publish', room: 'mixed', body });
    await m.ok({ type: 'publish', room: 'mixed', body: 'from msgpack' });
    const seenJ = await until('json client has both', () => j.events('message', 'mixed').length >= 2 || null);
    const seenM = await until(
      'msgpack client has both',
      () => m.events('message', 'mixed').length >= 2 || null,
    );
    expect(seenJ && seenM).toBe(true);
    const js = j.events('message', 'mixed').map(eventFields);
    const ms = m.events('message', 'mixed').map(eventFields);
    expect(ms).toEqual(js);
    expect(js[0]!.body).toEqual(body);
    expect(ms[1]!.body).toBe('from msgpack');

    const toM = await j.ok({ type: 'dm', to: 'em', body: { hi: 'em' } });
    expect(toM.delivered).toBe(1);
    const dmM = await m.waitFor((f) => f.type === 'dm' && f.from === 'jay');
    expect(dmM.body).toEqual({ hi: 'em' });
    await m.ok({ type: 'dm', to: 'jay', body: [1, 2, 3] });
    const dmJ = await j.waitFor((f) => f.type === 'dm' && f.from === 'em');
    expect(dmJ.body).toEqual([1, 2, 3]);
    expect(m.textFrames).toBe(0);
    expect(j.binaryFrames).toBe(0);
  });

  test('a binary body reaches JSON clients as {"$bin":base64} and MessagePack clients as binary, both ways', async () => {
    const j = await connect(a, 'bin-j', { encoding: 'json' });
    const m1 = await connect(b, 'bin-m1', { encoding: 'msgpack' });
    const m2 = await connect(a, 'bin-m2', { encoding: 'msgpack' });
    for (const c of [j, m1, m2]) await c.ok({ type: 'join', room: 'bin' });
    const bytes = Buffer.from([0, 1, 2, 253, 254, 255]);
    await m1.ok({ type: 'publish', room: 'bin', body: { img: bytes, name: 'x.png' } });
    const atJ = await j.waitFor((f) => f.type === 'message' && f.room === 'bin');
    expect(atJ.body).toEqual({ img: { $bin: bytes.toString('base64') }, name: 'x.png' });
    const atM2 = await m2.waitFor((f) => f.type === 'message' && f.room === 'bin');
    const img = (atM2.body as { img: Uint8Array }).img;
    expect(img).toBeInstanceOf(Uint8Array);
    expect(Buffer.from(img).equals(bytes)).toBe(true);

    // A JSON client writing the marker is seen as binary by MessagePack clients (documented).
    await j.ok({ type: 'publish', room: 'bin', body: { $bin: 'AAEC' } });
    const marker = await m1.waitFor((f) => f.type === 'message' && f.from === 'bin-j');
    expect(Buffer.from(marker.body as Uint8Array).equals(Buffer.from([0, 1, 2]))).toBe(true);

    // Stored history replays in the reader's encoding.
    const hist = await m2.ok({ type: 'history', room: 'bin', limit: 10 });
    const first = (hist.messages as Frame[])[0]!;
    expect(Buffer.from((first.body as { img: Uint8Array }).img).equals(bytes)).toBe(true);
    const histJ = await j.ok({ type: 'history', room: 'bin', limit: 10 });
    expect(((histJ.messages as Frame[])[0]!.body as { img: unknown }).img).toEqual({
      $bin: bytes.toString('base64'),
    });
  });

  test('join with since replays stored events to a MessagePack client in MessagePack', async () => {
    const j = await connect(a, 'rep-j');
    await j.ok({ type: 'join', room: 'replay' });
    for (let i = 1; i <= 3; i++) await j.ok({ type: 'publish', room: 'replay', body: { i } });
    const m = await connect(b, 'rep-m', { encoding: 'msgpack' });
    const r = await m.ok({ type: 'join', room: 'replay', since: { offset: 0 } });
    expect(r.recovered).toBe(true);
    await until('three replayed', () => m.events('message', 'replay').length === 3 || null);
    expect(m.events('message', 'replay').map((f) => f.body)).toEqual([{ i: 1 }, { i: 2 }, { i: 3 }]);
    expect(m.textFrames).toBe(0);
  });
});

describe('hostile MessagePack frames', () => {
  const p = (v: unknown) => msgpack.packr.pack(v);
  const hex = (h: string) => Buffer.from(h, 'hex');
  let nested = Buffer.alloc(0);
  const deep = (n: number) => Buffer.concat([Buffer.alloc(n, 0x91), Buffer.from([0xc0])]);
  nested = deep(60_000);

  const cases: [string, Buffer, string][] = [
    ['60,000 nested arrays', nested, 'nested'],
    [
      'a command nested one level past MAX_FRAME_DEPTH',
      p({ id: 1, type: 'ping', x: JSON.parse('['.repeat(16) + ']'.repeat(16)) }),
      'deeper than 16',
    ],
    [
      'a body nested past MAX_FRAME_DEPTH',
      p({ id: 2, type: 'publish', room: 'h', body: JSON.parse('['.repeat(20) + ']'.repeat(20)) }),
      'deeper than 16',
    ],
    ['the never-used byte 0xc1', hex('c1'), 'MessagePack'],
    ['a truncated map', hex('82a16101'), 'not valid MessagePack'],
    ['an array claiming 2^32-1 items', hex('dd ffffffff'.replace(' ', '')), 'not valid MessagePack'],
    ['a map claiming 2^32-1 entries', hex('dfffffffff'), 'not valid MessagePack'],
    ['a str claiming 4 GB', hex('dbffffffff41'), 'not valid MessagePack'],
    [
      'trailing bytes after a value',
      Buffer.concat([p({ id: 3, type: 'ping' }), hex('01')]),
      'not valid MessagePack',
    ],
    ['an extension type', hex('d40500'), 'extension'],
    ['a timestamp', p({ id: 4, type: 'ping', at: new Date(0) }), 'extension'],
    ['undefined (fixext 0)', hex('d40000'), 'extension'],
    ['a msgpackr record', new Packr({ useRecords: true }).pack({ id: 7, type: 'ping' }), 'extension'],
    [
      'msgpackr bundled strings',
      new Packr({ bundleStrings: true }).pack({ id: 8, type: 'ping', s: 'x'.repeat(40) }),
      'extension',
    ],
    ['a map with an integer key', hex('8101c0'), 'map keys must be strings'],
    ['a str that is not UTF-8', hex('82a26964 01 a474797065 a4ff696e67'.replace(/ /g, '')), 'UTF-8'],
    ['an array as the frame', p([1, 2]), 'object'],
    ['a string id', p({ id: '1', type: 'ping' }), 'id'],
    ['a bin as the type', p({ id: 5, type: Buffer.from('ping') }), 'type'],
    ['NaN in a body', p({ id: 6, type: 'publish', room: 'h', body: NaN }), 'finite'],
    ['an empty frame', Buffer.alloc(0), 'not valid MessagePack'],
  ];

  test.each(cases)('%s gets bad_request and the connection and node serve on', async (_name, frame, text) => {
    const c = await connect(a, 'attacker', { encoding: 'msgpack' });
    const reply = c.next((f) => f.ok === false);
    c.sendRaw(frame, true);
    const r = await reply;
    expect((r.error as { code: string }).code).toBe('bad_request');
    expect((r.error as { message: string }).message).toContain(text);
    expect((await c.ok({ type: 'ping' })).pong).toBe(true);
  });

  test("a record definition sent by one client does not change how another client's frames decode", async () => {
    const evil = await connect(a, 'poisoner', { encoding: 'msgpack' });
    const r = evil.next((f) => f.ok === false);
    // msgpackr's record extension would bind 0x40 (the integer 64) to a structure in a shared decoder.
    evil.sendRaw(new Packr({ useRecords: true }).pack({ id: 1, type: 'ping' }), true);
    expect(((await r).error as { code: string }).code).toBe('bad_request');
    const victim = await connect(a, 'victim', { encoding: 'msgpack' });
    const pong = victim.next((f) => f.re === 64);
    victim.sendRaw(p({ id: 64, type: 'ping' }), true);
    expect((await pong).pong).toBe(true);
  });

  test('a text frame on a MessagePack connection and a binary one on a JSON connection get bad_request', async () => {
    const m = await connect(a, 'mixed-up', { encoding: 'msgpack' });
    let reply = m.next((f) => f.ok === false);
    m.sendRaw('{"id":1,"type":"ping"}');
    expect((await reply).error).toMatchObject({ code: 'bad_request' });
    const j = await connect(a, 'mixed-up-j');
    reply = j.next((f) => f.ok === false);
    j.sendRaw(p({ id: 1, type: 'ping' }), true);
    expect((await reply).error).toMatchObject({ code: 'bad_request' });
    expect((await j.ok({ type: 'ping' })).pong).toBe(true);
  });

  // uWebSockets.js drops the TCP connection without a close frame (as for JSON), so the client reports 1006.
  test('a frame over MAX_FRAME_BYTES drops only that socket; the node serves on', async () => {
    const c = await connect(a, 'big', { encoding: 'msgpack' });
    c.sendRaw(p({ id: 1, type: 'publish', room: 'h', body: Buffer.alloc(70_000) }), true);
    expect(await c.waitClosed()).toBe(1006);
    const other = await connect(a, 'after-big', { encoding: 'msgpack' });
    expect((await other.ok({ type: 'ping' })).pong).toBe(true);
  });

  test('a flood of hostile frames leaves memory bounded and the node alive', async () => {
    const c = await connect(b, 'flood', { encoding: 'msgpack' });
    const before = rssKb(b.pid);
    const frames = cases.map(([, f]) => f);
    for (let i = 0; i < 300; i++) c.sendRaw(frames[i % frames.length]!, true);
    await until('all answered', () => c.frames.filter((f) => f.ok === false).length >= 300 || null, 30_000);
    expect((await c.ok({ type: 'ping' })).pong).toBe(true);
    expect(rssKb(b.pid) - before).toBeLessThan(64 * 1024);
    expect(b.proc.exitCode).toBeNull();
  });
});
