// The engine: everything that crosses nodes or outlives a connection. Two implementations, MemoryEngine (one
// node, no persistence) and RedisEngine (a cluster of nodes), honour the contract written here; the contract
// suite in test/ runs against both.
import { storedEventParts, type StoredFrameParts } from '../../../../protocol';

/** An offset-numbered event stream: a room's history, or a user's inbox of direct messages. */
export type StreamRef = { kind: 'room'; name: string } | { kind: 'inbox'; name: string };

export interface StoredEvent {
  offset: number;
  /** The complete event frame as JSON text, exactly as clients receive it. */
  frame: string;
}

export interface AppendInput {
  id: string;
  ts: number;
  /** The event frame around its offset and epoch, built by protocol/frames.ts storedEventParts. */
  frame: StoredFrameParts;
  /**
   * Idempotency: a repeated (scope, key) within the dedup window returns the first result and stores nothing.
   * scope is the sender's id for a client's key; the empty scope is reserved for copies keyed by message id.
   */
  dedup?: { scope: string; key: string };
  /** A connection id that should not receive this event live (the sender of a DM). */
  skip?: string;
}

export interface AppendResult {
  offset: number;
  epoch: string;
  id: string;
  ts: number;
  duplicate: boolean;
}

/** A direct message, whose two stored copies the engine builds from these fields. */
export interface DirectMessageInput {
  from: string;
  to: string;
  /** The message id and timestamp the copies get, unless the recipient's copy turns out to be a duplicate. */
  id: string;
  ts: number;
  /** The body as JSON text. */
  body: string;
  /** The sender's idempotency key. */
  key?: string;
  /** Whether the sender's inbox gets a copy (not for a DM from "server"); a DM to oneself has one copy anyway. */
  senderCopy: boolean;
  /** The sender's connection that does not receive the sender's copy live (it gets the reply). */
  skip?: string;
  /** USER_MSG_RATE: when above 0, the DM first counts against `from` as userRate counts a message. */
  rate?: number;
}

export type DirectMessageResult =
  /** The recipient copy's result; delivered = the recipient's live connections on all nodes, after the write. */
  | { limited: false; message: AppendResult; delivered: number }
  /** Over the rate: nothing stored; ms until the user may send again. */
  | { limited: true; waitMs: number };

/** A room message's append counted against its sender's USER_MSG_RATE (appendRated). */
export type RatedAppendResult =
  | { limited: false; message: AppendResult }
  /** Over the rate: nothing stored; ms until the user may send again. */
  | { limited: true; waitMs: number };

/**
 * The stored event parts of a DM copy. The two copies carry the same fields (the recipient's in the order
 * to, id, from, ts; the sender's id, from, to, ts).
 */
export function dmFrameParts(
  copy: 'recipient' | 'sender',
  m: { from: string; to: string; id: string; ts: number; body: string },
): StoredFrameParts {
  const { from, to, id, ts } = m;
  return storedEventParts('dm', copy === 'recipient' ? { to, id, from, ts } : { id, from, to, ts }, m.body);
}

export interface ReadResult {
  /** "" for a stream that holds nothing (never written, or expired): its epoch is created by its first append. */
  epoch: string;
  /** The stream's latest offset (0 when nothing was ever stored in this epoch). */
  top: number;
  /** Ascending by offset. */
  events: StoredEvent[];
}

/** What the bus carries to the nodes subscribed to a stream's channel. */
export type BusMessage =
  | { kind: 'event'; offset: number; epoch: string; ts: number; skip: string; frame: string | Uint8Array }
  | { kind: 'presence'; frame: string | Uint8Array }
  | { kind: 'disconnect' }
  /** Server-side join/leave: every local connection of the user (the stream is its inbox) joins or leaves. */
  | { kind: 'join' | 'leave'; room: string };

export type BusHandler = (channel: string, message: BusMessage) => void;

export interface LocalState {
  /** room -> users with at least one local connection in it */
  rooms: Map<string, Set<string>>;
  /** user -> local connection ids */
  users: Map<string, Set<string>>;
}

/**
 * A revocation: one token by its `jti`, or every token of a user issued before a moment (by `iat`, seconds; a
 * token without `iat` cannot be dated and counts as issued before). Kept until `expiresAt` (ms since epoch),
 * which must not be earlier than the expiry of any token it revokes.
 */
