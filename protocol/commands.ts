// Client -> server commands: their wire types, and the parser the gateway validates every frame with. Pure: no
// I/O, no state, no Node APIs.
import { ProtocolError } from './errors';
import {
  DEFAULT_HISTORY_LIMIT,
  DEFAULT_MAX_BODY_DEPTH,
  exceedsBytes,
  isRecord,
  MAX_EPOCH_LENGTH,
  MAX_HISTORY_LIMIT,
  MAX_KEY_LENGTH,
  MAX_TOKEN_LENGTH,
  MAX_USER_LENGTH,
  roomRuleText,
  validKey,
  validOffset,
  validRoom,
  type Limits,
  type Since,
} from './rules';
import { isWellFormed } from './unicode';

/** A command as a client writes it, without the `id` the client assigns (`body` is any JSON value). */
export type Command =
  | { type: 'join'; room: string; since?: Since }
  | { type: 'leave'; room: string }
  | { type: 'publish'; room: string; body: unknown; key?: string }
  | { type: 'dm'; to: string; body: unknown; key?: string }
  | { type: 'presence'; room: string }
  | { type: 'history'; room: string; limit?: number; before?: number }
  | { type: 'inbox'; since?: Since }
  | { type: 'refresh'; token: string }
  | { type: 'ping' };

export type CommandType = Command['type'];

/** A command frame on the wire. */
export type CommandFrame = Command & { id: number };

/**
 * A command as the gateway parsed it: validated, defaults applied, and `body` re-serialized as JSON text, the form
 * it is stored and fanned out in.
 */
export type ParsedCommand =
  | { id: number; type: 'join'; room: string; since?: Since }
  | { id: number; type: 'leave'; room: string }
  | { id: number; type: 'publish'; room: string; body: string; key?: string }
  | { id: number; type: 'dm'; to: string; body: string; key?: string }
  | { id: number; type: 'presence'; room: string }
  | { id: number; type: 'history'; room: string; limit: number; before?: number }
  | { id: number; type: 'inbox'; since?: Since }
  | { id: number; type: 'refresh'; token: string }
  | { id: number; type: 'ping' };

/** A frame that failed before its id was known is answered with `re: null`. */
export class FrameError extends ProtocolError {
  constructor(
    readonly id: number | null,
    code: ProtocolError['code'],
    message: string,
  ) {
    super(code, message);
  }
}

/** A body as stored: its JSON text, within `maxMessageBytes` of UTF-8. Throws ProtocolError. */
export function bodyJson(body: unknown, maxMessageBytes: number): string {
  if (body === undefined) throw new ProtocolError('bad_request', 'body is required');
  const json = JSON.stringify(body);
  if (exceedsBytes(json, maxMessageBytes))
    throw new ProtocolError('too_large', `body exceeds ${maxMessageBytes} bytes`);
  return json;
}

const POSITION = /^(\d{1,16})(?::([A-Za-z0-9_-]{1,64}))?$/;

/**
 * Parses a stream position given on the upgrade URL, `<offset>` or `<offset>:<epoch>` (e.g. `?inbox=42:9b2e01`);
 * undefined when it is malformed.
 */
export function parsePosition(text: string): Since | undefined {
  const m = POSITION.exec(text);
  if (!m) return undefined;
  const offset = Number(m[1]);
  if (!Number.isSafeInteger(offset)) return undefined;
  return m[2] === undefined ? { offset } : { offset, epoch: m[2] };
}

/**
 * The nesting depth (arrays and objects) of JSON text, found in one linear pass without recursion; stops counting
 * once it passes `limit` (returns limit + 1). Brackets inside strings do not count. Text that is not valid JSON
 * gets some depth; JSON.parse rejects it afterwards.
 */
export function jsonDepth(text: string, limit: number): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c /* \ */) i++;
      else if (c === 0x22 /* " */) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (++depth > max && (max = depth) > limit) return max;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) depth--;
  }
  return max;
}

/** The nesting depth of a parsed JSON value, without recursion; stops once it passes `limit`. */
export function valueDepth(value: unknown, limit: number): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    const depth = d + 1;
    if (depth > max && (max = depth) > limit) return max;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth]);
  }
  return max;
}

/** The top-level `"id": <non-negative integer>` of frame text, found without parsing (for a frame refused unparsed). */
function topLevelId(text: string): number | null {
  let depth = 0;
  let inString = false;
  let start = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) {
        inString = false;
        if (depth === 1 && text.slice(start, i) === 'id') {
          const m = /^\s*:\s*(\d{1,16})\s*[,}]/.exec(text.slice(i + 1, i + 40));
          if (m) {
            const id = Number(m[1]);
            return Number.isSafeInteger(id) ? id : null;
          }
        }
      }
    } else if (c === 0x22) {
      inString = true;
      start = i + 1;
    } else if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return null;
}

/**
 * Parses one text frame. Throws FrameError (with the command id when it could be read) on anything invalid.
 * `body` is returned re-serialized as JSON text, the form it is stored and fanned out in.
 */
