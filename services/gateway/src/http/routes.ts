// HTTP beside the socket: health, readiness, metrics, the dev token endpoint, the server API and the web page.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import { ProtocolError } from '../protocol/errors';
import { UnavailableError, type Revocation } from '../engine/engine';
import { isWellFormed } from '../protocol/unicode';

export interface HttpRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  header(name: string): string | undefined;
  body: string;
}

export interface HttpResponse {
  status: number;
  body: string | Uint8Array;
  type?: string;
  headers?: Record<string, string>;
}

export interface RouteDeps {
  ready(): boolean;
  metrics(): Promise<{ body: string; type: string }>;
  /** Present only in dev mode. */
  mintToken?: (user: string, rooms: string[] | undefined, ttlS: number) => string;
  apiKey?: string;
  publish(
    room: string,
    body: unknown,
    key: string | undefined,
    from: string,
  ): Promise<Record<string, unknown>>;
  presence(room: string): Promise<string[]>;
  disconnect(user: string): Promise<void>;
  /** Caps on a token's `rooms` claim; /dev/token refuses to sign more. */
  roomPatternCaps: { count: number; length: number };
  /** How long a revocation is kept when the call names no expiry. */
  revocationTtlS: number;
  revoke(r: Revocation): Promise<void>;
  staticDir?: string;
}

/** Longest a revocation may be kept (and the largest `ttl` a revoke call may ask for). */
const MAX_REVOCATION_S = 31_536_000;

const validUser = (u: unknown): u is string =>
  typeof u === 'string' && u.length > 0 && u.length <= 256 && isWellFormed(u);

const json = (status: number, value: unknown): HttpResponse => ({ status, body: JSON.stringify(value) });
const apiError = (status: number, code: string, message: string) =>
  json(status, { error: { code, message } });

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

/** Reads the static directory once at start-up (a few small files). */
function loadStatic(dir: string | undefined): Map<string, HttpResponse> {
  const files = new Map<string, HttpResponse>();
  if (!dir || !existsSync(dir)) return files;
  const walk = (rel: string) => {
    for (const name of readdirSync(join(dir, rel))) {
      const path = join(rel, name);
      if (statSync(join(dir, path)).isDirectory()) walk(path);
      else
        files.set(`/${path}`, {
          status: 200,
          body: readFileSync(join(dir, path)),
          type: TYPES[extname(name)] ?? 'application/octet-stream',
          headers: { 'x-content-type-options': 'nosniff' },
        });
    }
  };
  walk('');
  const index = files.get('/index.html');
  if (index) files.set('/', index);
  return files;
}

