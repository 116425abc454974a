// Server -> client replies: one per command, `{re, ok: true, ...result}` or `{re, ok: false, error}`. The gateway's
// handlers return these result types, and the SDK resolves commands with them.
import type { CommandType } from './commands';
import type { ErrorCode } from './errors';
import type { MessageEvent } from './events';

export interface WireError {
  /** An ErrorCode, or (from a newer server) a code this side does not know. */
  code: ErrorCode | (string & {});
  message: string;
  retryable?: boolean;
  retryAfterMs?: number;
}

export type ReplyFrame =
  | ({ re: number | null; ok: true } & Record<string, unknown>)
  | { re: number | null; ok: false; error: WireError };

export interface JoinResult {
  room: string;
  /** At most PRESENCE_REPLY_MAX user ids. */
  presence: string[];
  /** How many users are present in all. */
  total?: number;
  offset: number;
  epoch: string;
  /** Present only when the join carried `since`. */
  recovered?: boolean;
}

export interface LeaveResult {
  room: string;
}

/** What the gateway answers a publish (and a server API publish) with. */
export interface PublishReply {
  id: string;
  offset: number;
  epoch: string;
  ts: number;
  duplicate: boolean;
}

export interface DirectMessageReply extends PublishReply {
  /** Live connections of the recipient when the DM was stored. */
  delivered: number;
  live: boolean;
  stored: boolean;
}

export interface PresenceResult {
  room: string;
  /** At most PRESENCE_REPLY_MAX user ids. */
  presence: string[];
  /** How many users are present in all. */
  total?: number;
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

/** The result of each command type, as the gateway sends it. */
export interface ResultMap {
  join: JoinResult;
  leave: LeaveResult;
  publish: PublishReply;
  dm: DirectMessageReply;
  presence: PresenceResult;
  history: HistoryResult;
  inbox: InboxResult;
  refresh: RefreshResult;
  ping: PingResult;
}

export type Result<T extends CommandType = CommandType> = ResultMap[T];
