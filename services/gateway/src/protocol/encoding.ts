// The two wire encodings and the conversions at the egress and ingress boundaries. Frames inside the node (built
// replies, bus events, stored history) are JSON text; a MessagePack connection gets each frame converted once
// (the hub reuses one conversion per bus message for all MessagePack subscribers), and its binary frames are
// decoded into the same plain values JSON.parse gives, so one validator (protocol/commands.ts at the repo root) serves both.
//
// Binary values: JSON has none, so a MessagePack `bin` is carried inside the node as `{"$bin":"<base64>"}` (an
// object whose only key is `$bin`, a string). Going out to a MessagePack connection every such object becomes
// `bin` again. Whoever writes that marker in JSON is therefore seen as binary by MessagePack clients.
import { Packr } from 'msgpackr';
import type { Encoding } from '../../../../protocol';

// The names both sides agree on (subprotocols, the token carrier, negotiation) are the shared protocol module's.
export {
  chooseEncoding,
  subprotocols,
  SUBPROTOCOLS,
  TOKEN_SUBPROTOCOL_PREFIX,
  type Encoding,
} from '../../../../protocol';

/** Plain MessagePack only: no records, bundled strings, structured clone or other msgpackr extensions. */
const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  bundleStrings: false,
  structuredClone: false,
  encodeUndefinedAsNil: true,
  int64AsType: 'number',
});

const BIN_KEY = '"$bin"';

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

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Decodes one MessagePack frame into the plain value JSON.parse would give for the same command: objects with
 * string keys, arrays, strings, finite numbers, booleans, null, and `bin` as `{"$bin":"<base64>"}`. A strict
 * decoder of our own, not msgpackr's: msgpackr's unpacker honours its record, bundled-string and reference
 * extensions on input and keeps record definitions across calls, which would let one client's frame change how
 * another's decodes. Anything that is not plain MessagePack throws DecodeError: extension types (timestamps
 * included), the reserved byte 0xc1, non-string map keys, invalid UTF-8, non-finite floats, a length past the end,
 * trailing bytes, and nesting deeper than `maxDepth` levels of objects and arrays (checked before descending, so
 * the recursion is bounded by it).
 */
export function decodeMsgpack(bytes: Uint8Array, maxDepth: number): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = bytes.byteLength;
  let pos = 0;
  const need = (n: number): number => {
    if (n > end - pos) throw new DecodeError('frame is not valid MessagePack: a length runs past the end');
    const at = pos;
    pos += n;
    return at;
  };
  const str = (n: number): string => {
    const at = need(n);
    try {
      return utf8.decode(bytes.subarray(at, at + n));
    } catch {
      throw new DecodeError('frame is not valid MessagePack: a str is not UTF-8');
    }
  };
  const bin = (n: number) => {
    const at = need(n);
    return { $bin: Buffer.from(bytes.buffer, bytes.byteOffset + at, n).toString('base64') };
  };
  const finite = (x: number): number => {
    if (!Number.isFinite(x)) throw new DecodeError('numbers must be finite');
    return x;
  };
  const container = (n: number, depth: number): void => {
    if (depth >= maxDepth) throw new DecodeError(`frame is nested deeper than ${maxDepth} levels`);
    // Every item takes at least one byte: a count beyond what is left is a lie, refused before allocating.
    if (n > end - pos) throw new DecodeError('frame is not valid MessagePack: a length runs past the end');
  };
  const array = (n: number, depth: number): unknown[] => {
    container(n, depth);
    const out = new Array<unknown>(n);
    for (let i = 0; i < n; i++) out[i] = value(depth + 1);
    return out;
  };
  const map = (n: number, depth: number): Record<string, unknown> => {
    container(n * 2, depth);
    const out: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const t = bytes[pos];
      let key: string;
      if (t !== undefined && t >= 0xa0 && t <= 0xbf) {
        pos++;
        key = str(t & 0x1f);
      } else if (t === 0xd9) key = (pos++, str(view.getUint8(need(1))));
      else if (t === 0xda) key = (pos++, str(view.getUint16(need(2))));
      else if (t === 0xdb) key = (pos++, str(view.getUint32(need(4))));
      else throw new DecodeError('map keys must be strings');
      // defineProperty: a key "__proto__" is an ordinary key, never the prototype.
      Object.defineProperty(out, key, {
        value: value(depth + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  };
  const value = (depth: number): unknown => {
    const t = view.getUint8(need(1));
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if (t <= 0x8f) return map(t & 0x0f, depth);
    if (t <= 0x9f) return array(t & 0x0f, depth);
    if (t <= 0xbf) return str(t & 0x1f);
    switch (t) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return bin(view.getUint8(need(1)));
      case 0xc5:
        return bin(view.getUint16(need(2)));
      case 0xc6:
        return bin(view.getUint32(need(4)));
      case 0xca:
        return finite(view.getFloat32(need(4)));
      case 0xcb:
        return finite(view.getFloat64(need(8)));
      case 0xcc:
        return view.getUint8(need(1));
      case 0xcd:
        return view.getUint16(need(2));
      case 0xce:
        return view.getUint32(need(4));
      case 0xcf:
        return Number(view.getBigUint64(need(8)));
      case 0xd0:
        return view.getInt8(need(1));
      case 0xd1:
        return view.getInt16(need(2));
      case 0xd2:
        return view.getInt32(need(4));
      case 0xd3:
        return Number(view.getBigInt64(need(8)));
      case 0xd9:
        return str(view.getUint8(need(1)));
      case 0xda:
        return str(view.getUint16(need(2)));
      case 0xdb:
        return str(view.getUint32(need(4)));
      case 0xdc:
        return array(view.getUint16(need(2)), depth);
      case 0xdd:
        return array(view.getUint32(need(4)), depth);
      case 0xde:
        return map(view.getUint16(need(2)), depth);
      case 0xdf:
        return map(view.getUint32(need(4)), depth);
      case 0xc1:
        throw new DecodeError('frame is not valid MessagePack: 0xc1 is never used');
      default:
        // 0xc7-0xc9 and 0xd4-0xd8: extension types (timestamps, msgpackr records and the like).
        throw new DecodeError('frame holds a MessagePack extension type; only plain MessagePack is accepted');
    }
  };
  const root = value(0);
  if (pos !== end) throw new DecodeError('frame is not valid MessagePack: bytes after the value');
  return root;
}
