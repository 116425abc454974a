// The user's inbox: the welcome that opens it, the `inbox` command, and where a stream resumes for a position.
import type { ReadResult, StreamRef } from '../engine/engine';
import { UnavailableError } from '../engine/engine';
import type { Client, Sub } from '../hub/client';
import type { Identity } from '../auth/tokens';
import { CLOSE, welcomeFrame, type Since } from '../../../../protocol';
import type { Handled, Session, SessionContext } from './context';

/**
 * Subscribes the user's inbox (paused), registers the connection and writes the welcome; only then starts the
 * inbox, from `since` (with a replay) or from the latest offset. So no DM reaches the connection before its
 * welcome, a DM sent after the client saw its welcome is delivered live and counted in the sender's
 * `delivered`, and every DM after `since` arrives once, in order, with a gap event for what is no longer kept.
 * Resolves with the sub once it runs; undefined when the connection could not be set up or closed first.
 */
export async function openInbox(
  ctx: SessionContext,
  client: Client,
  identity: Identity,
  since?: Since,
): Promise<Sub | undefined> {
  const ref: StreamRef = { kind: 'inbox', name: client.user };
  const { sub, ready } = ctx.hub.add(client, ref);
  // Set before any await so that closed() removes it; paused until started below, so nothing is sent.
  client.inbox = sub;
  let head: ReadResult;
  try {
    await ready;
    if (client.closed) return undefined;
    const info = { node: ctx.config.nodeId, connectedAt: Date.now() };
    // MAX_CONNECTIONS_PER_USER is enforced here, after the upgrade, rather than with an HTTP 429: deciding an
    // upgrade asynchronously (it needs Redis) made uWebSockets.js drop about 1 in 300 accepted sockets with 1006.
    const cap = ctx.config.limits.maxConnectionsPerUser;
    let admitted: boolean;
    [head, admitted] = await Promise.all([
      ctx.engine.read(ref, since?.offset ?? Number.MAX_SAFE_INTEGER, 1),
      cap === 0
        ? ctx.engine.connectionAdd(identity.user, client.id, info).then(() => true)
        : ctx.engine.connectionReserve(identity.user, client.id, cap, info),
    ]);
    if (!admitted) {
      ctx.metrics.rateLimited.inc({ scope: 'user_connections' });
      client.conn.close(CLOSE.tooManyConnections, `more than ${cap} connections for this user`);
      return undefined;
    }
  } catch (err) {
    ctx.log.warn(
      { err: (err as Error).message, conn: client.id },
      'could not set up the connection; closing',
    );
    client.conn.close(CLOSE.internal, 'storage unavailable, reconnect');
    return undefined;
  }
  if (client.closed) return undefined;
  const from: { epoch: string; offset: number; recovered?: boolean } = since
    ? resume(since, head)
    : { epoch: head.epoch, offset: head.top };
  if (from.recovered !== undefined)
    ctx.metrics.recoveries.inc({ result: from.recovered ? 'recovered' : 'gap' });
  const frame = welcomeFrame({
    user: identity.user,
    node: ctx.config.nodeId,
    session: client.id,
    expiresAt: identity.expiresAt,
    info: identity.info,
    inbox: { offset: from.offset, epoch: from.epoch, recovered: from.recovered },
  });
  ctx.send(client, frame, 'welcome');
  ctx.hub.start(client, sub, from.epoch, from.offset, since !== undefined);
  return sub;
}

/**
 * `inbox {since}` (clients that did not give their position at connect): replays what this connection has not
 * been sent of the DMs after since.offset, then continues live. DMs the connection already received live since
 * its welcome are not sent again, so each DM arrives once.
 */
export async function inbox(ctx: SessionContext, session: Session, since?: Since): Promise<Handled<'inbox'>> {
  const { client } = session;
  // inboxReady is kept only while the inbox is being set up (or when that failed); once live it is client.inbox.
  const sub = client.inboxReady ? await client.inboxReady : client.inbox;
  if (!sub) throw new UnavailableError('the connection could not be set up');
  const ref: StreamRef = { kind: 'inbox', name: client.user };
  const head = await ctx.engine.read(ref, since?.offset ?? Number.MAX_SAFE_INTEGER, 1);
  if (!since) return { reply: { offset: head.top, epoch: head.epoch } };
  const from = resume(since, head);
  ctx.metrics.recoveries.inc({ result: from.recovered ? 'recovered' : 'gap' });
  return {
    reply: { offset: head.top, epoch: head.epoch, recovered: from.recovered },
    after: () => ctx.hub.rewind(client, sub, from.epoch, from.offset),
  };
}

/**
 * Where a stream resumes for a client at `since`, given the stream's head read after since.offset: from the
 * client's position, with a replay (a gap event first when part of it is no longer kept or the epoch changed), or
 * from the latest offset when the position is ahead of the store (it lost events after a crash or a failover
 * without replica acknowledgement). `recovered`: every event after `since` is still kept and follows.
 */
export function resume(
  since: Since,
  head: ReadResult,
): { epoch: string; offset: number; recovered: boolean } {
  // Offset 0 continues into any epoch, and "" or no epoch means the current one (see recoverable below).
  const current = since.offset === 0 || since.epoch === undefined || since.epoch === '';
  const epoch = current ? head.epoch : since.epoch!;
  if (epoch === head.epoch && since.offset > head.top) return { epoch, offset: head.top, recovered: false };
  return { epoch, offset: since.offset, recovered: recoverable(since, head) };
}

/**
 * Whether a position can be continued from the stream's head without a gap. Offset 0 has seen nothing, so it
 * continues into any epoch. An epoch of "" (a stream that was empty when the client read it) names no epoch, like an
 * omitted one: the stream's current epoch is meant.
 */
function recoverable(
  since: { offset: number; epoch?: string },
  head: { epoch: string; top: number; events: { offset: number }[] },
): boolean {
  if (since.offset !== 0 && since.epoch !== undefined && since.epoch !== '' && since.epoch !== head.epoch)
    return false;
  if (since.offset > head.top) return false;
  if (since.offset === head.top) return true;
  const first = head.events[0];
  return first !== undefined && first.offset === since.offset + 1;
}