export type Revocation =
  | { kind: 'jti'; jti: string; expiresAt: number }
  | { kind: 'user'; user: string; issuedBefore: number; expiresAt: number };

/** What a revocation check needs of a token. */
export interface TokenRef {
  user: string;
  jti?: string;
  issuedAt?: number;
}

/** Whether `r` revokes the token `t`. */
export function revokes(r: Revocation, t: TokenRef): boolean {
  if (r.kind === 'jti') return t.jti !== undefined && t.jti === r.jti;
  return t.user === r.user && (t.issuedAt === undefined || t.issuedAt < r.issuedBefore);
}

/**
 * A transition the engine observed atomically in its shared state (the Redis scripts' results, or the memory
 * engine's maps): exactly one node observes each one, including the sweep of a crashed node's entries.
 */
export type Activity =
  | { type: 'user.online' | 'user.offline'; user: string }
  | { type: 'room.occupied' | 'room.vacated'; room: string };

/** One recorded webhook event awaiting delivery: `entry` is its queue position, `payload` its JSON text. */
export interface QueuedWebhook {
  entry: string;
  payload: string;
}

/**
 * The cluster-wide webhook queue (a Redis stream with a consumer group, or an in-process list): an event appended
 * once is handed to one consumer at a time until acked; an entry a consumer has not touched for `claimIdleMs`
 * (it crashed) is handed to another. At most `retention` entries are kept: beyond that the oldest go, acked or not.
 */
export interface WebhookQueue {
  append(payload: string): Promise<void>;
  /** Entries idle for claimIdleMs (another consumer's, abandoned) first, then new ones; at most `count`. */
  read(consumer: string, count: number, claimIdleMs: number): Promise<QueuedWebhook[]>;
  /** Resets the idle time of entries this consumer still works on, so that nobody else claims them. */
  touch(consumer: string, entries: string[]): Promise<void>;
  ack(entries: string[]): Promise<void>;
}

export interface Engine {
  readonly kind: 'memory' | 'redis';
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Can serve commands now (Redis reachable). */
  ready(): boolean;
  /** Other live processes started with this node's NODE_ID (0 unless misconfigured); logged loudly meanwhile. */
  sameNodeIdPeers(): number;

  /** The bus channel of a stream; the hub keys its topics by it. */
  channel(stream: StreamRef): string;
  /** Called for every bus message on a subscribed channel, in publish order per channel. Set once. */
  onMessage(handler: BusHandler): void;
  /** Called when the bus may have missed messages (it reconnected): the hub re-reads every stream it serves. */
  onResync(handler: () => void): void;
  /** Resolves once messages published afterwards on the channel will reach onMessage. */
  subscribe(channel: string): Promise<void>;
  unsubscribe(channel: string): Promise<void>;

  /**
   * Stores the event, then publishes it on the stream's channel, atomically: an event is published only if it
   * was stored, offsets increase by one with no gaps, and the bus delivers them in offset order.
   * Rejects (nothing promised) when the store cannot be reached in time.
   */
  append(stream: StreamRef, input: AppendInput): Promise<AppendResult>;
  /**
   * Counts the message against `rate.user` as userRate does (over the rate: stores nothing), then appends it as
   * `append` does. Redis: one round trip on a single Redis or behind Sentinel; under Cluster the counter is in the
   * user's slot, so the count is a call of its own before the append. A perSecond of 0 counts nothing.
   */
  appendRated(
    stream: StreamRef,
    input: AppendInput,
    rate: { user: string; perSecond: number },
  ): Promise<RatedAppendResult>;
  /**
   * Stores a DM whole. First, with `rate`, counts it as userRate does (over the rate: stores nothing). Then the
   * recipient's copy, appended to `to`'s inbox as `append` does, deduplicated on (from, key); then, with
   * senderCopy and from !== to, the sender's copy in `from`'s inbox with the id and ts the recipient's copy got,
   * deduplicated on that id (keyless DMs keep no dedup record). A repeated key within the dedup window answers
   * the recipient copy's first result (duplicate: true) and writes the sender's copy if it is missing. Then reads
   * the recipient's live connections (as connectionCount).
   * Redis: one round trip on a single Redis or behind Sentinel, two when the recipient's copy was a duplicate
   * (the sender's copy, named by the first id, follows). Under Cluster the inboxes are in different slots:
   * the recipient's copy and the count in one call, then the sender's copy, after the rate's own call if any.
   * Rejects when the store cannot be reached in time: nothing promised (the recipient's copy alone, or both, may
   * be stored; a retry with the same key completes the DM).
   */
  dm(input: DirectMessageInput): Promise<DirectMessageResult>;
  /**
   * Events with offset > after, at most `limit`. Reads write nothing: a stream that does not exist answers
   * {epoch: "", top: 0, events: []} and is not created.
   */
  read(stream: StreamRef, after: number, limit: number): Promise<ReadResult>;
  /** The `limit` newest events with offset < before (or the newest when before is undefined), ascending. Writes nothing. */
  readBefore(stream: StreamRef, before: number | undefined, limit: number): Promise<ReadResult>;

