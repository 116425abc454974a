// The two wire encodings and the conversions at the egress and ingress boundaries. Frames inside the node (built
// replies, bus events, stored history) are JSON text; a MessagePack connection gets each frame converted once
// (the hub reuses one conversion per bus message for all MessagePack subscribers), and its binary frames are
// decoded into the same plain values JSON.parse gives, so one validator (protocol/commands.ts) serves both.
//
// Binary values: JSON has none, so a MessagePack `bin` is carried inside the node as `{"$bin":"<base64>"}` (an
// object whose only key is `$bin`, a string). Going out to a MessagePack connection every such object becomes
// `bin` again. Whoever writes that marker in JSON is therefore seen as binary by MessagePack clients.
import { Packr, Unpackr } from 'msgpackr';

export type Encoding = 'json' | 'msgpack';

/** Sec-WebSocket-Protocol entries. */
export const SUBPROTOCOL = { json: 'relaychat.v1.json', msgpack: 'relaychat.v1.msgpack' } as const;
/** A token carried in Sec-WebSocket-Protocol: `relaychat.token.<jwt>` (never echoed back). */
export const TOKEN_SUBPROTOCOL_PREFIX = 'relaychat.token.';

/** Plain MessagePack only: no records, bundled strings, structured clone or other msgpackr extensions. */
const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  bundleStrings: false,
  structuredClone: false,
  encodeUndefinedAsNil: true,
  int64AsType: 'number',
});
const unpackr = new Unpackr({
  useRecords: false,
  moreTypes: false,
  bundleStrings: false,
  structuredClone: false,
  mapsAsObjects: true,
  int64AsType: 'number',
});

const BIN_KEY = '"$bin"';

/** Picks the encoding from the offered subprotocols (client order); JSON when none of ours is offered. */
export function chooseEncoding(offered: readonly string[]): { encoding: Encoding; echo: string } {
  for (const p of offered) {
    if (p === SUBPROTOCOL.json) return { encoding: 'json', echo: p };
    if (p === SUBPROTOCOL.msgpack) return { encoding: 'msgpack', echo: p };
  }
  return { encoding: 'json', echo: '' };
}

/** Splits a Sec-WebSocket-Protocol header into its entries. */
export function subprotocols(header: string): string[] {
  return header
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function binReviver(_key: string, value: unknown): unknown {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const o = value as Record<string, unknown>;
    if (typeof o.$bin === 'string') {
      let n = 0;
      for (const _ in o) if (++n > 1) return value;
      return Buffer.from(o.$bin, 'base64');
    }
  }
  return value;
}

/** A JSON frame (text, or its UTF-8 bytes) as MessagePack bytes; `{"$bin":"<base64>"}` objects become `bin`. */
export function jsonToMsgpack(frame: string | Uint8Array): Uint8Array {
  const text = typeof frame === 'string' ? frame : Buffer.from(frame).toString('utf8');
  const value: unknown = text.includes(BIN_KEY) ? JSON.parse(text, binReviver) : JSON.parse(text);
  return packr.pack(value);
}

/** MessagePack bytes already converted from a JSON frame, to be written as they are (a binary frame). */
export class Packed {
  constructor(readonly bytes: Uint8Array) {}
}

/**
 * What a Connection writes: a JSON frame (text or UTF-8 bytes), converted to the connection's encoding on the
 * way out, or Packed bytes for a MessagePack connection.
 */
export type OutFrame = string | Uint8Array | Packed;

/**
 * One frame for many connections: converted to MessagePack at most once, on the first MessagePack
 * connection that asks, and the same bytes reused for the rest (the fan-out path).
 */
export class Prepared {
  private packed: Packed | undefined;
  constructor(readonly json: string | Uint8Array) {}
  for(encoding: Encoding): string | Uint8Array | Packed {
    if (encoding === 'json') return this.json;
    return (this.packed ??= new Packed(jsonToMsgpack(this.json)));
  }
  /** Bytes written per delivery in the given encoding (after for(encoding) was called for msgpack). */
  size(encoding: Encoding): number {
    return encoding === 'json' ? this.json.length : (this.packed?.bytes.length ?? 0);
  }
}

export class DecodeError extends Error {}

/**
 * Decodes one MessagePack frame into the plain value JSON.parse would give for the same command: objects with
 * string keys, arrays, strings, finite numbers, booleans, null, and `bin` as `{"$bin":"<base64>"}`. Anything
 * else (extension types, timestamps, non-finite numbers, non-string map keys, trailing bytes, nesting deeper
 * than `maxDepth`) throws DecodeError. The depth is checked iteratively, after a decode that is itself guarded.
 */
export function decodeMsgpack(bytes: Uint8Array, maxDepth: number): unknown {
  let root: unknown;
  try {
    root = unpackr.unpack(bytes);
  } catch (err) {
    throw new DecodeError(
      err instanceof RangeError ? 'frame is nested too deeply' : 'frame is not valid MessagePack',
    );
  }
  const holder = { root };
  const stack: [Record<string, unknown> | unknown[], string | number, number][] = [[holder, 'root', 0]];
  while (stack.length > 0) {
    const [parent, key, depth] = stack.pop()!;
    const v = (parent as Record<string | number, unknown>)[key];
    if (v === null || typeof v === 'string' || typeof v === 'boolean') continue;
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) throw new DecodeError('numbers must be finite');
      continue;
    }
    if (v instanceof Uint8Array) {
      (parent as Record<string | number, unknown>)[key] = {
        $bin: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64'),
      };
      continue;
    }
    if (depth >= maxDepth) throw new DecodeError(`frame is nested deeper than ${maxDepth} levels`);
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push([v, i, depth + 1]);
      continue;
    }
    if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
      for (const k of Object.keys(v)) stack.push([v as Record<string, unknown>, k, depth + 1]);
      continue;
    }
    throw new DecodeError('frame holds a MessagePack type with no JSON equivalent (extension or timestamp)');
  }
  return holder.root;
}
