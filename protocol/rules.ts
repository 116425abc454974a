// The validation rules of the wire: room names, user ids, idempotency keys, recovery positions and the limits a
// gateway applies to them. Pure and free of Node APIs, so the page and the SDK apply the same rules as the server.
import { isWellFormed } from './unicode';

/** The limits a gateway is configured with (MAX_MESSAGE_BYTES, MAX_ROOM_NAME_LENGTH). */
export interface Limits {
  maxMessageBytes: number;
  maxRoomNameLength: number;
  /** Nesting depth of `body`; the frame around it may be one level deeper. Unset = DEFAULT_MAX_BODY_DEPTH. */
  maxBodyDepth?: number;
}

export const DEFAULT_MAX_BODY_DEPTH = 32;

/** The gateway's defaults; a deployment may change them (services/gateway/src/config.ts). */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  maxMessageBytes: 16384,
  maxRoomNameLength: 128,
});

export const ROOM_CHARS = /^[A-Za-z0-9_\-.:@]+$/;
/** The room rule in words, for error messages. */
export const ROOM_CHARS_TEXT = 'A-Z a-z 0-9 _ - . : @';
export const MAX_USER_LENGTH = 256;
export const MAX_KEY_LENGTH = 64;
export const MAX_EPOCH_LENGTH = 64;
export const MAX_TOKEN_LENGTH = 8192;
export const MAX_HISTORY_LIMIT = 100;
export const DEFAULT_HISTORY_LIMIT = 50;

export interface Since {
  offset: number;
  /** Omitted means "the current epoch". */
  epoch?: string;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function validRoom(room: unknown, maxLength: number): room is string {
  return typeof room === 'string' && room.length > 0 && room.length <= maxLength && ROOM_CHARS.test(room);
}

export function roomRuleText(maxLength: number): string {
  return `room must be 1-${maxLength} characters of ${ROOM_CHARS_TEXT}`;
}

/** A user id (a token's `sub`, a DM's `to`, a server API `user`): 1-256 UTF-16 units, well-formed Unicode. */
export function validUserId(user: unknown): user is string {
  return typeof user === 'string' && user.length > 0 && user.length <= MAX_USER_LENGTH && isWellFormed(user);
}

export function validKey(key: unknown): key is string {
  return typeof key === 'string' && key.length > 0 && key.length <= MAX_KEY_LENGTH;
}

export function validOffset(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

export function validSince(s: unknown): s is Since {
  return (
    isRecord(s) &&
    validOffset(s.offset) &&
    (s.epoch === undefined || (typeof s.epoch === 'string' && s.epoch.length <= MAX_EPOCH_LENGTH))
  );
}

/** UTF-8 length of a string without TextEncoder or Buffer (a lone surrogate counts 3, as U+FFFD). */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 2; // 4 bytes for 2 units
        i++;
      } else n += 2;
    } else n += 2;
  }
  return n;
}

/** True when the UTF-8 form of `s` is longer than `max` bytes; counts only when the length alone cannot tell. */
export function exceedsBytes(s: string, max: number): boolean {
  if (s.length > max) return true;
  if (s.length * 3 <= max) return false;
  return utf8Length(s) > max;
}
