// Redis key and channel layout. Every key of a room shares the hash tag {r:<room>} with the room's channel, and
// every key of a user the tag {u:<user>}, so under Redis Cluster a room's store-and-publish runs on one shard
// and sharded pub/sub (SPUBLISH) keeps a room's traffic on that shard.
import type { StreamRef } from './engine';

export class Keys {
  constructor(private readonly prefix: string) {}

  private tag(ref: StreamRef): string {
    return `${this.prefix}:{${ref.kind === 'room' ? 'r' : 'u'}:${ref.name}}`;
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
  dedup(ref: StreamRef, scope: string, key: string): string {
    return `${this.tag(ref)}:d:${scope}:${key}`;
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
  /** Zset of node ids, score = last heartbeat (ms): a node whose score is older than PRESENCE_TTL_MS is dead. */
  nodes(): string {
    return `${this.prefix}:nodes`;
  }
  /** Set of the entries a node wrote (JSON ["p", room, user] / ["c", user, connection]), for its sweep. */
  nodeIndex(node: string): string {
    return `${this.prefix}:node:${node}:idx`;
  }
  /** Claimed by the node that sweeps a dead node, so one does it. */
  sweepClaim(node: string): string {
    return `${this.prefix}:node:${node}:sweep`;
  }
}
