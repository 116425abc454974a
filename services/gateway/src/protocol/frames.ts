// Server -> client frames. Builders return JSON text; event frames that carry a stored body are assembled by
// string concatenation around the body's JSON so it is never parsed or re-serialized on the way out.
import { ERROR_CODES, type ErrorCode } from './errors';

export function okReply(re: number, fields: Record<string | symbol, unknown>): string {
  return JSON.stringify({ re, ok: true, ...fields });
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
