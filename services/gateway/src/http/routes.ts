// HTTP beside the socket: health, readiness, metrics, the dev token endpoint, the server API and the web page.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join } from 'node:path';
import { timingSafeEqual } from 'node:crypto';
import { apiErrorBody, errorOf, matchRoute, type ServerApi } from './api';
import { openApiDocument } from './openapi';
import { ROOM_CHARS_TEXT, stringifyWithRaw, validRoom } from '../../../../protocol';

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
  /** Caps on a token's `rooms` claim; /dev/token refuses to sign more. */
  roomPatternCaps: { count: number; length: number };
  /** The server API (http/api.ts). */
  api: ServerApi;
  staticDir?: string;
}

const json = (status: number, value: unknown): HttpResponse => ({ status, body: stringifyWithRaw(value) });
const apiError = (status: number, code: string, message: string) => json(status, apiErrorBody(code, message));

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

  const openapi = JSON.stringify(openApiDocument('1'));

  /** The server API: the route table of http/api.ts. */
  const api = async (req: HttpRequest): Promise<HttpResponse> => {
    if (req.method === 'GET' && req.path === '/api/openapi.json') return { status: 200, body: openapi };
    if (!deps.apiKey) return apiError(404, 'not_found', 'the server API is off (API_KEY unset)');
    if (!keyMatches(req.header('authorization'), deps.apiKey))
      return apiError(401, 'unauthorized', 'missing or wrong API key');
    try {
      const matched = matchRoute(req.method, req.path, req.query);
      if (!matched) return apiError(404, 'not_found', 'no such API route');
      let args = matched.params;
      if (req.method === 'POST') {
        const b = parseJson(req.body);
        if (!b) return apiError(400, 'bad_request', 'the body must be a JSON object');
        args = { ...b, ...args };
      }
      return json(200, await matched.route.run(deps.api, args));
    } catch (err) {
      const e = errorOf(err);
      if (e) return json(e.status, e.body);
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
      // Dev user names follow the room-name rule, up to 64 characters.
      if (!validRoom(user, 64))
        return apiError(400, 'bad_request', `expected {"user": 1-64 characters of ${ROOM_CHARS_TEXT}}`);
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
