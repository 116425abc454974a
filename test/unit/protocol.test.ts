import {
  parseCommand,
  parsePosition,
  FrameError,
  errorReply,
  storedEventParts,
  storedEvent,
  gapEvent,
} from '../../protocol';
import { RoomPattern } from '../../services/gateway/src/auth/room-pattern';
import { parseBusPayload } from '../../services/gateway/src/engine/redis-engine';
import { loadConfig, ConfigError } from '../../services/gateway/src/config';

const limits = { maxMessageBytes: 100, maxRoomNameLength: 16 };
const parse = (v: unknown) => parseCommand(typeof v === 'string' ? v : JSON.stringify(v), limits);
const codeOf = (v: unknown) => {
  try {
    parse(v);
    return 'ok';
  } catch (err) {
    return `${(err as FrameError).id}:${(err as FrameError).code}`;
  }
};

test('parseCommand returns typed commands with the body re-serialized', () => {
  expect(parse({ id: 1, type: 'publish', room: 'a.b-c_d:e@f', body: { x: [1, 'y'] }, key: 'k' })).toEqual({
    id: 1,
    type: 'publish',
    room: 'a.b-c_d:e@f',
    body: '{"x":[1,"y"]}',
    key: 'k',
  });
  expect(parse({ id: 2, type: 'join', room: 'r', since: { offset: 5, epoch: 'e1' } })).toEqual({
    id: 2,
    type: 'join',
    room: 'r',
    since: { offset: 5, epoch: 'e1' },
  });
  expect(parse({ id: 3, type: 'history', room: 'r' })).toEqual({
    id: 3,
    type: 'history',
    room: 'r',
    limit: 50,
    before: undefined,
  });
});

test('parseCommand names the error and keeps the id when it could be read', () => {
  expect(codeOf('nope')).toBe('null:bad_request');
  expect(codeOf({ type: 'ping' })).toBe('null:bad_request');
  expect(codeOf({ id: 4, type: 'fly' })).toBe('4:unknown_type');
  expect(codeOf({ id: 5, type: 'join', room: 'x'.repeat(17) })).toBe('5:bad_request');
  expect(codeOf({ id: 6, type: 'publish', room: 'r', body: 'x'.repeat(101) })).toBe('6:too_large');
  expect(codeOf({ id: 7, type: 'publish', room: 'r', body: 'é'.repeat(50) })).toBe('7:too_large'); // bytes, not chars
  expect(codeOf({ id: 8, type: 'dm', to: '', body: 1 })).toBe('8:bad_request');
  expect(codeOf({ id: 9, type: 'join', room: 'r', since: { offset: 1.5 } })).toBe('9:bad_request');
  expect(codeOf({ id: Number.MAX_SAFE_INTEGER + 2, type: 'ping' })).toBe('null:bad_request');
});

test('event frames assembled around the body are valid JSON with every field', () => {
  const parts = storedEventParts('message', { room: 'r', id: 'i1', from: 'al"ice', ts: 5 }, '{"a":1}');
  expect(JSON.parse(storedEvent(parts, 3, 'ep'))).toEqual({
    type: 'message',
    offset: 3,
    epoch: 'ep',
    room: 'r',
    id: 'i1',
    from: 'al"ice',
    ts: 5,
    body: { a: 1 },
  });
  expect(JSON.parse(gapEvent({ room: 'r' }, 4, null, 'e2'))).toEqual({
    type: 'gap',
    room: 'r',
    from: 4,
    to: null,
    epoch: 'e2',
  });
  expect(JSON.parse(errorReply(null, 'rate_limited', 'slow down', 250))).toEqual({
    re: null,
    ok: false,
    error: { code: 'rate_limited', message: 'slow down', retryable: true, retryAfterMs: 250 },
  });
});

test('bus payloads parse without touching the frame', () => {
  const frame = '{"type":"message","offset":12}';
  const m = parseBusPayload(Buffer.from(`e|12|ab12|1700|conn-1|${frame}`));
  expect(m).toMatchObject({ kind: 'event', offset: 12, epoch: 'ab12', ts: 1700, skip: 'conn-1' });
  expect(Buffer.from((m as { frame: Uint8Array }).frame).toString()).toBe(frame);
  expect(parseBusPayload(Buffer.from('c|disconnect'))).toEqual({ kind: 'disconnect' });
  expect(parseBusPayload(Buffer.from('x|junk'))).toBeUndefined();
  expect(parseBusPayload(Buffer.from('e|1|2'))).toBeUndefined();
});

