// Redis key and channel layout. Every key of a room shares the hash tag {r:<room>} with the room's channel, and
// every key of a user the tag {u:<user>}, so under Redis Cluster a room's store-and-publish runs on one shard
// and sharded pub/sub (SPUBLISH) keeps a room's traffic on that shard.
//
// Unambiguous: every part that comes from outside (room names, user ids, idempotency keys, node ids) is passed
// through part(), which percent-encodes '%' and the characters the layout itself uses (':' between parts, '{'
// and '}' around the hash tag, '|' inside members). Two different inputs therefore never share a key, and a part
// can never open or close a hash tag: a tag is exactly {r:<room>} or {u:<user>}. Parts without those characters
// are written as they are, so the keys of ordinary names did not change.
import type { StreamRef } from './engine';

/** Lone UTF-16 surrogates: Redis gets keys as UTF-8, where each would become the same U+FFFD. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/**
 * Injective, even after UTF-8 encoding, and free of ':', '{', '}' and '|': '%' and those become %25, %3A, %7B,
 * %7D, %7C, and a lone surrogate %uD800 (its code unit).
 */
export function part(s: string): string {
  let out = /[%:{}|]/.test(s)
    ? s.replace(/[%:{}|]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
    : s;
  if (/[\ud800-\udfff]/.test(out))
    out = out.replace(LONE_SURROGATE, (c) => `%u${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return out;
}

export class Keys {
  constructor(private readonly prefix: string) {}

  private tag(ref: StreamRef): string {
    return `${this.prefix}:{${ref.kind === 'room' ? 'r' : 'u'}:${part(ref.name)}}`;
  }

  /** The pub/sub channel: room messages and presence events, or a user's DMs and control messages. */
  channel(ref: StreamRef): string {
    return this.tag(ref);
  }
  /** Hash: e = epoch, o = latest offset. */
  meta(ref: StreamRef): string {
    return `${this.tag(ref)}:m`;
  }
  /** Stream of stored event frames; entry id = <offset>-0. */
  history(ref: StreamRef): string {
    return `${this.tag(ref)}:h`;
  }
  /**
   * The dedup record of one stored event: (scope, key) for a client's idempotency key, where scope is the
   * sender (never empty); an empty scope holds the copies written under a message id (a DM's sender copy).
   */
  dedup(ref: StreamRef, scope: string, key: string): string {
    return `${this.tag(ref)}:d:${part(scope)}:${part(key)}`;
  }
  /** Zset of "<user>|<node>", score = when added (ms). */
  presence(room: string): string {
    return `${this.tag({ kind: 'room', name: room })}:p`;
  }
  /** Hash user -> number of live nodes that have the user in the room. */
  presenceUsers(room: string): string {
    return `${this.tag({ kind: 'room', name: room })}:pu`;
  }
  /** Zset of "<node>|<connection>", score = when added (ms). */
  connections(user: string): string {
    return `${this.tag({ kind: 'inbox', name: user })}:c`;
  }
  /** Hash connection -> session JSON (node, connectedAt). */
  sessions(user: string): string {
    return `${this.tag({ kind: 'inbox', name: user })}:s`;
  }
  rate(user: string): string {
    return `${this.tag({ kind: 'inbox', name: user })}:rl`;
  }
  /** The revocation channel: every node subscribes it for the life of the process. */
  revocations(): string {
    return `${this.prefix}:{revoked}`;
  }
  /** Zset of "j:<jti>" / "u:<user>", score = when the revocation may be forgotten (ms). */
  revokedExpiry(): string {
    return `${this.prefix}:{revoked}:x`;
  }
  /** Hash "u:<user>" -> issuedBefore (seconds): the user's tokens with an earlier `iat` are revoked. */
  revokedUsers(): string {
    return `${this.prefix}:{revoked}:u`;
  }
  /**
   * Zset of node instances ("<NODE_ID>#<random>", one per process), score = last heartbeat (ms): an instance
   * whose score is older than PRESENCE_TTL_MS is dead.
   */
  nodes(): string {
    return `${this.prefix}:nodes`;
  }
  /** Set of the entries a node instance wrote (JSON ["p", room, user] / ["c", user, connection]), for its sweep. */
  nodeIndex(node: string): string {
    return `${this.prefix}:node:${part(node)}:idx`;
  }
  /** Stream of recorded webhook events, read by the consumer group `gateway`. */
  webhooks(): string {
    return `${this.prefix}:webhooks`;
  }
  /** Claimed by the node that sweeps a dead node, so one does it. */
  sweepClaim(node: string): string {
    return `${this.prefix}:node:${part(node)}:sweep`;
  }
}
