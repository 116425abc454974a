// Messages: publish to a room (store, then fan out) and direct messages (both copies in one engine call).
import type { DirectMessageResult } from '../engine/engine';
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
  await userRate(ctx, client.user);
  if (ctx.hooks.publish) {
    const decision = await ctx.hooks.publish({ user: client.user, room, conn: client.id, body });
    if (decision.kind === 'deny') throw new ProtocolError('rejected', decision.reason);
    if (decision.kind === 'unavailable')
      throw new ProtocolError('unavailable', 'the publish hook is unavailable, retry');
    if (decision.body !== undefined) body = decision.body;
  }
  return {
    reply: await store(ctx, room, client.user, body, key),
  };
}

/** Stores and fans out one room message; shared by `publish` and the server API. */
export async function store(
  ctx: Pick<SessionContext, 'engine' | 'onRoomMessage'>,
  room: string,
  from: string,
  body: string,
  key?: string,
): Promise<PublishReply> {
  const id = newMessageId();
  const ts = Date.now();
  const result = await ctx.engine.append(
    { kind: 'room', name: room },
    {
      id,
      ts,
      frame: storedEventParts('message', { room, id, from, ts }, body),
      dedup: key ? { scope: from, key } : undefined,
    },
  );
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