export function parseCommand(text: string, limits: Limits): ParsedCommand {
  // Checked before JSON.parse: a deep value would make every later JSON.stringify of it recurse past the stack.
  const maxDepth = limits.maxBodyDepth ?? DEFAULT_MAX_BODY_DEPTH;
  if (jsonDepth(text, maxDepth + 1) > maxDepth + 1)
    throw new FrameError(topLevelId(text), 'bad_request', `body is nested deeper than ${maxDepth} levels`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new FrameError(null, 'bad_request', 'frame is not valid JSON');
  }
  return validateCommand(raw, limits);
}

/**
 * Validates one decoded frame: what JSON.parse gives for a text frame, or what decodeMsgpack gives for a
 * MessagePack one (services/gateway/src/protocol/encoding.ts), so both encodings pass the same rules.
 */
export function validateCommand(raw: unknown, limits: Limits): ParsedCommand {
  if (!isRecord(raw)) throw new FrameError(null, 'bad_request', 'frame must be a JSON object');
  const id = raw.id;
  if (!validOffset(id)) throw new FrameError(null, 'bad_request', 'id must be a non-negative integer');
  const fail = (code: ProtocolError['code'], message: string): never => {
    throw new FrameError(id, code, message);
  };
  const room = (): string => {
    if (!validRoom(raw.room, limits.maxRoomNameLength))
      fail('bad_request', roomRuleText(limits.maxRoomNameLength));
    return raw.room as string;
  };
  const body = (): string => {
    if (raw.body === undefined) fail('bad_request', 'body is required');
    // Text frames were measured before JSON.parse; a decoded MessagePack frame or an API body is measured here.
    const maxDepth = limits.maxBodyDepth ?? DEFAULT_MAX_BODY_DEPTH;
    if (valueDepth(raw.body, maxDepth) > maxDepth)
      fail('bad_request', `body is nested deeper than ${maxDepth} levels`);
    try {
      return bodyJson(raw.body, limits.maxMessageBytes);
    } catch (err) {
      return fail((err as ProtocolError).code, (err as ProtocolError).message);
    }
  };
  const key = (): string | undefined => {
    if (raw.key === undefined) return undefined;
    if (!validKey(raw.key)) fail('bad_request', `key must be a string of 1-${MAX_KEY_LENGTH} characters`);
    return raw.key as string;
  };
  const since = (): Since | undefined => {
    const s = raw.since;
    if (s === undefined) return undefined;
    if (!isRecord(s) || !validOffset(s.offset))
      fail('bad_request', 'since must be {offset: non-negative integer, epoch?: string}');
    const { offset, epoch } = s as { offset: number; epoch?: unknown };
    if (epoch !== undefined && (typeof epoch !== 'string' || epoch.length > MAX_EPOCH_LENGTH))
      fail('bad_request', 'since.epoch must be a string');
    return epoch === undefined ? { offset } : { offset, epoch: epoch as string };
  };

  switch (raw.type) {
    case 'join':
      return { id, type: 'join', room: room(), since: since() };
    case 'leave':
      return { id, type: 'leave', room: room() };
    case 'publish':
      return { id, type: 'publish', room: room(), body: body(), key: key() };
    case 'dm': {
      const to = raw.to;
      if (typeof to !== 'string' || to.length === 0 || to.length > MAX_USER_LENGTH)
        fail('bad_request', `to must be a user id of 1-${MAX_USER_LENGTH} characters`);
      if (!isWellFormed(to as string))
        fail('bad_request', 'to must be well-formed Unicode (no lone surrogates)');
      return { id, type: 'dm', to: to as string, body: body(), key: key() };
    }
    case 'presence':
      return { id, type: 'presence', room: room() };
    case 'history': {
      const limit = raw.limit ?? DEFAULT_HISTORY_LIMIT;
      if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_HISTORY_LIMIT)
        fail('bad_request', `limit must be an integer from 1 to ${MAX_HISTORY_LIMIT}`);
      const before = raw.before;
      if (before !== undefined && (typeof before !== 'number' || !Number.isSafeInteger(before) || before < 1))
        fail('bad_request', 'before must be a positive integer offset');
      return {
        id,
        type: 'history',
        room: room(),
        limit: limit as number,
        before: before as number | undefined,
      };
    }
    case 'inbox':
      return { id, type: 'inbox', since: since() };
    case 'refresh':
      if (typeof raw.token !== 'string' || raw.token.length === 0 || raw.token.length > MAX_TOKEN_LENGTH)
        fail('bad_request', 'token must be a non-empty string');
      return { id, type: 'refresh', token: raw.token as string };
    case 'ping':
      return { id, type: 'ping' };
    default:
      if (typeof raw.type !== 'string') return fail('bad_request', 'type must be a string');
      return fail('unknown_type', `unknown command type: ${String(raw.type).slice(0, 64)}`);
  }
}
