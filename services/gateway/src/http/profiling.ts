// Live profiling of a running node, for finding hot spots under real traffic (what Go's pprof endpoints give):
//   GET /debug/profile/cpu?seconds=N   a V8 CPU profile of the next N seconds (.cpuprofile JSON)
//   GET /debug/profile/heap            a V8 heap snapshot (.heapsnapshot JSON)
// Both open in Chrome DevTools (Performance / Memory panels) and speedscope (the CPU profile). Off unless
// PROFILING=true and API_KEY is set; every request needs `Authorization: Bearer <API_KEY>`. One profile at a
// time per node; N is bounded by PROFILE_MAX_SECONDS. A heap snapshot stops the node while it is written (about a
// second per 100 MB of heap) and needs that much memory again: take it on a node you can afford to pause.
import { Session } from 'node:inspector';
import { getHeapSnapshot } from 'node:v8';
import { timingSafeEqual } from 'node:crypto';
import type { HttpRequest, HttpResponse } from './routes';

export interface ProfilingOptions {
  /** PROFILING=true */
  enabled: boolean;
  apiKey?: string;
  /** PROFILE_MAX_SECONDS: the longest CPU profile one request may ask for. */
  maxSeconds: number;
  nodeId: string;
}

const PREFIX = '/debug/profile/';

const error = (status: number, code: string, message: string): HttpResponse => ({
  status,
  body: JSON.stringify({ error: { code, message } }),
});

function keyMatches(header: string | undefined, apiKey: string): boolean {
  const given = /^Bearer\s+(.+)$/i.exec(header ?? '')?.[1];
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(apiKey);
  return a.length === b.length && timingSafeEqual(a, b);
}

function post<T>(session: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) =>
    session.post(method, params ?? {}, (err, result) => (err ? reject(err) : resolve(result as T))),
  );
}

/** A CPU profile of the next `seconds` seconds of this process, as the .cpuprofile JSON text. */
export async function cpuProfile(seconds: number): Promise<string> {
  const session = new Session();
  session.connect();
  try {
    await post(session, 'Profiler.enable');
    await post(session, 'Profiler.start');
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const { profile } = await post<{ profile: object }>(session, 'Profiler.stop');
    return JSON.stringify(profile);
  } finally {
    session.disconnect();
  }
}

/** A heap snapshot of this process, as the .heapsnapshot JSON bytes. */
export async function heapSnapshot(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of getHeapSnapshot()) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The profiling routes. Returns undefined for any other path, so it can sit in front of the other routes.
 * Answers: 404 `not_found` when off, 401 `unauthorized` without the key, 400 `bad_request` for a bad `seconds`,
 * 409 `busy` while another profile of this node runs.
 */
export function createProfilingRoutes(
  opts: ProfilingOptions,
): (req: HttpRequest) => Promise<HttpResponse> | undefined {
  let busy = false;
  const file = (kind: string) =>
    `attachment; filename="${opts.nodeId.replace(/[^\w.-]/g, '_')}-${new Date().toISOString().replace(/[:.]/g, '-')}.${kind}"`;

  const run = async (req: HttpRequest): Promise<HttpResponse> => {
    if (!opts.enabled || !opts.apiKey)
      return error(404, 'not_found', 'profiling is off (needs PROFILING=true and API_KEY)');
    if (!keyMatches(req.header('authorization'), opts.apiKey))
      return error(401, 'unauthorized', 'missing or wrong API key');
    if (req.method !== 'GET') return error(405, 'bad_request', 'use GET');
    const kind = req.path.slice(PREFIX.length);
    if (kind !== 'cpu' && kind !== 'heap') return error(404, 'not_found', 'use /debug/profile/cpu or /heap');
    let seconds = 0;
    if (kind === 'cpu') {
      const raw = req.query.get('seconds') ?? String(Math.min(10, opts.maxSeconds));
      seconds = /^\d{1,6}$/.test(raw) ? Number(raw) : NaN;
      if (!(seconds >= 1 && seconds <= opts.maxSeconds))
        return error(400, 'bad_request', `seconds must be an integer from 1 to ${opts.maxSeconds}`);
    }
    if (busy) return error(409, 'busy', 'a profile of this node is already being taken');
    busy = true;
    try {
      if (kind === 'cpu')
        return {
          status: 200,
          body: await cpuProfile(seconds),
          type: 'application/json',
          headers: { 'content-disposition': file('cpuprofile') },
        };
      return {
        status: 200,
        body: await heapSnapshot(),
        type: 'application/json',
        headers: { 'content-disposition': file('heapsnapshot') },
      };
    } finally {
      busy = false;
    }
  };

  return (req) => (req.path.startsWith(PREFIX) ? run(req) : undefined);
}
