// Wire types for protocol v1 (docs/PROTOCOL.md). Servers may add fields and event types; the client ignores the
// ones it does not know, so every type here describes the fields we read, not a closed set.

export interface Since {
  offset: number;
  /** Omitted means "the current epoch". */
  epoch?: string;
}

export interface WelcomeFrame {
  type: 'welcome';
  user: string;
  node: string;
  session: string;
  protocol: number;
  /** Token expiry in ms since epoch, or null for a token without `exp`. */
  expiresAt: number | null;
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

export interface GapEvent {
  type: 'gap';
  room?: string;
  inbox?: true;
  from: number;
  /** null: the history was reset (a new epoch); offsets restart at 1. */
  to: number | null;
  epoch: string;
}

export interface ReconnectEvent {
  type: 'reconnect';
  reason: string;
}

export type ServerEvent = MessageEvent | DirectMessageEvent | PresenceEvent | GapEvent | ReconnectEvent;

export interface WireError {
  code: string;
  message: string;
  retryable?: boolean;
  retryAfterMs?: number;
}

export type ReplyFrame =
  | ({ re: number | null; ok: true } & Record<string, unknown>)
  | { re: number | null; ok: false; error: WireError };

// Commands, without the `id` the client assigns.
export type Command =
  | { type: 'join'; room: string; since?: Since }
  | { type: 'leave'; room: string }
  | { type: 'publish'; room: string; body: unknown; key?: string }
  | { type: 'dm'; to: string; body: unknown; key?: string }
  | { type: 'presence'; room: string }
  | { type: 'history'; room: string; limit?: number; before?: number }
  | { type: 'inbox'; since?: Since }
  | { type: 'refresh'; token: string }
  | { type: 'ping' };

export interface JoinResult {
  room: string;
  presence: string[];
  offset: number;
  epoch: string;
  /** Present only when the join carried `since`. */
  recovered?: boolean;
}

export interface LeaveResult {
  room: string;
}

export interface PublishResult {
  id: string;
  offset: number;
  epoch: string;
  ts: number;
  duplicate: boolean;
  /** The idempotency key the publish was sent with (generated when the caller gave none). */
  key: string;
}

export interface DirectMessageResult {
  id: string;
  offset: number;
  epoch: string;
  ts: number;
  delivered: number;
  live: boolean;
  stored: boolean;
  duplicate: boolean;
  key: string;
}

export interface PresenceResult {
  room: string;
  presence: string[];
}

export interface HistoryResult<B = unknown> {
  room: string;
  messages: MessageEvent<B>[];
  offset: number;
  epoch: string;
}

export interface InboxResult {
  offset: number;
  epoch: string;
  recovered?: boolean;
}

export interface RefreshResult {
  expiresAt: number | null;
}

export interface PingResult {
  pong: true;
  ts: number;
}

/** Result type per command type. */
export interface ResultMap {
  join: JoinResult;
  leave: LeaveResult;
  publish: Omit<PublishResult, 'key'>;
  dm: Omit<DirectMessageResult, 'key'>;
  presence: PresenceResult;
  history: HistoryResult;
  inbox: InboxResult;
  refresh: RefreshResult;
  ping: PingResult;
}

export const CLOSE_NORMAL = 1000;
export const CLOSE_GOING_AWAY = 1001;
export const CLOSE_TOKEN_EXPIRED = 4001;
export const CLOSE_KICKED = 4003;
export const CLOSE_TOKEN_REVOKED = 4004;
export const CLOSE_TOO_MANY_CONNECTIONS = 4029;

/** Rooms the connection left because a refreshed token's `rooms` claim no longer allows them. */
export interface LeftEvent {
  type: 'left';
  rooms: string[];
  reason: string;
}
