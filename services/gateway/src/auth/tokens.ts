// JWT verification at the handshake (and on `refresh`), the `rooms` claim, and dev-mode minting.
import { createPublicKey, createSecretKey, type KeyObject } from 'node:crypto';
import jwt from 'jsonwebtoken';

export interface Identity {
  user: string;
  /** Compiled `rooms` claim; undefined = any room. */
  rooms?: RegExp[];
  /** Token expiry, ms since epoch. */
  expiresAt: number | null;
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
  | 'no_subject';

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
}

/** Glob (`*`, `?`) to an anchored RegExp; every other character is literal. */
export function globToRegExp(glob: string): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

export function roomAllowed(identity: Identity, room: string): boolean {
  return identity.rooms === undefined || identity.rooms.some((r) => r.test(room));
}

export class TokenVerifier {
  private readonly algorithms: jwt.Algorithm[];
  /**
   * Keys built once: given a string, jsonwebtoken tries createPublicKey on every verify (and for an HS256 secret
   * catches the throw and builds a secret key), about a third of a connection's CPU.
   */
  private readonly secretKey?: KeyObject;
  private readonly publicKey?: KeyObject;

  constructor(private readonly opts: VerifierOptions) {
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
    if (typeof claims.sub !== 'string' || claims.sub.length === 0 || claims.sub.length > 256)
      throw new AuthError('no_subject');
    let rooms: RegExp[] | undefined;
    if (claims.rooms !== undefined) {
      if (!Array.isArray(claims.rooms) || !claims.rooms.every((r) => typeof r === 'string'))
        throw new AuthError('malformed');
      rooms = (claims.rooms as string[]).map(globToRegExp);
    }
    return { user: claims.sub, rooms, expiresAt: typeof claims.exp === 'number' ? claims.exp * 1000 : null };
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
