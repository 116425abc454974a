// One protocol module for the gateway, the SDK and the page: they import protocol/ (no copies of its rules in
// their sources), every frame builder's output passes the validator the SDK reads frames with, and malformed
// frames are refused by it rather than cast.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import {
  CLOSE,
  DEFAULT_LIMITS,
  ERROR_CODES,
  MalformedFrameError,
  errorReply,
  gapEvent,
  joinedEvent,
  leftEvent,
  okReply,
  parseCommand,
  parseServerFrame,
  presenceBatchEvent,
  presenceEvent,
  reconnectEvent,
  storedEvent,
  storedEventParts,
  utf8Length,
  validateResult,
  validateServerFrame,
  welcomeFrame,
  type CommandType,
  type ErrorCode,
  type ResultMap,
} from '../../protocol';
import { loadConfig } from '../../services/gateway/src/config';
import { ChatError } from '../../client/src';
import { ROOT } from '../helpers/harness';

const root = ROOT;
const protocolDir = join(root, 'protocol');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sources(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

/** The code of a file without its comments (rough, but no source here has `//` or `/*` inside a string). */
function code(path: string): string {
  return readFileSync(path, 'utf8')
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
}

/** Where each import of `path` resolves to, relative to the repo root. */
function imports(path: string): string[] {
  const specs = [...readFileSync(path, 'utf8').matchAll(/from '(\.[^']*)'/g)].map((m) => m[1]!);
  return specs.map((s) => relative(root, resolve(dirname(path), s)));
}

// Everything that speaks the protocol: the gateway, the SDK and the page.
const consumers = [
  ...sources(join(root, 'services/gateway/src')),
  ...sources(join(root, 'client/src')),
  ...sources(join(root, 'web/src')),
];

describe('the gateway, the SDK and the page share one protocol module', () => {
  test.each([
    'services/gateway/src/session/gateway.ts',
    'services/gateway/src/hub/hub.ts',
    'services/gateway/src/engine/memory-engine.ts',
    'services/gateway/src/engine/redis-engine.ts',
    'services/gateway/src/config.ts',
    'client/src/client.ts',
    'client/src/errors.ts',
    'client/src/protocol.ts',
    'web/src/main.ts',
  ])('%s imports protocol/', (file) => {
    expect(imports(join(root, file))).toContain('protocol');
  });

  test('no source outside protocol/ defines an error code catalogue', () => {
    // A catalogue: three or more of the codes as object keys or as members of a union type in one file.
    const codes = Object.keys(ERROR_CODES).join('|');
    const asKey = new RegExp(`(?:^|[{,\\s])['"]?(${codes})['"]?\\s*:`, 'gm');
    const asUnion = new RegExp(`\\|\\s*['"](${codes})['"]`, 'g');
    const listed = (text: string) =>
      new Set([...text.matchAll(asKey), ...text.matchAll(asUnion)].map((m) => m[1])).size;
    const offenders = consumers.filter((f) => listed(code(f)) >= 3);
    expect(offenders.map((f) => relative(root, f))).toEqual([]);
  });

  test('no source outside protocol/ writes a close code as a number', () => {
    const numbers = Object.values(CLOSE).join('|');
    const literal = new RegExp(`(^|[^\\w.])(${numbers})(?![\\w.])`);
    const offenders = consumers.filter((f) => {
      // 1000 is also "ms per second" in plenty of code; only a close(...) call or a comparison with `code` counts.
      const text = code(f);
      return [...text.matchAll(/close\(([^)]*)\)|code\s*===?\s*(\d+)/g)].some((m) => literal.test(m[0]));
    });
    expect(offenders.map((f) => relative(root, f))).toEqual([]);
  });

  test('no source outside protocol/ spells out the room-name character class', () => {
    // The class [A-Za-z0-9_\-.:@] (or [\w.@:-]) in any order: a character class with letters and both ':' and '@'.
    const roomClass = /\[(?=[^\]]*(?:A-Za-z|\\w))(?=[^\]]*:)(?=[^\]]*@)[^\]]*\]/;
    const offenders = consumers.filter((f) => roomClass.test(code(f)));
    expect(offenders.map((f) => relative(root, f))).toEqual([]);
  });

  test('frames are built only by protocol/frames.ts: no JSON frame literals in the gateway or its Lua', () => {
    const frameLiteral = /JSON\.stringify\(\{\s*(type|re)\s*:|\{\\?"type\\?":|'\{"type"/;
    const offenders = sources(join(root, 'services/gateway/src')).filter((f) => frameLiteral.test(code(f)));
    expect(offenders.map((f) => relative(root, f))).toEqual([]);
  });

  test('the protocol module itself uses no Node or DOM API (it is bundled into the page)', () => {
    for (const f of sources(protocolDir)) {
      const text = code(f);
      expect(text).not.toMatch(/\bBuffer\b|\bprocess\.|from 'node:|\bwindow\b|\bdocument\b/);
    }
  });

  test('the gateway config defaults are the protocol defaults', () => {
    const c = loadConfig({}, () => 'generated-dev-secret');
    expect(c.limits.maxMessageBytes).toBe(DEFAULT_LIMITS.maxMessageBytes);
    expect(c.limits.maxRoomNameLength).toBe(DEFAULT_LIMITS.maxRoomNameLength);
  });

  test('docs/PROTOCOL.md lists every error code with its retry flag, and every close code', () => {
    const doc = readFileSync(join(root, 'docs/PROTOCOL.md'), 'utf8');
    for (const [name, flags] of Object.entries(ERROR_CODES)) {
      const row = doc.split('\n').find((l) => l.startsWith(`| \`${name}\``));
      expect(row).toBeDefined();
      const retry = row!.split('|').at(-2)!.trim();
      expect([name, /^(yes|maybe)/.test(retry)]).toEqual([name, flags.retryable]);
    }
    for (const n of Object.values(CLOSE)) expect(doc).toMatch(new RegExp(`^\\| ${n} \\|`, 'm'));
  });

  test("the SDK's ChatError takes retryable from the shared catalogue", () => {
    for (const [name, flags] of Object.entries(ERROR_CODES))
      expect([name, new ChatError(name, 'x').retryable]).toEqual([name, flags.retryable]);
  });
});

describe('every builder round-trips through the validator the SDK uses', () => {
  const message = storedEvent(
    storedEventParts('message', { room: 'r', id: 'i1', from: 'a', ts: 5 }, '[1]'),
    3,
    'e',
  );
  const dm = storedEvent(storedEventParts('dm', { to: 'b', id: 'i2', from: 'a', ts: 6 }, '"hi"'), 4, 'e');

  test.each([
    ['welcome', welcomeFrame({ user: 'u', node: 'n1', session: 's1', expiresAt: null })],
    ['welcome', welcomeFrame({ user: 'u', node: 'n1', session: 's1', expiresAt: 1700000000000 })],
    ['message', message],
    ['dm', dm],
    ['presence', presenceEvent('r', 'join', 'u')],
    ['presence', presenceBatchEvent('r', ['a'], [])],
    ['presence', presenceBatchEvent('r', ['a', 'b'], ['c'])],
    ['gap', gapEvent({ room: 'r' }, 4, 9, 'e')],
    ['gap', gapEvent({ inbox: true }, 4, null, 'e2')],
    ['reconnect', reconnectEvent('draining')],
    ['left', leftEvent(['a', 'b'], 'token')],
    ['joined', joinedEvent({ room: 'r', by: 'server', presence: ['a'], offset: 4, epoch: 'e' })],
    [
      'welcome',
      welcomeFrame({ user: 'u', node: 'n1', session: 's1', expiresAt: null, info: { plan: 'pro' } }),
    ],
  ])('%s: %s', (type, frame) => {
    const incoming = parseServerFrame(frame);
    expect(incoming).toEqual({ kind: 'event', frame: JSON.parse(frame) });
    expect(incoming.kind === 'event' && incoming.frame.type).toBe(type);
  });

  const results: { [T in CommandType]: ResultMap[T] } = {
    join: { room: 'r', presence: ['a'], offset: 3, epoch: 'e', recovered: true },
    leave: { room: 'r' },
    publish: { id: 'i', offset: 1, epoch: 'e', ts: 5, duplicate: false },
    dm: { id: 'i', offset: 1, epoch: 'e', ts: 5, duplicate: false, delivered: 2, live: true, stored: true },
    presence: { room: 'r', presence: [] },
    history: { room: 'r', offset: 3, epoch: 'e', messages: [JSON.parse(message)] },
    inbox: { offset: 0, epoch: 'e' },
    refresh: { expiresAt: null },
    ping: { pong: true, ts: 5 },
  };
  test.each(Object.keys(results) as CommandType[])('ok reply to %s', (type) => {
    const incoming = parseServerFrame(okReply(7, results[type]));
    expect(incoming.kind).toBe('reply');
    const { re, ok, ...fields } = (incoming as { frame: Record<string, unknown> }).frame;
    expect([re, ok]).toEqual([7, true]);
    expect(validateResult(type, fields)).toEqual(results[type]);
  });

  test.each(Object.keys(ERROR_CODES) as ErrorCode[])('error reply %s', (errorCode) => {
    const incoming = parseServerFrame(errorReply(null, errorCode, 'why', 10));
    expect(incoming).toEqual({
      kind: 'reply',
      frame: {
        re: null,
        ok: false,
        error: {
          code: errorCode,
          message: 'why',
          retryable: ERROR_CODES[errorCode].retryable,
          retryAfterMs: 10,
        },
      },
    });
  });

  test('an event type the reader does not know passes as unknown (protocol v1 only grows)', () => {
    expect(parseServerFrame('{"type":"future","x":1}')).toEqual({ kind: 'unknown', type: 'future' });
  });
});

describe('malformed server frames are refused, not cast', () => {
  test.each([
    ['not JSON', '{"type":'],
    ['not an object', '[1,2]'],
    ['neither re nor type', '{"x":1}'],
    ['reply without ok', '{"re":1}'],
    ['reply with a fractional re', '{"re":1.5,"ok":true}'],
    ['error reply without error', '{"re":1,"ok":false}'],
    ['error reply with a numeric code', '{"re":1,"ok":false,"error":{"code":5,"message":"m"}}'],
    ['welcome without node', '{"type":"welcome","user":"u","session":"s","protocol":1,"expiresAt":null}'],
    [
      'message with a string offset',
      '{"type":"message","room":"r","offset":"3","epoch":"e","id":"i","from":"a","ts":1,"body":1}',
    ],
    [
      'message without body',
      '{"type":"message","room":"r","offset":3,"epoch":"e","id":"i","from":"a","ts":1}',
    ],
    ['dm without to', '{"type":"dm","offset":3,"epoch":"e","id":"i","from":"a","ts":1,"body":1}'],
    ['presence with a numeric user list', '{"type":"presence","room":"r","joined":[1]}'],
    ['presence without changes', '{"type":"presence","room":"r"}'],
    [
      'gap for both a room and the inbox',
      '{"type":"gap","room":"r","inbox":true,"from":1,"to":2,"epoch":"e"}',
    ],
    ['gap with a negative from', '{"type":"gap","room":"r","from":-1,"to":2,"epoch":"e"}'],
    ['left with rooms as a string', '{"type":"left","rooms":"a","reason":"token"}'],
  ])('%s', (_name, text) => {
    expect(() => parseServerFrame(text)).toThrow(MalformedFrameError);
  });

  test('a reply whose fields do not fit its command is refused', () => {
    expect(() =>
      validateResult('publish', { id: 'i', offset: -1, epoch: 'e', ts: 1, duplicate: false }),
    ).toThrow(MalformedFrameError);
    expect(() => validateResult('join', { room: 'r', presence: 'a', offset: 1, epoch: 'e' })).toThrow(
      MalformedFrameError,
    );
    expect(() =>
      validateResult('history', { room: 'r', offset: 1, epoch: 'e', messages: [{ type: 'message' }] }),
    ).toThrow(MalformedFrameError);
  });

  test('validateServerFrame takes decoded values too (what another decoder gives)', () => {
    expect(validateServerFrame({ type: 'reconnect', reason: 'x' })).toEqual({
      kind: 'event',
      frame: { type: 'reconnect', reason: 'x' },
    });
    expect(() => validateServerFrame(null)).toThrow(MalformedFrameError);
  });
});

describe('the validation rules work without Node APIs', () => {
  test('utf8Length agrees with Buffer.byteLength, lone surrogates included', () => {
    for (const s of ['', 'abc', 'é', '€', '😀', 'a😀b', '\ud800', '\udc00x', 'x\ud83d', '中文字'.repeat(100)])
      expect([s, utf8Length(s)]).toEqual([s, Buffer.byteLength(s)]);
  });

  test('parseCommand measures the body in UTF-8 bytes at the limit', () => {
    const limits = { maxMessageBytes: 10, maxRoomNameLength: 8 };
    const at = (body: string) => JSON.stringify({ id: 1, type: 'publish', room: 'r', body });
    expect(parseCommand(at('é'.repeat(4)), limits)).toMatchObject({ body: '"éééé"' }); // 2 + 8 bytes
    expect(() => parseCommand(at('é'.repeat(5)), limits)).toThrow('body exceeds 10 bytes');
    expect(() => parseCommand(at('😀😀'), limits)).not.toThrow(); // 2 + 8 bytes
    expect(() => parseCommand(at('😀😀a'), limits)).toThrow('body exceeds 10 bytes');
  });
});

test('the welcome builder keeps every field it is given (info, inbox)', () => {
  const inbox = { offset: 4, epoch: 'e', recovered: true };
  const frame = welcomeFrame({
    user: 'u',
    node: 'n',
    session: 's',
    expiresAt: 5,
    info: { plan: 'pro' },
    inbox,
  });
  expect(JSON.parse(frame)).toEqual({
    type: 'welcome',
    user: 'u',
    node: 'n',
    session: 's',
    protocol: 1,
    expiresAt: 5,
    info: { plan: 'pro' },
    inbox,
  });
});
