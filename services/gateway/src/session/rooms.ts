// Rooms: join, leave, presence and history, for a client's commands and for server-side joins.
import type { StreamRef } from '../engine/engine';
import type { Client } from '../hub/client';
import { roomAllowed } from '../auth/tokens';
import { ProtocolError, type Since } from '../../../../protocol';
import type { Handled, Session, SessionContext } from './context';
import { resume } from './inbox';

/** Refuses a room the session's token does not allow. */
export function checkRoom(session: Session, room: string): void {
  if (!roomAllowed(session.identity, room))
    throw new ProtocolError('forbidden', `not allowed to join ${room}`);
}

/** At most PRESENCE_REPLY_MAX users, and how many there are in all. */
export function presenceFields(ctx: SessionContext, users: string[]): { presence: string[]; total: number } {
  const max = ctx.config.limits.presenceReplyMax;
  if (users.length <= max) return { presence: users, total: users.length };
  ctx.metrics.presenceTruncated.inc();
  return { presence: users.slice(0, max), total: users.length };
}

/**
 * Joins a room; the reply's after-reply step makes the subscription live (with a replay from `since`). A join by
 * the server API (`byServer`) is trusted: neither the rooms limits nor the join hook apply.
 */
export async function join(
  ctx: SessionContext,
  session: Session,
  room: string,
  since?: Since,
  byServer = false,
): Promise<Handled<'join'>> {
  const { client } = session;
  if (!byServer) checkRoom(session, room);
  if (!byServer && ctx.hooks.join && !client.rooms.has(room)) {
    const decision = await ctx.hooks.join({ user: client.user, room, conn: client.id });
    if (decision.kind === 'deny') throw new ProtocolError('forbidden', decision.reason);
    if (decision.kind === 'unavailable')
      throw new ProtocolError('unavailable', 'the join hook is unavailable, retry');
    if (client.closed) throw new ProtocolError('not_member', 'closed while joining');
  }
  const existing = client.rooms.get(room);
  if (existing) {
    return {
      reply: {
        room,
        ...presenceFields(ctx, await ctx.engine.presence(room)),
        ...ctx.hub.position(existing),
      },
    };
  }
  if (client.rooms.size >= ctx.config.limits.maxRoomsPerConnection)
    throw new ProtocolError(
      'too_many_rooms',
      `at most ${ctx.config.limits.maxRoomsPerConnection} rooms per connection`,
    );
  const ref: StreamRef = { kind: 'room', name: room };
  // Recorded before any await: a second join of the same room meanwhile takes the `existing` path above.
  const { sub, ready } = ctx.hub.add(client, ref);
  client.addRoom(room, sub);
  try {
    await ready;
    const [presence, head] = await Promise.all([
      ctx.marks.sync(room, client.user).then((marked) => marked ?? ctx.engine.presence(room)),
      ctx.engine.read(ref, since?.offset ?? Number.MAX_SAFE_INTEGER, 1),
    ]);
    if (client.closed || client.rooms.get(room) !== sub)
      throw new ProtocolError('not_member', 'left while joining');
    const reply: Handled<'join'>['reply'] = {
      room,
      ...presenceFields(ctx, presence),
      offset: head.top,
      epoch: head.epoch,
    };
    if (!since) return { reply, after: () => ctx.hub.start(client, sub, head.epoch, head.top, false) };
    const from = resume(since, head);
    ctx.metrics.recoveries.inc({ result: from.recovered ? 'recovered' : 'gap' });
    reply.recovered = from.recovered;
    // The reply goes out before the replay: a gap event for what is no longer kept, then every kept message.
    return { reply, after: () => ctx.hub.start(client, sub, from.epoch, from.offset, true) };
  } catch (err) {
    if (client.rooms.get(room) === sub) leaveRoom(ctx, client, room);
    throw err;
  }
}

/** Drops the client's membership of a room, if any (a leave, a close, a refresh that no longer allows it). */
export function leaveRoom(ctx: SessionContext, client: Client, room: string): void {
  const sub = client.rooms.get(room);
  if (!sub) return;
  client.dropRoom(room);
  // The user's last local connection in the room: the mark goes (after any write still in flight).
  if (ctx.hub.remove(client, sub.ref)) ctx.marks.sync(room, client.user).catch(() => undefined);
}

export async function leave(ctx: SessionContext, session: Session, room: string): Promise<Handled<'leave'>> {
  if (!session.client.rooms.has(room)) throw new ProtocolError('not_member', `not a member of ${room}`);
  leaveRoom(ctx, session.client, room);
  return { reply: { room } };
}

export async function presenceOf(
  ctx: SessionContext,
  session: Session,
  room: string,
): Promise<Handled<'presence'>> {
  checkRoom(session, room);
  return { reply: { room, ...presenceFields(ctx, await ctx.engine.presence(room)) } };
}

export async function history(
  ctx: SessionContext,
  session: Session,
  room: string,
  limit: number,
  before?: number,
): Promise<Handled<'history'>> {
  checkRoom(session, room);
  const page = await ctx.hub.readHistory(() =>
    ctx.engine.readBefore({ kind: 'room', name: room }, before, limit),
  );
  return {
    reply: { room, offset: page.top, epoch: page.epoch },
    frames: { name: 'messages', frames: page.events.map((e) => e.frame) },
  };
}
