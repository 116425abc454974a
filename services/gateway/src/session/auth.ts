// A session's token: expiry (one timer for all sessions) and `refresh`.
import { ExpiryQueue } from '../auth/expiry-queue';
import { AuthError, roomAllowed, type Identity, type TokenVerifier } from '../auth/tokens';
import type { Logger } from '../logger';
import { CLOSE, leftEvent, ProtocolError } from '../../../../protocol';
import type { Handled, Session, SessionContext } from './context';
import { leaveRoom } from './rooms';

/** Token expiries of every session, behind one timer: an expired session is closed with 4001. */
export function sessionExpiries(log: Logger): ExpiryQueue<Session> {
  return new ExpiryQueue<Session>((session) => {
    log.info({ conn: session.client.id, user: session.client.user }, 'token expired; closing');
    session.client.conn.close(CLOSE.tokenExpired, 'token expired');
  });
}

/** What `refresh` needs beyond the session context: the verifier and the expiry timer. */
export interface AuthContext extends SessionContext {
  readonly verifier: TokenVerifier;
  readonly expiries: ExpiryQueue<Session>;
}

export async function refresh(
  ctx: AuthContext,
  session: Session,
  token: string,
): Promise<Handled<'refresh'>> {
  let identity: Identity;
  try {
    identity = ctx.verifier.verify(token);
  } catch (err) {
    const reason = err instanceof AuthError ? err.reason : 'malformed';
    ctx.metrics.authFailures.inc({ reason });
    throw new ProtocolError('unauthorized', `token rejected: ${reason}`);
  }
  if (identity.user !== session.identity.user)
    throw new ProtocolError('unauthorized', 'token is for another user');
  if (session.identity.expiresAt !== null) ctx.expiries.remove(session, session.identity.expiresAt);
  identity.claims = undefined; // a session keeps no claims (see Gateway.open)
  session.identity = identity;
  if (identity.expiresAt !== null) ctx.expiries.add(session, identity.expiresAt);
  // The new token's `rooms` claim applies now: rooms it no longer allows are left (a normal leave).
  const left = [...session.client.rooms.keys()].filter((room) => !roomAllowed(identity, room));
  for (const room of left) leaveRoom(ctx, session.client, room);
  if (left.length === 0) return { reply: { expiresAt: identity.expiresAt } };
  return {
    reply: { expiresAt: identity.expiresAt },
    after: () => ctx.send(session.client, leftEvent(left, 'token'), 'left'),
  };
}
