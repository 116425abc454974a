// What the session handlers share: the per-connection state, the narrow context they run in, and their result type.
import type { Config } from '../config';
import type { Engine } from '../engine/engine';
import { Client, type Connection } from '../hub/client';
import type { Hub } from '../hub/hub';
import type { PresenceMarks } from '../hub/presence-marks';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { Identity } from '../auth/tokens';
import type { Hooks } from '../hooks/hooks';
import type { CommandType, ResultMap } from '../../../../protocol';
import type { ByteBudget, TokenBucket, Violations } from './limits';

/**
 * One connection's session: the hub's Client (its rooms, inbox and lag state) and what the session layer keeps per
 * connection, in one object (an idle connection holds no separate record).
 */
export class Session extends Client {
  /** Created at the first command (an idle connection never needs one). */
  bucket?: TokenBucket = undefined;
  /** Created at the first violation. */
  violations?: Violations = undefined;
  /** Commands received and not yet answered. */
  inflight = 0;
  /** Created at the first heavy command or replay (an idle connection never needs one). */
  replyBudget?: ByteBudget = undefined;

  constructor(
    conn: Connection,
    public identity: Identity,
  ) {
    super(conn.id, identity.user, conn);
  }

  /** The connection as the hub sees it: the session itself. */
  get client(): Client {
    return this;
  }
}

/** What a command handler may use of the node; the handlers never see the Gateway itself. */
export interface SessionContext {
  readonly config: Readonly<Config>;
  readonly engine: Engine;
  readonly hub: Hub;
  readonly metrics: Metrics;
  readonly log: Logger;
  readonly hooks: Hooks;
  readonly marks: PresenceMarks;
  /** The connection's one egress (the hub's): replies and session events. */
  send(client: Client, frame: string, type: string): void;
  /** Told about every room message stored (not a duplicate), from a client or the server API. */
  readonly onRoomMessage?: (room: string, message: Record<string, unknown>) => void;
}

/** A command's result fields as a handler builds them: a history result carries its messages apart, as frames. */
export type ReplyFields<T extends CommandType> = T extends 'history'
  ? Omit<ResultMap[T], 'messages'>
  : ResultMap[T];

/**
 * What a command handler returns: the reply's fields (docs/PROTOCOL.md); optionally stored frames spliced into
 * the reply unparsed as the array field `name` (history's `messages`); and optionally work to run right after the
 * reply is written (a join's replay, an inbox rewind, a refresh's `left` event).
 */
export interface Handled<T extends CommandType> {
  reply: ReplyFields<T>;
  frames?: { name: string; frames: string[] };
  after?: () => void;
}