function parseJson(body: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(body);
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

function keyMatches(header: string | undefined, apiKey: string): boolean {
  const given = /^Bearer\s+(.+)$/i.exec(header ?? '')?.[1];
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(apiKey);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function createRoutes(deps: RouteDeps): (req: HttpRequest) => Promise<HttpResponse> {
  const files = loadStatic(deps.staticDir);

  const api = async (req: HttpRequest): Promise<HttpResponse> => {
    if (!deps.apiKey) return apiError(404, 'not_found', 'the server API is off (API_KEY unset)');
    if (!keyMatches(req.header('authorization'), deps.apiKey))
      return apiError(401, 'unauthorized', 'missing or wrong API key');
    try {
      if (req.method === 'POST' && req.path === '/api/publish') {
        const b = parseJson(req.body);
        if (!b || typeof b.room !== 'string')
          return apiError(400, 'bad_request', 'expected a JSON object {"room": string, "body": any}');
        if (
          b.from !== undefined &&
          (typeof b.from !== 'string' || b.from.length === 0 || b.from.length > 256)
        )
          return apiError(400, 'bad_request', 'from must be a string of 1-256 characters');
        if (b.key !== undefined && typeof b.key !== 'string')
          return apiError(400, 'bad_request', 'key must be a string of 1-64 characters');
        return json(200, await deps.publish(b.room, b.body, b.key, b.from ?? 'server'));
      }
      if (req.method === 'GET' && req.path.startsWith('/api/presence/')) {
        let room: string;
        try {
          room = decodeURIComponent(req.path.slice('/api/presence/'.length));
        } catch {
          return apiError(400, 'bad_request', 'the room in the path is not valid percent-encoded UTF-8');
        }
        return json(200, { room, presence: await deps.presence(room) });
      }
      if (req.method === 'POST' && req.path === '/api/disconnect') {
        const b = parseJson(req.body);
        if (!b || !validUser(b.user))
          return apiError(400, 'bad_request', 'expected a JSON object {"user": non-empty string}');
        await deps.disconnect(b.user);
        return json(200, { disconnected: true });
      }
      if (req.method === 'POST' && (req.path === '/api/revoke-token' || req.path === '/api/revoke-user')) {
        const b = parseJson(req.body);
        const now = Date.now();
        if (b?.ttl !== undefined && !(Number.isInteger(b.ttl) && (b.ttl as number) >= 1))
          return apiError(400, 'bad_request', 'ttl must be a positive integer (seconds)');
        const ttlS = Math.min((b?.ttl as number | undefined) ?? deps.revocationTtlS, MAX_REVOCATION_S);
        if (req.path === '/api/revoke-user') {
          if (!b || !validUser(b.user)) return apiError(400, 'bad_request', 'expected {"user","ttl"?}');
          // Every token with iat before the next second: the current second's tokens included.
          const issuedBefore = Math.floor(now / 1000) + 1;
          const expiresAt = now + ttlS * 1000;
          await deps.revoke({ kind: 'user', user: b.user, issuedBefore, expiresAt });
          return json(200, { revoked: true, user: b.user, issuedBefore, expiresAt });
        }
        if (!b || typeof b.jti !== 'string' || !validUser(b.jti))
          return apiError(400, 'bad_request', 'expected {"jti","exp"?,"ttl"?}');
        if (b.exp !== undefined && !(typeof b.exp === 'number' && Number.isFinite(b.exp)))
          return apiError(400, 'bad_request', 'exp must be the token expiry in seconds since epoch');
        const expiresAt =
          b.exp !== undefined
            ? Math.min((b.exp as number) * 1000, now + MAX_REVOCATION_S * 1000)
            : now + ttlS * 1000;
        // A token already expired is refused anyway: nothing to keep.
        if (expiresAt > now) await deps.revoke({ kind: 'jti', jti: b.jti, expiresAt });
        return json(200, { revoked: true, jti: b.jti, expiresAt });
      }
      return apiError(404, 'not_found', 'no such API route');
    } catch (err) {
      if (err instanceof ProtocolError)
        return apiError(err.code === 'too_large' ? 413 : 400, err.code, err.message);
      if (err instanceof UnavailableError) return apiError(503, 'unavailable', 'storage unavailable, retry');
      throw err;
    }
  };

  return async (req) => {
    const { method, path } = req;
    if (path === '/healthz') return json(200, { status: 'ok' });
    if (path === '/readyz')
      return deps.ready() ? json(200, { status: 'ready' }) : json(503, { status: 'unavailable' });
    if (path === '/metrics') {
      const m = await deps.metrics();
      return { status: 200, body: m.body, type: m.type };
    }
    if (path === '/dev/token') {
      if (!deps.mintToken) return apiError(404, 'not_found', 'dev mode is off');
      if (method !== 'POST') return apiError(405, 'bad_request', 'use POST');
      const b = parseJson(req.body);
      const user = b?.user;
      if (typeof user !== 'string' || !/^[\w.@:-]{1,64}$/.test(user))
        return apiError(400, 'bad_request', 'expected {"user": 1-64 characters of A-Z a-z 0-9 _ . @ : -}');
      const rooms =
        Array.isArray(b?.rooms) && b.rooms.every((r) => typeof r === 'string')
          ? (b.rooms as string[])
          : undefined;
      const caps = deps.roomPatternCaps;
      if (rooms && (rooms.length > caps.count || rooms.some((r) => r.length > caps.length)))
        return apiError(
          400,
          'bad_request',
          `rooms: at most ${caps.count} patterns of at most ${caps.length} characters`,
        );
      const ttl = typeof b?.ttl === 'number' && b.ttl >= 1 && b.ttl <= 86400 ? Math.floor(b.ttl) : 3600;
      return json(200, { token: deps.mintToken(user, rooms, ttl) });
    }
    if (path.startsWith('/api/')) return api(req);
    if (method === 'GET' || method === 'HEAD') {
      const file = files.get(path);
      if (file) return file;
    }
    return apiError(404, 'not_found', 'not found');
  };
}
