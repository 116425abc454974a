// Server -> client frames: the one place each is built. Builders return JSON text; event frames that carry a stored
// body are assembled by string concatenation around the body's JSON so it is never parsed or re-serialized on the
// way out.
import type { CommandType } from './commands';
import { ERROR_CODES, type ErrorCode } from './errors';
import type { GapEvent, JoinedEvent, LeftEvent, ReconnectEvent, WelcomeFrame } from './events';
import type { ResultMap, WireError } from './replies';

/** The `protocol` field of the welcome. */
export const PROTOCOL_VERSION = 1;

export function okReply<T extends CommandType>(re: number, result: ResultMap[T]): string {
  return JSON.stringify({ re, ok: true, ...result });
}

/**
 * An ok reply with one more field holding a JSON array of stored frames, spliced in as stored: a stored frame is
 * never parsed and serialized again on its way out, whatever its nesting.
 */
export function okReplyWithFrames<T extends CommandType>(
  re: number,
  result: Omit<ResultMap[T], 'messages'>,
  name: string,
  frames: readonly string[],
): string {
  const head = JSON.stringify({ re, ok: true, ...result });
  return `${head.slice(0, -1)},${JSON.stringify(name)}:[${frames.join(',')}]}`;
}

export function errorReply(
  re: number | null,
  code: ErrorCode,
  message: string,
  retryAfterMs?: number,
): string {
  const error: WireError = { code, message, retryable: ERROR_CODES[code].retryable };
  if (retryAfterMs !== undefined) error.retryAfterMs = retryAfterMs;
  return JSON.stringify({ re, ok: false, error });
}

export function welcomeFrame(fields: Omit<WelcomeFrame, 'type' | 'protocol'>): string {
  const frame: WelcomeFrame = {
    type: 'welcome',
    user: fields.user,
    node: fields.node,
    session: fields.session,
    protocol: PROTOCOL_VERSION,
    expiresAt: fields.expiresAt,
  };
  if (fields.info !== undefined) frame.info = fields.info;
  if (fields.inbox !== undefined) frame.inbox = fields.inbox;
  return JSON.stringify(frame);
}

/**
 * A stored event (`message` or `dm`) before the engine numbers it: the frame is `head + offset + mid + epoch +
 * tail`. The engine (the Redis script included) only concatenates these pieces; it builds nothing itself.
 */
export interface StoredFrameParts {
  /** `{"type":"message","offset":` */
  head: string;
  /** `,"epoch":"` */
  mid: string;
  /** `","id":..,"from":..,"ts":..,"body":<json>}` */
  tail: string;
}

const EPOCH_MID = ',"epoch":"';

export function storedEventParts(
  type: 'message' | 'dm',
  fields: { id: string; from: string; to?: string; room?: string; ts: number },
  body: string,
): StoredFrameParts {
  const json = JSON.stringify(fields);
  return {
    head: `{"type":"${type}","offset":`,
    mid: EPOCH_MID,
    tail: `",${json.slice(1, -1)},"body":${body}}`,
  };
}

/** The stored frame at `offset` of `epoch` (what the Redis script assembles, for the memory engine and tests). */
export function storedEvent(parts: StoredFrameParts, offset: number, epoch: string): string {
  return parts.head + offset + parts.mid + epoch + parts.tail;
}

/** One presence change, as the engines publish it to the nodes of a room (the hub batches them). */
export function presenceEvent(room: string, event: 'join' | 'leave', user: string): string {
  return JSON.stringify({ type: 'presence', room, event, user });
}

/**
 * Presence changes of one room, coalesced over PRESENCE_BATCH_MS: the users who joined and who left (each user in
 * at most one list, their last change). With exactly one change the frame also carries `event` and `user`, the
 * protocol-1 single-change fields.
 */
export function presenceBatchEvent(room: string, joined: string[], left: string[]): string {
  if (joined.length + left.length === 1) {
    const event = joined.length === 1 ? 'join' : 'leave';
    return JSON.stringify({ type: 'presence', room, event, user: joined[0] ?? left[0], joined, left });
  }
  return JSON.stringify({ type: 'presence', room, joined, left });
}

/** `to` is null when the history was reset (a new epoch): everything after `from - 1` of the old epoch is lost. */
export function gapEvent(
  target: { room: string } | { inbox: true },
  from: number,
  to: number | null,
  epoch: string,
): string {
  const frame: GapEvent = { type: 'gap', ...target, from, to, epoch };
  return JSON.stringify(frame);
}

/** Sent before a draining node closes the connection with 1001. */
export function reconnectEvent(reason: string): string {
  const frame: ReconnectEvent = { type: 'reconnect', reason };
  return JSON.stringify(frame);
}

export function leftEvent(rooms: string[], reason: 'token' | 'server'): string {
  const frame: LeftEvent = { type: 'left', rooms, reason };
  return JSON.stringify(frame);
}

export function joinedEvent(fields: Omit<JoinedEvent, 'type'>): string {
  const frame: JoinedEvent = { type: 'joined', ...fields };
  return JSON.stringify(frame);
}

/** JSON text to be written into a larger JSON document as it is: a stored frame, never parsed again. */
export class RawJson {
  constructor(readonly text: string) {}
}

/**
 * JSON.stringify that writes every RawJson in `value` as its text. Each RawJson first becomes a placeholder
 * string carrying a random tag (a client cannot forge it), then the placeholder is replaced by the text.
 */
export function stringifyWithRaw(value: unknown): string {
  const raws: string[] = [];
  const random = globalThis.crypto.getRandomValues(new Uint8Array(8));
  const tag = `\u0000raw:${Array.from(random, (b) => b.toString(16).padStart(2, '0')).join('')}:`;
  const text = JSON.stringify(value, (_key, v: unknown) =>
    v instanceof RawJson ? `${tag}${raws.push(v.text) - 1}` : v,
  );
  if (raws.length === 0) return text;
  const quoted = JSON.stringify(tag)
    .slice(0, -1)
    .replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
  return text.replace(new RegExp(`${quoted}(\\d+)"`, 'g'), (_m, i: string) => raws[Number(i)]!);
}
