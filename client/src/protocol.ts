// The wire types of protocol v1 come from the shared protocol module (protocol/ at the repo root), the one the
// gateway and the page use too; this file adds only what the SDK puts on top of them.
import type { DirectMessageReply, PublishReply } from '../../protocol';

export type {
  Command,
  CommandType,
  DirectMessageEvent,
  DirectMessageReply,
  GapEvent,
  HistoryResult,
  InboxResult,
  JoinResult,
  LeaveResult,
  LeftEvent,
  MessageEvent,
  PingResult,
  PresenceEvent,
  PresenceResult,
  PublishReply,
  ReconnectEvent,
  RefreshResult,
  ReplyFrame,
  ResultMap,
  ServerEvent,
  Since,
  WelcomeFrame,
  WireError,
} from '../../protocol';

export interface PublishResult extends PublishReply {
  /** The idempotency key the publish was sent with (generated when the caller gave none). */
  key: string;
}

export interface DirectMessageResult extends DirectMessageReply {
  /** The idempotency key the DM was sent with (generated when the caller gave none). */
  key: string;
}
