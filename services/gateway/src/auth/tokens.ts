// JWT verification at the handshake (and on `refresh`), the `rooms` claim, and dev-mode minting.
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';
import { isWellFormed, MAX_USER_LENGTH } from '../../../../protocol';
import { RoomPattern } from './room-pattern';

export interface Identity {
  user: string;
  /** Compiled `rooms` claim; undefined = any room. */
  rooms?: RoomPattern[];
  /** Token expiry, ms since epoch (null only for a token without `exp`, accepted with JWT_ALLOW_NO_EXP). */
  expiresAt: number | null;
  /** The token's `jti`, when it has one (revocation by id). */
  jti?: string;
  /** The token's `iat`, seconds since epoch, when it has one (revocation of a user's older tokens). */
  issuedAt?: number;
  /** The verified token's claims (passed to the connect hook). */
  claims?: Record<string, unknown>;
  /** Given to the client in `welcome` (from the connect hook). */
  info?: Record<string, unknown>;
}

export type AuthFailure =
  | 'missing_token'
  | 'malformed'
  | 'bad_signature'
  | 'bad_algorithm'
  | 'expired'
  | 'not_yet_valid'
  | 'bad_issuer'
  | 'bad_audience'
  | 'no_subject'
  | 'bad_subject'
  | 'no_expiry'
  | 'lifetime_too_long'
  | 'too_many_room_patterns'
  | 'room_pattern_too_long'
  | 'revoked';

export class AuthError extends Error {
  constructor(readonly reason: AuthFailure) {
    super(reason);
  }
}

export interface VerifierOptions {
  secret?: string;
  publicKey?: string;
  issuer?: string;
  audience?: string;
  /** Caps on the `rooms` claim: number of patterns, characters per pattern. */
  maxRoomPatterns: number;
  maxRoomPatternLength: number;
  /** Accept tokens without `exp` (JWT_ALLOW_NO_EXP); otherwise they are refused with `no_expiry`. */
  allowNoExp: boolean;
  /** Longest accepted lifetime, `exp - iat` (or `exp - now` without `iat`); 0 = no limit. */
  maxLifetimeS: number;
}

export function roomAllowed(identity: Identity, room: string): boolean {
  return identity.rooms === undefined || identity.rooms.some((r) => r.matches(room));
}

export class TokenVerifier {
  private readonly algorithms: jwt.Algorithm[];
  /**
   * Keys built once: given a string, jsonwebtoken tries createPublicKey on every verify (and for an HS256 secret
   * catches the throw and builds a secret key), about a third of a connection's CPU.
   */
  private readonly secretKey?: KeyObject;
  private readonly publicKey?: KeyObject;

  /**
   * `revoked` is asked about every token that passes every other check; it must answer from memory (the upgrade
   * must not wait on Redis for it).
   */
  constructor(
    private readonly opts: VerifierOptions,
    private readonly revoked: (identity: Identity) => boolean = () => false,
  ) {
    this.algorithms = [];
    if (opts.secret) {
      this.algorithms.push('HS256');
      this.secretKey = createSecretKey(Buffer.from(opts.secret, 'utf8'));
    }
    if (opts.publicKey) {
      this.algorithms.push('RS256');
      this.publicKey = createPublicKey(opts.publicKey);
    }
  }

  verify(token: string | undefined): Identity {
    if (!token) throw new AuthError('missing_token');
    const decoded = jwt.decode(token, { complete: true });
    if (!decoded || typeof decoded.payload !== 'object') throw new AuthError('malformed');
    const alg = decoded.header.alg as jwt.Algorithm;
    if (!this.algorithms.includes(alg)) throw new AuthError('bad_algorithm');
    const key = alg === 'HS256' ? this.secretKey! : this.publicKey!;
    let claims: jwt.JwtPayload;
    try {
      claims = jwt.verify(token, key, {
        algorithms: [alg],
        issuer: this.opts.issuer,
        audience: this.opts.audience,
      }) as jwt.JwtPayload;
    } catch (err) {
      throw new AuthError(classify(err));
    }
    if (typeof claims.sub !== 'string' || claims.sub.length === 0 || claims.sub.length > MAX_USER_LENGTH)
      throw new AuthError('no_subject');
    if (!isWellFormed(claims.sub)) throw new AuthError('bad_subject');
    const exp = typeof claims.exp === 'number' ? claims.exp : undefined;
    const iat = typeof claims.iat === 'number' ? claims.iat : undefined;
    if (exp === undefined && !this.opts.allowNoExp) throw new AuthError('no_expiry');
    if (exp !== undefined && this.opts.maxLifetimeS > 0) {
      const lifetime = exp - (iat ?? Date.now() / 1000);
      if (lifetime > this.opts.maxLifetimeS) throw new AuthError('lifetime_too_long');
    }
    let rooms: RoomPattern[] | undefined;
    if (claims.rooms !== undefined) {
      if (!Array.isArray(claims.rooms) || !claims.rooms.every((r) => typeof r === 'string'))
        throw new AuthError('malformed');
      const patterns = claims.rooms as string[];
      if (patterns.length > this.opts.maxRoomPatterns) throw new AuthError('too_many_room_patterns');
      if (patterns.some((p) => p.length > this.opts.maxRoomPatternLength))
        throw new AuthError('room_pattern_too_long');
      rooms = patterns.map((p) => new RoomPattern(p));
    }
    // Every field in one literal: an object kept per connection, with no property store added afterwards.
    const identity: Identity = {
      user: claims.sub,
      rooms,
      expiresAt: exp === undefined ? null : exp * 1000,
      jti: typeof claims.jti === 'string' && claims.jti.length > 0 ? claims.jti : undefined,
      issuedAt: iat,
      claims,
      info: undefined,
    };
    if (this.revoked(identity)) throw new AuthError('revoked');
    return identity;
  }
}

function classify(err: unknown): AuthFailure {
  if (err instanceof jwt.TokenExpiredError) return 'expired';
  if (err instanceof jwt.NotBeforeError) return 'not_yet_valid';
  const message = err instanceof Error ? err.message : '';
  if (message.includes('issuer')) return 'bad_issuer';
  if (message.includes('audience')) return 'bad_audience';
  if (message.includes('signature')) return 'bad_signature';
  if (message.includes('algorithm')) return 'bad_algorithm';
  return 'malformed';
}

/** Dev mode only: a short-lived HS256 token for `user`. */
export function mintDevToken(
  secret: string,
  user: string,
  rooms: string[] | undefined,
  ttlS: number,
): string {
  return jwt.sign(rooms ? { rooms } : {}, secret, { algorithm: 'HS256', subject: user, expiresIn: ttlS });
}
