import type { StreamRef } from '../engine/engine';
import type { Encoding, OutFrame } from '../protocol/encoding';

/** What the hub needs of a socket; the transport provides it (see transport/uws-server.ts). */
export interface Connection {
  readonly id: string;
  /** The wire encoding negotiated at the upgrade (protocol/encoding.ts). */
  readonly encoding: Encoding;
  /**
   * Writes one frame: SENT, BUFFERED (queued behind backpressure) or DROPPED (not written). A JSON frame (text
   * or UTF-8 bytes) goes out as a text frame on a JSON connection and converted to a binary MessagePack frame on
   * a MessagePack one (this is the egress boundary); Packed bytes go out as they are.
   */
  send(frame: OutFrame): SendStatus;
  bufferedAmount(): number;
  /**
   * Adds the socket to a native topic (TopicPublisher.publish writes to every socket in it). Frames published to a
   * topic and frames sent to the socket reach it in the order of the calls, also across an unsubscribe.
   */
  subscribe(topic: string): void;
  /** Takes the socket out of a native topic; what was published to it before the call is still written. */
  unsubscribe(topic: string): void;
  close(code: number, reason: string): void;
}

/**
 * Writes one frame to every socket in a native topic, in the transport (uWS `app.publish`): no per-socket status and
 * no backpressure check of ours, so the hub admits a socket to a topic only under the conditions in hub.ts.
 */
export interface TopicPublisher {
  publish(topic: string, frame: string | Uint8Array, binary: boolean): void;
}

export const enum SendStatus {
  BUFFERED = 0,
  SENT = 1,
  DROPPED = 2,
}

/** A connection's position in one stream. */
export interface Sub {
  ref: StreamRef;
  epoch: string;
  /** Last offset delivered (or deliberately passed over) to this connection. */
  offset: number;
  /** Where delivery began in this epoch: everything after it up to `offset` was sent (or passed over). */
  start: number;
  /**
   * Offsets of this epoch already sent on this connection that a rewind (`inbox {since}`) must not send again:
   * a catch-up passes over them silently and announces no gap for them.
   */
  hold?: { epoch: string; from: number; to: number };
  /** Live pushes pause while a catch-up from history runs. */
  catchingUp: boolean;
  /** Highest offset that arrived live while paused; a catch-up ends only once it has passed it. */
  seen: number;
  /** Epoch of a live event that arrived while paused, if it differed. */
  seenEpoch?: string;
  /** Bumped by every catch-up; an older catch-up loop that sees a newer generation stops. */
  gen: number;
  /**
   * Set while the connection receives this stream through the stream's native topic (hub.ts): `offset` is then
   * stale, and the sub's position is the topic's (Hub.position reads it).
   */
  native?: { readonly epoch: string; readonly offset: number };
}

const NO_ROOMS: ReadonlyMap<string, Sub> = new Map();

/** One authenticated connection as the hub and the command handlers see it. */
export class Client {
  /** Created at the first join: an idle connection holds no map of its own. */
  private joined?: Map<string, Sub>;
  inbox?: Sub;
  /**
   * While the inbox is being set up: resolves once the connection is live on it (undefined if it never got there).
   * Cleared once it is live (client.inbox is then the live sub); kept when the setup failed.
   */
  inboxReady?: Promise<Sub | undefined>;
  /** Over SLOW_CONSUMER_BYTES: live pushes stop until the socket drains. */
  lagging = false;
  closed = false;
  /** Native topics this connection is in (its subs with `native` set). */
  nativeTopics = 0;

  constructor(
    readonly id: string,
    readonly user: string,
    readonly conn: Connection,
  ) {}

  /** Rooms this connection joined, with its position in each. */
  get rooms(): ReadonlyMap<string, Sub> {
    return this.joined ?? NO_ROOMS;
  }

  addRoom(room: string, sub: Sub): void {
    (this.joined ??= new Map()).set(room, sub);
  }

  dropRoom(room: string): void {
    this.joined?.delete(room);
  }
}
