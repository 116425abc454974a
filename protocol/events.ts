// Server -> client events (frames with a `type` and no `re`). Servers may add fields and event types; a reader
// ignores the ones it does not know, so every type here describes the fields a reader may rely on.

export interface WelcomeFrame {
  type: 'welcome';
  user: string;
  node: string;
  session: string;
  protocol: number;
  /** Token expiry in ms since epoch, or null for a token without `exp`. */
  expiresAt: number | null;
  /** What the connect hook attached to the connection, when it did (docs/INTEGRATION.md). */
  info?: unknown;
  /**
   * Where the connection's inbox starts: every DM after `offset` in `epoch` follows, once and in order (a `gap`
   * event first for what is no longer kept). `recovered` only when the client gave its position (`?inbox=`).
   * Absent on servers that predate it (the client then sends `inbox {since}`).
   */
  inbox?: { offset: number; epoch: string; recovered?: boolean };
}

export interface MessageEvent<B = unknown> {
  type: 'message';
  room: string;
  offset: number;
  epoch: string;
  id: string;
  from: string;
  ts: number;
  body: B;
}

export interface DirectMessageEvent<B = unknown> {
  type: 'dm';
  offset: number;
  epoch: string;
  id: string;
  from: string;
  to: string;
  ts: number;
  body: B;
}

/**
 * Presence changes of a room, coalesced by the server over PRESENCE_BATCH_MS: who joined and who left (a user's
 * last change only). A frame with exactly one change also has `event` and `user`.
 */
export interface PresenceEvent {
  type: 'presence';
  room: string;
  joined?: string[];
  left?: string[];
  event?: 'join' | 'leave';
  user?: string;
}

/** Events from..to were lost; `to` is null when the whole history was reset (a new epoch). */
export interface GapEvent {
  type: 'gap';
  room?: string;
  inbox?: true;
  from: number;
  to: number | null;
  epoch: string;
}

export interface ReconnectEvent {
  type: 'reconnect';
  reason: string;
}

/**
 * Rooms the connection left without asking: `reason` 'token' (a refreshed token's `rooms` claim no longer allows
 * them) or 'server' (the server API made the user leave).
 */
export interface LeftEvent {
  type: 'left';
  rooms: string[];
  reason: string;
}

/** The server API made this connection join a room; it is then a member as after its own `join`. */
export interface JoinedEvent {
  type: 'joined';
  room: string;
  by: 'server';
  presence: string[];
  offset: number;
  epoch: string;
}

export type ServerEvent =
  | WelcomeFrame
  | MessageEvent
  | DirectMessageEvent
  | PresenceEvent
  | GapEvent
  | ReconnectEvent
  | LeftEvent
  | JoinedEvent;

export type EventType = ServerEvent['type'];
