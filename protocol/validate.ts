// Validation of server -> client frames, for readers (the SDK, the page, tests): a frame is checked against the
// types in events.ts and replies.ts before anything relies on it, so a malformed frame is reported, never cast.
// Unknown event types and extra fields pass (protocol v1 only grows).
import type { CommandType } from './commands';
import type { ServerEvent } from './events';
import type { ReplyFrame, ResultMap } from './replies';
import { isRecord, validOffset } from './rules';

export class MalformedFrameError extends Error {
  override readonly name = 'MalformedFrameError';
}

export type IncomingFrame =
  | { kind: 'reply'; frame: ReplyFrame }
  | { kind: 'event'; frame: ServerEvent }
  /** An event type this reader does not know: ignore it. */
  | { kind: 'unknown'; type: string };

type Rec = Record<string, unknown>;

const str = (v: unknown): v is string => typeof v === 'string';
const num = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const strings = (v: unknown): v is string[] => Array.isArray(v) && v.every(str);
const optional =
  <T>(check: (v: unknown) => v is T) =>
  (v: unknown): v is T | undefined =>
    v === undefined || check(v);
const nullable =
  <T>(check: (v: unknown) => v is T) =>
  (v: unknown): v is T | null =>
    v === null || check(v);

function expectFields(what: string, raw: Rec, fields: Record<string, (v: unknown) => boolean>): void {
  for (const [name, check] of Object.entries(fields))
    if (!check(raw[name])) throw new MalformedFrameError(`${what}: bad or missing "${name}"`);
}

const messageFields = {
  offset: validOffset,
  epoch: str,
  id: str,
  from: str,
  ts: num,
  body: (v: unknown) => v !== undefined,
};

function checkEvent(raw: Rec): ServerEvent | undefined {
  const type = raw.type as string;
  switch (type) {
    case 'welcome':
      expectFields(type, raw, {
        user: str,
        node: str,
        session: str,
        protocol: num,
        expiresAt: nullable(num),
        inbox: (v) =>
          v === undefined ||
          (isRecord(v) &&
            validOffset(v.offset) &&
            str(v.epoch) &&
            (v.recovered === undefined || typeof v.recovered === 'boolean')),
      });
      break;
    case 'message':
      expectFields(type, raw, { room: str, ...messageFields });
      break;
    case 'dm':
      expectFields(type, raw, { to: str, ...messageFields });
      break;
    case 'presence':
      expectFields(type, raw, {
        room: str,
        joined: optional(strings),
        left: optional(strings),
        event: (v) => v === undefined || v === 'join' || v === 'leave',
        user: optional(str),
      });
      if (
        raw.joined === undefined &&
        raw.left === undefined &&
        (raw.event === undefined || raw.user === undefined)
      )
        throw new MalformedFrameError('presence: neither joined/left nor event/user');
      break;
    case 'gap':
      expectFields(type, raw, {
        room: optional(str),
        inbox: (v) => v === undefined || v === true,
        from: validOffset,
        to: nullable(validOffset),
        epoch: str,
      });
      if ((raw.room === undefined) === (raw.inbox === undefined))
        throw new MalformedFrameError('gap: exactly one of "room" and "inbox"');
      break;
    case 'reconnect':
      expectFields(type, raw, { reason: str });
      break;
    case 'left':
      expectFields(type, raw, { rooms: strings, reason: str });
      break;
    case 'joined':
      expectFields(type, raw, { room: str, by: str, presence: strings, offset: validOffset, epoch: str });
      break;
    default:
      return undefined;
  }
  return raw as unknown as ServerEvent;
}

/** Checks one decoded frame (what JSON.parse gives). Throws MalformedFrameError. */
export function validateServerFrame(raw: unknown): IncomingFrame {
  if (!isRecord(raw)) throw new MalformedFrameError('frame is not an object');
  if ('re' in raw) {
    expectFields('reply', raw, { re: nullable(validOffset), ok: (v) => typeof v === 'boolean' });
    if (raw.ok === false) {
      const error = raw.error;
      if (!isRecord(error)) throw new MalformedFrameError('reply: bad or missing "error"');
      expectFields('reply error', error, {
        code: str,
        message: str,
        retryable: optional((v): v is boolean => typeof v === 'boolean'),
        retryAfterMs: optional(num),
      });
    }
    return { kind: 'reply', frame: raw as unknown as ReplyFrame };
  }
  if (!str(raw.type)) throw new MalformedFrameError('frame has neither "re" nor a string "type"');
  const event = checkEvent(raw);
  return event ? { kind: 'event', frame: event } : { kind: 'unknown', type: raw.type };
}

/** Parses and checks one text frame. Throws MalformedFrameError. */
export function parseServerFrame(text: string): IncomingFrame {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new MalformedFrameError('frame is not valid JSON');
  }
  return validateServerFrame(raw);
}

const joinFields = {
  room: str,
  presence: strings,
  total: optional(validOffset),
  offset: validOffset,
  epoch: str,
  recovered: optional(isBool),
};
const publishFields = { id: str, offset: validOffset, epoch: str, ts: num, duplicate: isBool };

function isBool(v: unknown): v is boolean {
  return typeof v === 'boolean';
}

const RESULT_FIELDS: { [T in CommandType]: Record<string, (v: unknown) => boolean> } = {
  join: joinFields,
  leave: { room: str },
  publish: publishFields,
  dm: { ...publishFields, delivered: validOffset, live: isBool, stored: isBool },
  presence: { room: str, presence: strings, total: optional(validOffset) },
  history: { room: str, offset: validOffset, epoch: str, messages: Array.isArray },
  inbox: { offset: validOffset, epoch: str, recovered: optional(isBool) },
  refresh: { expiresAt: nullable(num) },
  ping: { pong: (v) => v === true, ts: num },
};

/**
 * Checks the fields of a successful reply against the result type of the command it answers (`re`, `ok` may be
 * present). Throws MalformedFrameError.
 */
export function validateResult<T extends CommandType>(type: T, fields: Rec): ResultMap[T] {
  expectFields(`${type} reply`, fields, RESULT_FIELDS[type]);
  if (type === 'history')
    for (const m of fields.messages as unknown[]) {
      const checked = isRecord(m) && m.type === 'message' ? validateServerFrame(m) : undefined;
      if (checked?.kind !== 'event') throw new MalformedFrameError('history reply: a message is malformed');
    }
  return fields as unknown as ResultMap[T];
}
