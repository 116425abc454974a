// The SDK's side of the two wire encodings (docs/PROTOCOL.md, "Encodings"). JSON: text frames. MessagePack:
// binary frames of plain MessagePack (no msgpackr records or extensions), so any MessagePack library can speak it.
import { Packr, Unpackr } from 'msgpackr';

export type Encoding = 'json' | 'msgpack';

/** The Sec-WebSocket-Protocol entry that selects each encoding. */
export const SUBPROTOCOLS: Record<Encoding, string> = {
  json: 'relaychat.v1.json',
  msgpack: 'relaychat.v1.msgpack',
};

/** A token travels as `relaychat.token.<jwt>` in Sec-WebSocket-Protocol; the server never echoes it. */
export const TOKEN_SUBPROTOCOL_PREFIX = 'relaychat.token.';

/** HTTP token characters (RFC 9110 tchar): what a subprotocol entry may hold. A JWT fits; `=` padding does not. */
const TCHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function tokenFitsSubprotocol(token: string): boolean {
  return TCHARS.test(token);
}

const packr = new Packr({
  useRecords: false,
  moreTypes: false,
  bundleStrings: false,
  structuredClone: false,
  encodeUndefinedAsNil: true,
});
const unpackr = new Unpackr({
  useRecords: false,
  moreTypes: false,
  bundleStrings: false,
  structuredClone: false,
  mapsAsObjects: true,
  int64AsType: 'number',
});

export function encodeCommand(encoding: Encoding, cmd: Record<string, unknown>): string | Uint8Array {
  return encoding === 'json' ? JSON.stringify(cmd) : packr.pack(cmd);
}

/** One incoming frame as a value, or undefined when it is not a frame of this encoding (ignored). */
export function decodeFrame(encoding: Encoding, data: unknown): unknown {
  try {
    if (encoding === 'json') return typeof data === 'string' ? (JSON.parse(data) as unknown) : undefined;
    if (data instanceof Uint8Array) return unpackr.unpack(data);
    if (data instanceof ArrayBuffer) return unpackr.unpack(new Uint8Array(data));
    return undefined;
  } catch {
    return undefined;
  }
}