  /** Marks `user` present in `room` via this node; publishes a join event when it is the user's first node. */
  presenceAdd(room: string, user: string): Promise<string[]>;
  /** Removes this node's mark; publishes a leave event when no node has the user in the room any more. */
  presenceRemove(room: string, user: string): Promise<void>;
  /** Users present in the room on any live node. */
  presence(room: string): Promise<string[]>;

  connectionAdd(user: string, connId: string, info: Record<string, unknown>): Promise<void>;
  /**
   * Admission under MAX_CONNECTIONS_PER_USER: atomically (one Redis script, so concurrent upgrades on any nodes
   * cannot both take the last place) counts the user's live connections on all nodes (leaving out nodes whose
   * lease lapsed) and, when fewer than `limit`, registers `connId` as connectionAdd does and resolves true; else
   * registers nothing and resolves false. A reservation whose socket never opens must be given back with
   * connectionRemove.
   */
  connectionReserve(
    user: string,
    connId: string,
    limit: number,
    info: Record<string, unknown>,
  ): Promise<boolean>;
  connectionRemove(user: string, connId: string): Promise<void>;
  /** Live connections of the user across all nodes. */
  connectionCount(user: string): Promise<number>;
  /** Asks every node to close the user's connections. */
  disconnectUser(user: string): Promise<void>;
  /** Asks every node to make the user's connections join or leave `room` (server API). */
  roomForUser(user: string, kind: 'join' | 'leave', room: string): Promise<void>;
  /** The user's live connections across all nodes, with what connectionAdd recorded for each. */
  connections(user: string): Promise<{ id: string; info: Record<string, unknown> }[]>;

  /**
   * Stores a revocation for every node until r.expiresAt and tells every node (onRevoked), this one included,
   * within a second. Resolves once it is stored; rejects (UnavailableError) when Redis cannot be reached.
   */
  revoke(r: Revocation): Promise<void>;
  /**
   * Whether the token is revoked, from this node's in-memory copy of the denylist: no I/O. The copy is loaded
   * before ready() first turns true, kept in step by the bus, and loaded again whenever the bus reconnects.
   * Expired entries are dropped.
   */
  isRevoked(token: TokenRef): boolean;
  /**
   * Called for every revocation this node learns of (its own, a peer's, or found by a reload) that revokes more
   * than what it held before (a repeat is not reported again). Set once.
   */
  onRevoked(handler: (r: Revocation) => void): void;

  /** Counts one message of the user against USER_MSG_RATE; returns 0, or ms until the user may send again. */
  userRate(user: string, perSecond: number): Promise<number>;

  /**
   * Heartbeat, every PRESENCE_TTL_MS / 4: renews this node's lease (O(1), not per connection). A node whose lease
   * lapses (it crashed) is swept by a live node: its presence entries (with leave events) and connection entries
   * go, within PRESENCE_TTL_MS plus one beat. `local` is read only if this node must register itself again.
   */
  heartbeat(local: () => LocalState): Promise<void>;
  /** Removes every entry this node holds (graceful shutdown). */
  removeNode(): Promise<void>;

  /** Called with each transition this node observed (for webhooks). Set once; must not throw. */
  onActivity(handler: (activity: Activity) => void): void;
  /** The webhook queue, on the engine's storage (Redis: the cluster's one stream; memory: a new in-process list). */
  webhookQueue(retention: number): WebhookQueue;
}

export class UnavailableError extends Error {}
