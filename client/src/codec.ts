// The SDK's side of the two wire encodings (docs/PROTOCOL.md, "Encodings"). JSON: text frames. MessagePack:
// binary frames of plain MessagePack (no msgpackr records or extensions), so any MessagePack library can speak it.
import { Packr, Unpackr } from 'msgpackr';

import type { Encoding } from '../../protocol';

// The names both sides agree on (subprotocols, the token carrier) are the shared protocol module's.
export { SUBPROTOCOLS, TOKEN_SUBPROTOCOL_PREFIX, tokenFitsSubprotocol, type Encoding } from '../../protocol';

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
