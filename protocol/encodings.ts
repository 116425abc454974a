// The two wire encodings and how a connection picks one (docs/PROTOCOL.md, "Encodings"): the Sec-WebSocket-Protocol
// entries, the token carried beside them, and the negotiation. The codecs themselves live with each side
// (services/gateway/src/protocol/encoding.ts, client/src/codec.ts); these are the names both must agree on.

export type Encoding = 'json' | 'msgpack';

/** The Sec-WebSocket-Protocol entry that selects each encoding. */
export const SUBPROTOCOLS: Readonly<Record<Encoding, string>> = Object.freeze({
  json: 'relaychat.v1.json',
  msgpack: 'relaychat.v1.msgpack',
});

/** A token carried in Sec-WebSocket-Protocol: `relaychat.token.<jwt>` (the server never echoes it back). */
export const TOKEN_SUBPROTOCOL_PREFIX = 'relaychat.token.';

/** HTTP token characters (RFC 9110 tchar): what a subprotocol entry may hold. A JWT fits; `=` padding does not. */
const TCHARS = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

export function tokenFitsSubprotocol(token: string): boolean {
  return TCHARS.test(token);
}

/** Picks the encoding from the offered subprotocols (client order); JSON when none of ours is offered. */
export function chooseEncoding(offered: readonly string[]): { encoding: Encoding; echo: string } {
  for (const p of offered) {
    if (p === SUBPROTOCOLS.json) return { encoding: 'json', echo: p };
    if (p === SUBPROTOCOLS.msgpack) return { encoding: 'msgpack', echo: p };
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