test('room globs match whole names and treat other characters literally', () => {
  const g = new RoomPattern('team-*.eu?');
  expect(g.matches('team-red.eu1')).toBe(true);
  expect(g.matches('team-.euX')).toBe(true);
  expect(g.matches('xteam-red.eu1')).toBe(false);
  expect(g.matches('team-redXeu1')).toBe(false);
});

describe('config', () => {
  const dev = () => 'generated-dev-secret';
  test('defaults make a dev-mode memory-engine node on 8080', () => {
    const c = loadConfig({}, dev);
    expect(c).toMatchObject({
      port: 8080,
      redis: undefined,
      jwt: { dev: true, secret: 'generated-dev-secret' },
    });
    expect(c.limits.maxMessageBytes).toBe(16384);
    expect(Object.isFrozen(c)).toBe(true);
  });
  test.each([
    [{ PORT: 'eighty' }, 'PORT must be an integer'],
    [{ PORT: '70000' }, 'PORT must be between 0 and 65535'],
    [{ REDIS_URL: 'http://x' }, 'REDIS_URL must be a redis://'],
    [{ LOG_LEVEL: 'loud' }, 'LOG_LEVEL must be one of'],
    [{ NODE_ENV: 'production' }, 'JWT_SECRET or JWT_PUBLIC_KEY must be set'],
    [{ JWT_SECRET: 'short' }, 'JWT_SECRET must be at least 16 characters'],
    [{ JWT_PUBLIC_KEY: '/no/such/file.pem' }, 'JWT_PUBLIC_KEY is neither PEM text nor a readable file'],
    [{ MAX_FRAME_BYTES: '2048' }, 'MAX_FRAME_BYTES must exceed MAX_MESSAGE_BYTES'],
    [{ DEV_TOKENS: 'true' }, 'DEV_TOKENS=true needs JWT_SECRET'],
    [
      { REDIS_CLUSTER_NODES: 'a:1', REDIS_SENTINELS: 'b:2' },
      'set REDIS_CLUSTER_NODES or REDIS_SENTINELS, not both',
    ],
    [
      { REDIS_CLUSTER_NODES: 'a:1,nohostport' },
      'REDIS_CLUSTER_NODES must be a comma-separated list of host:port',
    ],
    [{ NODE_ID: 'has|pipe' }, 'NODE_ID must be 1-64 of'],
    [{ PRESENCE_BATCH_MS: '-1' }, 'PRESENCE_BATCH_MS must be between 0 and 10000'],
    [{ PRESENCE_BATCH_MS: '1e9' }, 'PRESENCE_BATCH_MS must be'],
    [
      { DEV_TOKENS: 'true', JWT_SECRET: 's'.repeat(16), NODE_ENV: 'production' },
      'DEV_TOKENS=true is not allowed',
    ],
  ])('%j is refused: %s', (env, message) => {
    expect(() => loadConfig(env, dev)).toThrow(ConfigError);
    expect(() => loadConfig(env, dev)).toThrow(message);
  });
});

test('parsePosition reads <offset> and <offset>:<epoch> from the upgrade URL and refuses anything else', () => {
  expect(parsePosition('0')).toEqual({ offset: 0 });
  expect(parsePosition('42:9b2e01')).toEqual({ offset: 42, epoch: '9b2e01' });
  expect(parsePosition(`${Number.MAX_SAFE_INTEGER}:a_B-9`)).toEqual({
    offset: Number.MAX_SAFE_INTEGER,
    epoch: 'a_B-9',
  });
  expect(parsePosition(`1:${'e'.repeat(64)}`)).toEqual({ offset: 1, epoch: 'e'.repeat(64) });
  for (const bad of [
    '',
    '-1',
    '+1',
    '1e3',
    '0x10',
    '1.0',
    ' 1',
    '1 ',
    '1:',
    ':e',
    '1:e:f',
    '1:e/f',
    '1:é',
    `1:${'e'.repeat(65)}`,
    '9007199254740992',
    '12345678901234567',
  ])
    expect([bad, parsePosition(bad)]).toEqual([bad, undefined]);
});
