// What the session handlers share: the per-connection state, the narrow context they run in, and their result type.
import type { Config } from '../config';
import type { Engine } from '../engine/engine';
import type { Client } from '../hub/client';
import type { Hub } from '../hub/hub';
import type { PresenceMarks } from '../hub/presence-marks';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { Identity } from '../auth/tokens';
import type { Hooks } from '../hooks/hooks';
import type { CommandType, ResultMap } from '../../../../protocol';
import type { ByteBudget, TokenBucket, Violations } from './limits';

export interface Session {
  client: Client;
  identity: Identity;
  /** Created at the first command (an idle connection never needs one). */
  bucket?: TokenBucket;
  violations: Violations;
  /** Commands received and not yet answered. */
  inflight: number;
  replyBudget: ByteBudget;
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

/** A reply may carry work that must run right after the reply is written (JSON.stringify skips symbols). */
export const AFTER_REPLY = Symbol('afterReply');
/** A reply may carry stored frames, spliced into it as stored: `{name, frames}`. */
export const FRAMES = Symbol('frames');
/**
 * What a handler returns: the command's result (docs/PROTOCOL.md), optionally with work to run right after the
 * reply is written; a history result carries its messages as stored frames, spliced into the reply unparsed.
 */
export type Reply<T extends CommandType> = (T extends 'history'
  ? Omit<ResultMap[T], 'messages'> & { [FRAMES]: { name: 'messages'; frames: string[] } }
  : ResultMap[T]) & { [AFTER_REPLY]?: () => void };
