// Server -> client frames. Builders return JSON text; event frames that carry a stored body are assembled by
// string concatenation around the body's JSON so it is never parsed or re-serialized on the way out.
import { randomBytes } from 'node:crypto';
import { ERROR_CODES, type ErrorCode } from './errors';

export function okReply(re: number, fields: Record<string | symbol, unknown>): string {
  return JSON.stringify({ re, ok: true, ...fields });
}

/**
 * An ok reply with one more field holding a JSON array of stored frames, spliced in as stored: a stored frame is
 * never parsed and serialized again on its way out, whatever its nesting.
 */
export function okReplyWithFrames(
  re: number,
  fields: Record<string, unknown>,
  name: string,
  frames: readonly string[],
): string {
  const head = okReply(re, fields);
  return `${head.slice(0, -1)},${JSON.stringify(name)}:[${frames.join(',')}]}`;
}

export function errorReply(
  re: number | null,
  code: ErrorCode,
  message: string,
  retryAfterMs?: number,
): string {
  const error: Record<string, unknown> = { code, message, retryable: ERROR_CODES[code].retryable };
  if (retryAfterMs !== undefined) error.retryAfterMs = retryAfterMs;
  return JSON.stringify({ re, ok: false, error });
}

/**
 * The part of a stored event after `"offset":N,"epoch":"E",`, i.e. what the publishing node knows before the
 * engine assigns the offset: `"id":..,"from":..,"ts":..,"body":<json>}`.
 */
export function eventTail(
  fields: { id: string; from: string; to?: string; room?: string; ts: number },
  body: string,
): string {
  const head = JSON.stringify(fields);
  return `${head.slice(1, -1)},"body":${body}}`;
}

/** `{"type":"message","offset":N,"epoch":"E",<tail>` — the same assembly the Redis script does in Lua. */
export function storedEvent(type: 'message' | 'dm', offset: number, epoch: string, tail: string): string {
  return `{"type":"${type}","offset":${offset},"epoch":"${epoch}",${tail}`;
}

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
  return JSON.stringify({ type: 'gap', ...target, from, to, epoch });
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
  const tag = `\u0000raw:${randomBytes(8).toString('hex')}:`;
  const text = JSON.stringify(value, (_key, v: unknown) =>
    v instanceof RawJson ? `${tag}${raws.push(v.text) - 1}` : v,
  );
  if (raws.length === 0) return text;
  const quoted = JSON.stringify(tag)
    .slice(0, -1)
    .replace(/[\\^$.*+?()[\]{}|]/g, '\\$&');
  return text.replace(new RegExp(`${quoted}(\\d+)"`, 'g'), (_m, i: string) => raws[Number(i)]!);
}
