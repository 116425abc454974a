// Tokens for the page: dev mode mints one per user through POST /dev/token; otherwise the user pastes a JWT.

export class NotDevModeError extends Error {
  constructor() {
    super('This gateway is not in dev mode: sign in with a token.');
  }
}

/** `sub` and `exp` of a JWT, read without verifying (the gateway verifies). */
export function readClaims(token: string): { sub?: string; exp?: number } {
  const part = token.split('.')[1];
  if (!part) return {};
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
    const claims = JSON.parse(json) as { sub?: unknown; exp?: unknown };
    return {
      sub: typeof claims.sub === 'string' ? claims.sub : undefined,
      exp: typeof claims.exp === 'number' ? claims.exp : undefined,
    };
  } catch {
    return {};
  }
}

async function mint(origin: string, user: string): Promise<string> {
  const res = await fetch(`${origin}/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user }),
  });
  if (res.status === 404) throw new NotDevModeError();
  if (!res.ok) throw new Error(`/dev/token answered ${res.status}`);
  const { token } = (await res.json()) as { token?: unknown };
  if (typeof token !== 'string') throw new Error('/dev/token answered without a token');
  return token;
}

/**
 * A token getter for dev mode. Asks the page's own origin first, then the HTTP origins of the other gateways;
 * when none answers (the node that served the page died and the others do not allow cross-origin calls) it
 * falls back to the last token while that one is still valid, so the page can fail over.
 */
export function devTokenGetter(user: string, origins: string[]): () => Promise<string> {
  let last: string | undefined;
  return async () => {
    let lastError: unknown;
    for (const origin of origins) {
      try {
        last = await mint(origin, user);
        return last;
      } catch (err) {
        if (err instanceof NotDevModeError) throw err;
        lastError = err;
      }
    }
    const exp = last ? readClaims(last).exp : undefined;
    if (last && (exp === undefined || exp * 1000 > Date.now() + 5000)) return last;
    throw lastError instanceof Error ? lastError : new Error('cannot reach /dev/token');
  };
}

/** ws(s)://host/ws for the page's own host, or the list from `?gateways=a,b`. */
export function gatewayUrls(location: Location): string[] {
  const param = new URLSearchParams(location.search).get('gateways');
  const list = (param ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => /^wss?:\/\//.test(s));
  if (list.length > 0) return list;
  return [`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`];
}

/** The page's origin first, then each gateway URL's HTTP origin. */
export function tokenOrigins(location: Location, urls: string[]): string[] {
  const out = [location.origin];
  for (const u of urls) {
    try {
      const url = new URL(u);
      const origin = `${url.protocol === 'wss:' ? 'https:' : 'http:'}//${url.host}`;
      if (!out.includes(origin)) out.push(origin);
    } catch {
      // not a URL; ignore
    }
  }
  return out;
}
