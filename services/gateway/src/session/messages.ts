// Messages: publish to a room (store, then fan out) and direct messages (both copies in one engine call).
import type { AppendInput, AppendResult, DirectMessageResult } from '../engine/engine';
import {
  ProtocolError,
  storedEventParts,
  type DirectMessageReply,
  type PublishReply,
} from '../../../../protocol';
import type { Handled, Session, SessionContext } from './context';
import { newMessageId } from './ids';

/** The per-user message rate across nodes (USER_MSG_RATE); throws rate_limited when it is spent. */
export async function userRate(ctx: SessionContext, user: string): Promise<void> {
  if (ctx.config.limits.userMsgRate === 0) return;
  const wait = await ctx.engine.userRate(user, ctx.config.limits.userMsgRate);
  if (wait > 0) userLimited(ctx, wait);
}

function userLimited(ctx: SessionContext, waitMs: number): never {
  ctx.metrics.rateLimited.inc({ scope: 'user' });
  throw new ProtocolError('rate_limited', 'too many messages from this user', waitMs);
}

export async function publish(
  ctx: SessionContext,
  session: Session,
  room: string,
  body: string,
  key?: string,
): Promise<Handled<'publish'>> {
  const { client } = session;
  if (!client.rooms.has(room)) throw new ProtocolError('not_member', `join ${room} before publishing`);
  // The rate rides in the append's own Redis call, unless a publish hook must be spared what is over the rate.
  const hooked = ctx.hooks.publish !== undefined;
  if (hooked) await userRate(ctx, client.user);
  if (ctx.hooks.publish) {
    const decision = await ctx.hooks.publish({ user: client.user, room, conn: client.id, body });
    if (decision.kind === 'deny') throw new ProtocolError('rejected', decision.reason);
    if (decision.kind === 'unavailable')
      throw new ProtocolError('unavailable', 'the publish hook is unavailable, retry');
    if (decision.body !== undefined) body = decision.body;
  }
  const outcome = await ctx.engine.appendRated(
    { kind: 'room', name: room },
    roomMessage(room, client.user, body, key),
    { user: client.user, perSecond: hooked ? 0 : ctx.config.limits.userMsgRate },
  );
  if (outcome.limited) userLimited(ctx, outcome.waitMs);
  return { reply: published(ctx, room, client.user, body, outcome.message) };
}

/** Stores and fans out one room message, outside any rate: the server API's publish. */
export async function store(
  ctx: Pick<SessionContext, 'engine' | 'onRoomMessage'>,
  room: string,
  from: string,
  body: string,
  key?: string,
): Promise<PublishReply> {
  const result = await ctx.engine.append({ kind: 'room', name: room }, roomMessage(room, from, body, key));
  return published(ctx, room, from, body, result);
}

/** A room message as stored: a new id and timestamp, its frame, deduplicated on (sender, key). */
function roomMessage(room: string, from: string, body: string, key?: string): AppendInput {
  const id = newMessageId();
  const ts = Date.now();
  return {
    id,
    ts,
    frame: storedEventParts('message', { room, id, from, ts }, body),
    dedup: key ? { scope: from, key } : undefined,
  };
}

/** The reply to a stored room message; a new one (not a duplicate) is told to onRoomMessage. */
function published(
  ctx: Pick<SessionContext, 'onRoomMessage'>,
  room: string,
  from: string,
  body: string,
  result: AppendResult,
): PublishReply {
  if (ctx.onRoomMessage && !result.duplicate)
    ctx.onRoomMessage(room, {
      id: result.id,
      offset: result.offset,
      epoch: result.epoch,
      from,
      ts: result.ts,
      body: JSON.parse(body) as unknown,
    });
  return {
    id: result.id,
    offset: result.offset,
    epoch: result.epoch,
    ts: result.ts,
    duplicate: result.duplicate,
  };
}

/**
 * A DM is two copies in two inboxes, the recipient's and the sender's (for the sender's other connections; the
 * sending one has the reply), written by one engine call: see Engine.dm and docs/RELIABILITY.md "DMs are written
 * whole". `ok` means both are stored; a retry with the same key writes whichever is missing and answers the first
 * result. USER_MSG_RATE is counted in the same call.
 */
export async function dm(
  ctx: SessionContext,
  session: Session,
  to: string,
  body: string,
  key?: string,
): Promise<Handled<'dm'>> {
  const { client } = session;
  const result = await ctx.engine.dm({
    from: client.user,
    to,
    id: newMessageId(),
    ts: Date.now(),
    body,
    key,
    senderCopy: true,
    skip: client.id,
    rate: ctx.config.limits.userMsgRate,
  });
  if (result.limited) userLimited(ctx, result.waitMs);
  return { reply: dmReply(result) };
}

/** The `dm` reply (docs/PROTOCOL.md) of a stored DM; shared with the server API. */
export function dmReply(result: Extract<DirectMessageResult, { limited: false }>): DirectMessageReply {
  const { message, delivered } = result;
  return {
    id: message.id,
    offset: message.offset,
    epoch: message.epoch,
    ts: message.ts,
    duplicate: message.duplicate,
    delivered,
    live: delivered > 0,
    stored: true,
  };
}
