// The server API's message handlers (publish, dm, history) and its validation, next to the routes that call them
// (http/api.ts). They store through the session layer's own store-then-fan-out, so a message sent through the API
// is the same as one sent on a socket.
import type { Config } from '../config';
import type { Engine } from '../engine/engine';
import {
  MAX_USER_LENGTH,
  ProtocolError,
  RawJson,
  validateCommand,
  validUserId,
  type DirectMessageReply,
  type HistoryResult,
  type ParsedCommand,
  type PublishReply,
} from '../../../../protocol';
import { dmReply, store } from '../session/messages';
import { newMessageId } from '../session/ids';
import type { ServerApi } from './api';

/** What the API handlers need of the node. */
export interface ApiContext {
  readonly config: Readonly<Config>;
  readonly engine: Engine;
  /** Told about every room message stored (not a duplicate). */
  readonly onRoomMessage?: (room: string, message: Record<string, unknown>) => void;
}

export function createApiHandlers(
  ctx: ApiContext,
): Pick<ServerApi, 'validate' | 'validUser' | 'publish' | 'dm' | 'history'> {
  return {
    validate: (command) => validate(ctx, command),
    validUser,
    publish: (room, body, key, from) => apiPublish(ctx, room, body, key, from),
    dm: (to, body, key, from) => apiDm(ctx, to, body, key, from),
    history: (room, limit, before) => apiHistory(ctx, room, limit, before),
  };
}

/** Server API validation: the socket command's own parser and limits, so both answer the same errors. */
export function validate(ctx: ApiContext, command: Record<string, unknown>): ParsedCommand {
  // The decoded value is checked as it is (depth before any JSON.stringify of it): no text round trip.
  return validateCommand({ ...command, id: 0 }, ctx.config.limits);
}

export function validUser(user: unknown, field = 'user'): string {
  if (!validUserId(user))
    throw new ProtocolError('bad_request', `${field} must be a user id of 1-${MAX_USER_LENGTH} characters`);
  return user;
}

/** Server API publish (validated JSON body text): the same store-then-fan-out as a client publish. */
export async function apiPublish(
  ctx: ApiContext,
  room: string,
  body: string,
  key: string | undefined,
  from: string,
): Promise<PublishReply> {
  return store(ctx, room, from, body, key);
}

/** Server API DM, as `from` (a user: its other connections get the sender's copy) or as "server". */
export async function apiDm(
  ctx: ApiContext,
  to: string,
  body: string,
  key: string | undefined,
  from: string,
): Promise<DirectMessageReply> {
  const result = await ctx.engine.dm({
    from,
    to,
    id: newMessageId(),
    ts: Date.now(),
    body,
    key,
    senderCopy: from !== 'server',
  });
  // The API is not rate limited: no rate is given, so the engine never answers `limited`.
  if (result.limited) throw new Error('a DM without a rate was rate limited');
  return dmReply(result);
}

export async function apiHistory(
  ctx: ApiContext,
  room: string,
  limit: number,
  before?: number,
): Promise<Omit<HistoryResult, 'messages'> & { messages: RawJson[] }> {
  const page = await ctx.engine.readBefore({ kind: 'room', name: room }, before, limit);
  return {
    room,
    offset: page.top,
    epoch: page.epoch,
    // Stored frames go out as stored (never parsed and serialized again; see routes' JSON writer).
    messages: page.events.map((e) => new RawJson(e.frame)),
  };
}
