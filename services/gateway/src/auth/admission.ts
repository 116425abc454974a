// Admission of a WebSocket upgrade: readiness, the allowed origins, the per-address connect rate, the cookie's
// origin, the inbox position, then the identity (token verification, or the connect hook when the backend
// authenticates) and the connect hook's say. Revoked tokens are refused by the verifier (auth/tokens.ts).
// Answers a decision for the transport: an identity, or an HTTP status with a JSON reason.
import type { Config } from '../config';
import type { Hooks } from '../hooks/hooks';
import type { Logger } from '../logger';
import type { Metrics } from '../metrics';
import type { AddressLimiter } from '../session/limits';
import type { UpgradeDecision, UpgradeInfo } from '../transport/uws-server';
import { parsePosition } from '../../../../protocol';
import { RoomPattern } from './room-pattern';
import { AuthError, type Identity, type TokenVerifier } from './tokens';

export interface AdmissionDeps {
  config: Readonly<Config>;
  verifier: TokenVerifier;
  hooks: Hooks;
  metrics: Metrics;
  log: Logger;
  ipLimiter: AddressLimiter;
  /** Whether the node takes connections now. */
  ready(): boolean;
  draining(): boolean;
  /** No JWT key is set and a connect hook authenticates every connection. */
  backendAuth: boolean;
}

/** The upgrade handler: a decision made at once stays synchronous (an asynchronous upgrade costs uWS more). */
export function createAdmission(
  deps: AdmissionDeps,
): (info: UpgradeInfo) => UpgradeDecision | Promise<UpgradeDecision> {
  const { config, metrics, log } = deps;
  const reject = (status: number, reason: string, error: string, headers?: Record<string, string>) => {
    metrics.upgradesRejected.inc({ reason });
    return { status, body: JSON.stringify({ error, reason }), headers };
  };

  /** The connect hook's say on an upgrade that passed the gateway's own checks. */
  const connectHook = async (info: UpgradeInfo, verified: Identity | undefined) => {
    const decision = await deps.hooks.connect!({
      ip: info.ip,
      origin: info.origin,
      claims: verified?.claims,
      credentials: verified
        ? undefined
        : {
            token: info.token,
            cookie: info.cookie,
            authorization: info.authorization,
            userAgent: info.userAgent,
          },
    });
    if (deps.draining()) return reject(503, 'draining', 'unavailable');
    if (decision.kind === 'unavailable') return reject(503, 'hook_unavailable', 'unavailable');
    if (decision.kind === 'deny') {
      metrics.upgradesRejected.inc({ reason: 'hook_denied' });
      return {
        status: decision.status,
        body: JSON.stringify({
          error: decision.status === 401 ? 'unauthorized' : 'forbidden',
          reason: decision.reason,
        }),
      };
    }
    const user = decision.user ?? verified?.user;
    if (user === undefined) {
      log.warn('connect hook allowed a connection without a "user" (required when no JWT key is set)');
      metrics.hookErrors.inc({ hook: 'connect', kind: 'bad_response' });
      return reject(503, 'hook_unavailable', 'unavailable');
    }
    if (
      decision.rooms &&
      (decision.rooms.length > config.jwt.maxRoomPatterns ||
        decision.rooms.some((r) => r.length > config.jwt.maxRoomPatternLength))
    ) {
      log.warn('connect hook answered more or longer room patterns than a token may carry');
      metrics.hookErrors.inc({ hook: 'connect', kind: 'bad_response' });
      return reject(503, 'hook_unavailable', 'unavailable');
    }
    const identity: Identity = {
      user,
      rooms: decision.rooms ? decision.rooms.map((r) => new RoomPattern(r)) : verified?.rooms,
      expiresAt: verified?.expiresAt ?? null,
      // The token stays revocable: by its id, and with its user's tokens issued before a time.
      jti: verified?.jti,
      issuedAt: verified?.issuedAt,
      claims: verified?.claims,
      info: decision.info,
    };
    return { identity };
  };

  return (info) => {
    const { token, carrier, origin, host, ip } = info;
    if (!deps.ready()) return reject(503, deps.draining() ? 'draining' : 'not_ready', 'unavailable');
    if (origin !== undefined && config.allowedOrigins.length > 0 && !config.allowedOrigins.includes(origin))
      return reject(403, 'origin', 'forbidden');
    if (!deps.ipLimiter.allow(ip)) {
      metrics.rateLimited.inc({ scope: 'ip' });
      return reject(429, 'rate_limited', 'rate_limited', { 'retry-after': '1' });
    }
    // A cookie rides along with any page's request: honour it only from this origin or an allowed one.
    if (carrier === 'cookie' && origin !== undefined && !cookieOriginOk(origin, host, config.allowedOrigins))
      return reject(403, 'cookie_origin', 'forbidden');
    // The client's inbox position (`?inbox=<offset>:<epoch>`), carried to open() with the identity.
    const position = info.inbox === undefined ? undefined : parsePosition(info.inbox);
    if (info.inbox !== undefined && !position) return reject(400, 'bad_inbox', 'bad_request');
    const addInbox = (d: UpgradeDecision): UpgradeDecision =>
      'identity' in d ? { ...d, inbox: position } : d;
    // A decision made at once stays synchronous (an asynchronous upgrade costs uWS more).
    const withInbox = (d: UpgradeDecision | Promise<UpgradeDecision>) =>
      position === undefined ? d : d instanceof Promise ? d.then(addInbox) : addInbox(d);
    if (deps.backendAuth) return withInbox(connectHook(info, undefined));
    let identity: Identity;
    try {
      identity = deps.verifier.verify(token);
    } catch (err) {
      const reason = err instanceof AuthError ? err.reason : 'malformed';
      metrics.authFailures.inc({ reason });
      log.info({ reason, ip }, 'auth failure');
      return reject(401, reason, 'unauthorized');
    }
    const accepted = deps.hooks.connect ? connectHook(info, identity) : { identity };
    return withInbox(accepted);
  };
}

function cookieOriginOk(origin: string, host: string, allowed: readonly string[]): boolean {
  if (allowed.includes(origin)) return true;
  try {
    return new URL(origin).host === host;
  } catch {
    return false;
  }
}
