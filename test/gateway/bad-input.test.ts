// Every bad-input case gets its documented error and the connection (and node) keep serving.
import { startGateway, token, TestClient, type GatewayProc } from '../helpers/harness';

let gw: GatewayProc;
beforeAll(async () => {
  gw = await startGateway({
    MAX_MESSAGE_BYTES: '1024',
    MAX_FRAME_BYTES: '4096',
    MAX_ROOMS_PER_CONNECTION: '3',
    CMD_RATE: '1000',
    CMD_BURST: '1000',
    MAX_VIOLATIONS: '10',
  });
});
afterAll(async () => {
  await gw?.kill();
});

const cases: [string, string | Record<string, unknown>, string, number | null][] = [
  ['malformed JSON', '{"id":1,', 'bad_request', null],
  ['a JSON array', '[1,2]', 'bad_request', null],
  ['no id', '{"type":"ping"}', 'bad_request', null],
  ['a negative id', '{"id":-1,"type":"ping"}', 'bad_request', null],
  ['a fractional id', '{"id":1.5,"type":"ping"}', 'bad_request', null],
  ['an unknown type', { id: 1, type: 'teleport' }, 'unknown_type', 1],
  ['a non-string type', { id: 2, type: 42 }, 'bad_request', 2],
  ['a room with bad characters', { id: 3, type: 'join', room: 'no spaces' }, 'bad_request', 3],
  ['an empty room', { id: 4, type: 'join', room: '' }, 'bad_request', 4],
  ['a room name over the limit', { id: 5, type: 'join', room: 'x'.repeat(129) }, 'bad_request', 5],
  ['publish without body', { id: 6, type: 'publish', room: 'ok' }, 'bad_request', 6],
  ['publish to a room not joined', { id: 7, type: 'publish', room: 'elsewhere', body: 1 }, 'not_member', 7],
  ['leave of a room not joined', { id: 8, type: 'leave', room: 'elsewhere' }, 'not_member', 8],
  [
    'a body over MAX_MESSAGE_BYTES',
    { id: 9, type: 'publish', room: 'ok', body: 'x'.repeat(2000) },
    'too_large',
    9,
  ],
  ['dm without recipient', { id: 10, type: 'dm', body: 1 }, 'bad_request', 10],
  ['history with a bad limit', { id: 11, type: 'history', room: 'ok', limit: 1000 }, 'bad_request', 11],
  [
    'since with a negative offset',
    { id: 12, type: 'join', room: 'ok', since: { offset: -3 } },
    'bad_request',
    12,
  ],
  [
    'an idempotency key that is too long',
    { id: 13, type: 'publish', room: 'ok', body: 1, key: 'k'.repeat(65) },
    'bad_request',
    13,
  ],
  ['refresh without token', { id: 14, type: 'refresh' }, 'bad_request', 14],
  ['a huge number id', '{"id":1e400,"type":"ping"}', 'bad_request', null],
];

test.each(cases)('%s gets %s and the connection stays open', async (_name, frame, code, re) => {
  const c = await TestClient.connect(gw.wsUrl, token('tester'));
  const reply = c.next((f) => f.ok === false);
  c.sendRaw(typeof frame === 'string' ? frame : JSON.stringify(frame));
  expect(await reply).toMatchObject({ re, ok: false, error: { code } });
  expect((await c.request({ type: 'ping' })).ok).toBe(true);
  await c.close();
});

test('a binary frame gets bad_request', async () => {
  const c = await TestClient.connect(gw.wsUrl, token('tester'));
  const reply = c.next((f) => f.ok === false);
  c.sendRaw(Buffer.from([1, 2, 3]), true);
  expect(await reply).toMatchObject({ re: null, error: { code: 'bad_request' } });
  await c.close();
});

test('joins beyond MAX_ROOMS_PER_CONNECTION get too_many_rooms', async () => {
  const c = await TestClient.connect(gw.wsUrl, token('tester'));
  for (const room of ['a', 'b', 'c']) await c.ok({ type: 'join', room });
  expect(await c.request({ type: 'join', room: 'd' })).toMatchObject({
    ok: false,
    error: { code: 'too_many_rooms' },
  });
  expect((await c.request({ type: 'join', room: 'a' })).ok).toBe(true); // already joined: idempotent
  await c.close();
});

// uWebSockets.js drops the TCP connection on these without a close frame, so the client reports 1006.
test('a frame over MAX_FRAME_BYTES drops only that socket', async () => {
  const bystander = await TestClient.connect(gw.wsUrl, token('bystander'));
  const c = await TestClient.connect(gw.wsUrl, token('tester'));
  c.sendRaw(JSON.stringify({ id: 1, type: 'ping', pad: 'x'.repeat(5000) }));
  expect(await c.waitClosed()).toBe(1006);
  expect((await bystander.request({ type: 'ping' })).ok).toBe(true);
  await bystander.close();
});

test('invalid UTF-8 in a text frame drops the socket; the node keeps serving', async () => {
  const bystander = await TestClient.connect(gw.wsUrl, token('bystander'));
  const c = await TestClient.connect(gw.wsUrl, token('tester'));
  // ws validates outgoing text only when asked; send raw bytes as a text frame.
  c.ws.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
  expect(await c.waitClosed()).toBe(1006);
  expect((await bystander.request({ type: 'ping' })).ok).toBe(true);
  await bystander.close();
});

test('a connection that keeps sending bad frames is closed with 1008; others are unaffected', async () => {
  const bystander = await TestClient.connect(gw.wsUrl, token('bystander'));
  const c = await TestClient.connect(gw.wsUrl, token('tester'));
  for (let i = 0; i < 10; i++) c.sendRaw('not json');
  expect(await c.waitClosed()).toBe(1008);
  expect((await bystander.request({ type: 'ping' })).ok).toBe(true);
  await bystander.close();
});

test('commands over CMD_RATE get rate_limited with retryAfterMs, not a disconnect', async () => {
  const limited = await startGateway({ CMD_RATE: '5', CMD_BURST: '5' });
  try {
    const c = await TestClient.connect(limited.wsUrl, token('spammer'));
    const replies = await Promise.all(Array.from({ length: 8 }, () => c.request({ type: 'ping' })));
    const refused = replies.filter((r) => !r.ok);
    expect(refused.length).toBeGreaterThanOrEqual(3);
    expect(refused[0]).toMatchObject({ error: { code: 'rate_limited', retryable: true } });
    expect((refused[0]!.error as { retryAfterMs: number }).retryAfterMs).toBeGreaterThan(0);
    expect(c.closeCode).toBeNull();
    await c.close();
  } finally {
    await limited.kill();
  }
});
