// Messages: publish to a room and direct messages, both through one store-then-fan-out.
import type { StreamRef } from '../engine/engine';
import { ProtocolError, storedEventParts, type PublishReply } from '../../../../protocol';
import type { Handled, Session, SessionContext } from './context';
import { newMessageId } from './ids';

/** The per-user message rate across nodes (USER_MSG_RATE); throws rate_limited when it is spent. */
export async function userRate(ctx: SessionContext, user: string): Promise<void> {
  if (ctx.config.limits.userMsgRate === 0) return;
  const wait = await ctx.engine.userRate(user, ctx.config.limits.userMsgRate);
  if (wait > 0) {
    ctx.metrics.rateLimited.inc({ scope: 'user' });
    throw new ProtocolError('rate_limited', 'too many messages from this user', wait);
  }
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
    reply: await store(ctx, { kind: 'room', name: room }, 'message', client.user, { room }, body, key),
  };
}

/** Stores and fans out one message (room message or DM copy); shared by `publish`, `dm` and the server API. */
export async function store(
  ctx: Pick<SessionContext, 'engine' | 'onRoomMessage'>,
  ref: StreamRef,
  type: 'message' | 'dm',
  from: string,
  extra: { room?: string; to?: string },
  body: string,
  key?: string,
  skip?: string,
): Promise<PublishReply> {
  const id = newMessageId();
  const ts = Date.now();
  const result = await ctx.engine.append(ref, {
    id,
    ts,
    frame: storedEventParts(type, { ...extra, id, from, ts }, body),
    dedup: key ? { scope: from, key } : undefined,
    skip,
  });
  if (ctx.onRoomMessage && ref.kind === 'room' && !result.duplicate)
    ctx.onRoomMessage(ref.name, {
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
 * A DM is two copies in two inboxes (two Cluster slots): the recipient's, deduplicated on (sender, key), and
 * the sender's, deduplicated on the message id. Each write is idempotent on its own key, so `ok` means both
 * are stored, and a retry with the same key writes whichever is missing and answers the first result.
 */
export async function dm(
  ctx: SessionContext,
  session: Session,
  to: string,
  body: string,
  key?: string,
): Promise<Handled<'dm'>> {
  const { client } = session;
  await userRate(ctx, client.user);
  const reply = await store(ctx, { kind: 'inbox', name: to }, 'dm', client.user, { to }, body, key);
  if (to !== client.user) {
    // The sender's copy, for the sender's other connections and their recovery; the sending one has the reply.
    const { id, ts } = reply;
    await ctx.engine.append(
      { kind: 'inbox', name: client.user },
      {
        id,
        ts,
        frame: storedEventParts('dm', { id, from: client.user, to, ts }, body),
        // Without a key a retry is a new DM anyway: no dedup record to keep.
        dedup: key === undefined ? undefined : { scope: '', key: id },
        skip: client.id,
      },
    );
  }
  const delivered = await ctx.engine.connectionCount(to);
  return { reply: { ...reply, delivered, live: delivered > 0, stored: true } };
}
