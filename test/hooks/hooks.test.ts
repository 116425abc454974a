// Connect, join and publish hooks against a real HTTP backend (test/helpers/backend.ts), through real gateway
// processes: allow, deny, rewrite, and every failure (slow, down, garbage, oversized, overload) under both
// failure policies. After each attack the node still answers ping.
import WebSocket from 'ws';
import {
  startBackend,
  gate,
  raw,
  type BackendRequest,
  type FakeBackend,
  type Handler,
} from '../helpers/backend';
import { startGateway, token, TestClient, until, upgradeStatus, type GatewayProc } from '../helpers/harness';
import { verify } from '../../services/gateway/src/hooks/signature';
import { HttpHooks } from '../../services/gateway/src/hooks/hooks';
import { pino } from 'pino';

const HOOK_SECRET = 'hook-secret-0123456789';
const API_KEY = 'api-key-for-hook-tests';
let backend: FakeBackend;
const behaviour: Record<string, Handler> = {};
let closed: GatewayProc; // fail closed (the default), connect timeout 3 s, join/publish 1.5 s, 2 concurrent calls
let open: GatewayProc; // fail open, join answers cached for a minute
let backendAuth: GatewayProc; // no JWT key: the connect hook authenticates

const calls = (hook: string) => backend.requests.filter((r) => r.json.hook === hook);
const allowAll = () => {
  behaviour.connect = () => ({ allow: true });
  behaviour.join = () => ({ allow: true });
  behaviour.publish = () => ({ allow: true });
};

function hookEnv(onFailure: 'open' | 'closed'): Record<string, string> {
  return {
    HOOK_CONNECT_URL: `${backend.url}/connect`,
    HOOK_JOIN_URL: `${backend.url}/join`,
    HOOK_PUBLISH_URL: `${backend.url}/publish`,
    HOOK_CONNECT_ON_FAILURE: onFailure,
    HOOK_JOIN_ON_FAILURE: onFailure,
    HOOK_PUBLISH_ON_FAILURE: onFailure,
    HOOK_CONNECT_TIMEOUT_MS: '3000',
    HOOK_JOIN_TIMEOUT_MS: '1500',
    HOOK_PUBLISH_TIMEOUT_MS: '1500',
    HOOK_SECRET,
    MAX_MESSAGE_BYTES: '1024',
    MAX_FRAME_BYTES: '4096',
    HOOK_MAX_RESPONSE_BYTES: '4096',
  };
}

beforeAll(async () => {
  backend = await startBackend((r: BackendRequest) => {
    const h = behaviour[String(r.json.hook)];
    return h ? h(r) : { allow: true };
  });
  allowAll();
  [closed, open, backendAuth] = await Promise.all([
    startGateway({ ...hookEnv('closed'), HOOK_MAX_CONCURRENCY: '2', API_KEY }),
    startGateway({ ...hookEnv('open'), HOOK_JOIN_CACHE_MS: '60000' }),
    startGateway({
      JWT_SECRET: '',
      HOOK_CONNECT_URL: `${backend.url}/connect`,
      HOOK_CONNECT_TIMEOUT_MS: '3000',
    }),
  ]);
});
afterAll(async () => {
  await Promise.all([closed?.kill(), open?.kill(), backendAuth?.kill()]);
  await backend?.stop();
});
beforeEach(allowAll);

async function stillServes(gw: GatewayProc): Promise<void> {
  allowAll();
  const c = await TestClient.connect(gw.wsUrl, token('probe'));
  expect((await c.ok({ type: 'ping' })).pong).toBe(true);
  await c.close();
}

async function metric(gw: GatewayProc, line: RegExp): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const m = text.split('\n').find((l) => line.test(l));
  return m ? Number(m.split(' ').pop()) : 0;
}

describe('connect hook', () => {
  test('gets the verified claims (not the token), signed; its info reaches welcome and its rooms bound joins', async () => {
    behaviour.connect = () => ({ allow: true, info: { plan: 'pro', name: 'Alice' }, rooms: ['team-*'] });
    const before = calls('connect').length;
    const c = await TestClient.connect(closed.wsUrl, token('alice', { extra: { tier: 'gold' } }));
    const req = calls('connect')[before]!;
    expect(req.json.claims).toMatchObject({ sub: 'alice', tier: 'gold' });
    expect(req.json.credentials).toBeUndefined();
    expect(req.raw).not.toContain('eyJ'); // no JWT text
    expect(verify(HOOK_SECRET, req.raw, req.headers['x-relaychat-signature'] as string)).toBe(true);
    expect(c.welcome.user).toBe('alice');
    expect(c.welcome.info).toEqual({ plan: 'pro', name: 'Alice' });
    expect((await c.request({ type: 'join', room: 'team-a' })).ok).toBe(true);
    const r = await c.request({ type: 'join', room: 'lobby' });
    expect(r.error).toMatchObject({ code: 'forbidden' });
    await c.close();
  });

  test('deny passes the backend status and reason to the client; no socket opens', async () => {
    behaviour.connect = () => ({ allow: false, status: 403, reason: 'banned until tomorrow' });
    expect(await upgradeStatus(closed.wsUrl, `?token=${token('mallory')}`)).toEqual({
      status: 403,
      body: { error: 'forbidden', reason: 'banned until tomorrow' },
    });
    behaviour.connect = () => ({ allow: false, status: 401 });
    expect(await upgradeStatus(closed.wsUrl, `?token=${token('mallory')}`)).toEqual({
      status: 401,
      body: { error: 'unauthorized', reason: 'denied' },
    });
  });

  test('a bad JWT is refused before the backend is asked', async () => {
    const before = calls('connect').length;
    expect((await upgradeStatus(closed.wsUrl, '?token=garbage')).status).toBe(401);
    expect(calls('connect').length).toBe(before);
  });

  test.each([
    ['slow (past the timeout)', 'timeout'],
    ['down (connection dropped)', 'network'],
    ['garbage (not JSON)', 'bad_response'],
    ['HTTP 500', 'status'],
    ['a wrong answer shape', 'bad_response'],
  ])('fail closed when the backend is %s: 503 unavailable, counted as %s', async (what, kind) => {
    const slow = gate();
    behaviour.connect = {
      'slow (past the timeout)': () => slow.wait.then(() => ({ allow: true })),
      'down (connection dropped)': () => 'destroy',
      'garbage (not JSON)': () => raw(200, '<html>oops'),
      'HTTP 500': () => raw(500, '{"allow":true}'),
      'a wrong answer shape': () => ({ allow: 'yes' }),
    }[what]!;
    const before = await metric(
      closed,
      new RegExp(`^gateway_hook_errors_total\\{.*hook="connect".*kind="${kind}"`),
    );
    try {
      expect(await upgradeStatus(closed.wsUrl, `?token=${token('bob')}`)).toEqual({
        status: 503,
        body: { error: 'unavailable', reason: 'hook_unavailable' },
      });
    } finally {
      slow.open();
    }
    expect(
      await metric(closed, new RegExp(`^gateway_hook_errors_total\\{.*hook="connect".*kind="${kind}"`)),
    ).toBe(before + 1);
    await stillServes(closed);
  });

  test('a connection it admitted with a JWT stays revocable by the token id', async () => {
    const jti = `hooked-${Date.now()}`;
    const c = await TestClient.connect(closed.wsUrl, token('revocable', { extra: { jti } }));
    const res = await fetch(`${closed.url}/api/revoke-token`, {
      method: 'POST',
      headers: { authorization: `Bearer ${API_KEY}` },
      body: JSON.stringify({ jti, exp: Math.floor(Date.now() / 1000) + 600 }),
    });
    expect(res.status).toBe(200);
    expect(await c.waitClosed(5000)).toBe(4004);
  });

  test('fail open: a failed connect hook admits the JWT identity', async () => {
    behaviour.connect = () => raw(502, 'bad gateway');
    const c = await TestClient.connect(open.wsUrl, token('carol'));
    expect(c.welcome.user).toBe('carol');
    expect(c.welcome.info).toBeUndefined();
    await c.close();
  });

  test('a client that goes away while the hook is pending gets no socket, and the node carries on', async () => {
    const held = gate();
    behaviour.connect = () => held.wait.then(() => ({ allow: true }));
    const opened = await metric(closed, /^gateway_connections_opened_total/);
    const before = calls('connect').length;
    const ws = new WebSocket(`${closed.wsUrl}?token=${token('quitter')}`);
    ws.on('error', () => undefined);
    await until('the hook call', () => calls('connect').length > before);
    ws.terminate();
    held.open();
    await until('the hook answered', () => backend.pending() === 0);
    await stillServes(closed);
    // The probe is the only connection opened since.
    expect(await metric(closed, /^gateway_connections_opened_total/)).toBe(opened + 1);
  });
});

describe('connect hook without a JWT key (the backend authenticates)', () => {
  test('is sent the token, cookie, authorization and user agent; its user id is the identity', async () => {
    behaviour.connect = (r) => {
      const cred = r.json.credentials as Record<string, string>;
      return cred.cookie === 'session=s3cr3t'
        ? { allow: true, user: 'u-42', info: { via: 'cookie' } }
        : { allow: false };
    };
    const before = calls('connect').length;
    const ws = new WebSocket(`${backendAuth.wsUrl}?token=opaque-123`, {
      handshakeTimeout: 10_000,
      headers: { cookie: 'session=s3cr3t', 'user-agent': 'test-agent/1', authorization: 'Session abc' },
    });
    const welcome = await new Promise<Record<string, unknown>>((resolve, reject) => {
      ws.on('message', (d) => resolve(JSON.parse(d.toString()) as Record<string, unknown>));
      ws.on('error', reject);
    });
    expect(welcome).toMatchObject({ type: 'welcome', user: 'u-42', info: { via: 'cookie' } });
    const req = calls('connect')[before]!;
    expect(req.json.credentials).toEqual({
      token: 'opaque-123',
      cookie: 'session=s3cr3t',
      authorization: 'Session abc',
      userAgent: 'test-agent/1',
    });
    expect(req.json.claims).toBeUndefined();
    ws.close();
  });

  test('an allow without a user id is refused (503), a deny with its status', async () => {
    behaviour.connect = () => ({ allow: true });
    expect((await upgradeStatus(backendAuth.wsUrl, '?token=x')).status).toBe(503);
    behaviour.connect = () => ({ allow: false, status: 401, reason: 'session expired' });
    expect(await upgradeStatus(backendAuth.wsUrl, '?token=x')).toEqual({
      status: 401,
      body: { error: 'unauthorized', reason: 'session expired' },
    });
    expect((await fetch(`${backendAuth.url}/readyz`)).status).toBe(200);
  });
});

describe('join hook', () => {
  test('allow joins; deny is forbidden with the backend reason; the backend is told who, where, which connection', async () => {
    const c = await TestClient.connect(closed.wsUrl, token('dave'));
    behaviour.join = (r) =>
      r.json.room === 'vip' ? { allow: false, reason: 'members only' } : { allow: true };
    expect((await c.request({ type: 'join', room: 'open-room' })).ok).toBe(true);
    const r = await c.request({ type: 'join', room: 'vip' });
    expect(r.error).toMatchObject({ code: 'forbidden', message: 'members only', retryable: false });
    const req = calls('join').find((q) => q.json.room === 'vip')!;
    expect(req.json).toMatchObject({ hook: 'join', user: 'dave', room: 'vip', conn: c.welcome.session });
    await c.close();
  });

  test('fail closed: a slow or garbage join hook is `unavailable` (retryable); the connection stays usable', async () => {
    const c = await TestClient.connect(closed.wsUrl, token('erin'));
    const slow = gate();
    behaviour.join = () => slow.wait.then(() => ({ allow: true }));
    try {
      const r = await c.request({ type: 'join', room: 'slow-room' });
      expect(r.error).toMatchObject({ code: 'unavailable', retryable: true });
    } finally {
      slow.open();
    }
    behaviour.join = () => raw(200, 'nope');
    expect((await c.request({ type: 'join', room: 'slow-room' })).error).toMatchObject({
      code: 'unavailable',
    });
    behaviour.join = () => ({ allow: true });
    expect((await c.request({ type: 'join', room: 'slow-room' })).ok).toBe(true);
    expect((await c.ok({ type: 'ping' })).pong).toBe(true);
    await c.close();
  });

  test('fail open: a failed join hook lets the join through; answers are cached for HOOK_JOIN_CACHE_MS', async () => {
    const c = await TestClient.connect(open.wsUrl, token('frank'));
    behaviour.join = () => 'destroy';
    expect((await c.request({ type: 'join', room: 'anywhere' })).ok).toBe(true);
    behaviour.join = () => ({ allow: false, reason: 'closed for the night' });
    expect((await c.request({ type: 'join', room: 'cached' })).error).toMatchObject({ code: 'forbidden' });
    const asked = calls('join').filter((q) => q.json.room === 'cached').length;
    behaviour.join = () => ({ allow: true });
    // Cached deny: the backend is not asked again.
    expect((await c.request({ type: 'join', room: 'cached' })).error).toMatchObject({ code: 'forbidden' });
    expect(calls('join').filter((q) => q.json.room === 'cached').length).toBe(asked);
    expect(await metric(open, /^gateway_hook_calls_total\{.*hook="join".*outcome="cached"/)).toBeGreaterThan(
      0,
    );
    await c.close();
  });
});

describe('publish hook', () => {
  test('allow stores as sent; a rewrite is what members receive and history keeps; deny is `rejected` with the reason', async () => {
    const a = await TestClient.connect(closed.wsUrl, token('gina'));
    const b = await TestClient.connect(closed.wsUrl, token('hank'));
    await a.ok({ type: 'join', room: 'mod' });
    await b.ok({ type: 'join', room: 'mod' });
    behaviour.publish = (r) => {
      const body = r.json.body as { text: string };
      if (body.text.includes('spam')) return { allow: false, reason: 'spam_detected' };
      if (body.text.includes('darn'))
        return { allow: true, body: { text: body.text.replace('darn', '****'), moderated: true } };
      return { allow: true };
    };
    await a.ok({ type: 'publish', room: 'mod', body: { text: 'hello' } });
    await a.ok({ type: 'publish', room: 'mod', body: { text: 'oh darn' } });
    const denied = await a.request({ type: 'publish', room: 'mod', body: { text: 'buy spam' } });
    expect(denied.error).toMatchObject({ code: 'rejected', message: 'spam_detected', retryable: false });
    await until('two messages at hank', () => b.events('message', 'mod').length === 2);
    expect(b.events('message', 'mod').map((m) => m.body)).toEqual([
      { text: 'hello' },
      { text: 'oh ****', moderated: true },
    ]);
    const h = await a.ok({ type: 'history', room: 'mod' });
    expect((h.messages as { body: unknown }[]).map((m) => m.body)).toEqual([
      { text: 'hello' },
      { text: 'oh ****', moderated: true },
    ]);
    const req = calls('publish').find((q) => (q.json.body as { text: string }).text === 'hello')!;
    expect(req.json).toMatchObject({ hook: 'publish', user: 'gina', room: 'mod', conn: a.welcome.session });
    await Promise.all([a.close(), b.close()]);
  });

  test('a replacement body over MAX_MESSAGE_BYTES, or a response over HOOK_MAX_RESPONSE_BYTES, is a failure, not stored', async () => {
    const c = await TestClient.connect(closed.wsUrl, token('ivan'));
    await c.ok({ type: 'join', room: 'big' });
    behaviour.publish = () => ({ allow: true, body: 'x'.repeat(2000) });
    expect((await c.request({ type: 'publish', room: 'big', body: 1 })).error).toMatchObject({
      code: 'unavailable',
    });
    behaviour.publish = () => raw(200, `{"allow":true,"pad":"${'y'.repeat(10_000)}"}`);
    expect((await c.request({ type: 'publish', room: 'big', body: 2 })).error).toMatchObject({
      code: 'unavailable',
    });
    expect((await c.ok({ type: 'history', room: 'big' })).messages).toEqual([]);
    await c.close();
    await stillServes(closed);
  });

  test('fail open: the message is stored as sent when the hook fails', async () => {
    const c = await TestClient.connect(open.wsUrl, token('judy'));
    await c.ok({ type: 'join', room: 'fo' });
    behaviour.publish = () => raw(503, '');
    const r = await c.ok({ type: 'publish', room: 'fo', body: { t: 'kept' } });
    expect(r.offset).toBe(1);
    await c.close();
  });

  test('over HOOK_MAX_CONCURRENCY calls in flight, one more fails at once (`unavailable`, counted as overload)', async () => {
    const c = await TestClient.connect(closed.wsUrl, token('kate'));
    await c.ok({ type: 'join', room: 'busy' });
    const held = gate();
    behaviour.publish = () => held.wait.then(() => ({ allow: true }));
    const before = calls('publish').length;
    const first = [
      c.request({ type: 'publish', room: 'busy', body: 1 }),
      c.request({ type: 'publish', room: 'busy', body: 2 }),
    ];
    await until('two calls held', () => calls('publish').length === before + 2);
    const third = await c.request({ type: 'publish', room: 'busy', body: 3 });
    expect(third.error).toMatchObject({ code: 'unavailable' });
    expect(calls('publish').length).toBe(before + 2);
    held.open();
    await Promise.all(first);
    expect(
      await metric(closed, /^gateway_hook_errors_total\{.*hook="publish".*kind="overload"/),
    ).toBeGreaterThan(0);
    await c.close();
  });
});

test('the latency histogram and call counters are exported per hook', async () => {
  const text = await (await fetch(`${closed.url}/metrics`)).text();
  for (const hook of ['connect', 'join', 'publish']) {
    expect(text).toMatch(new RegExp(`gateway_hook_duration_seconds_count\\{.*hook="${hook}"`));
    expect(text).toMatch(new RegExp(`gateway_hook_calls_total\\{.*hook="${hook}".*outcome="allow"`));
  }
});

test('the join cache holds at most HOOK_JOIN_CACHE_SIZE answers: the oldest is dropped and asked again', async () => {
  const seen: string[] = [];
  behaviour.join = (r) => {
    seen.push(String(r.json.room));
    return { allow: true };
  };
  const hooks = new HttpHooks(
    {
      join: { url: `${backend.url}/join`, timeoutMs: 1000, onFailure: 'closed' },
      maxConcurrency: 4,
      maxResponseBytes: 4096,
      joinCacheMs: 60_000,
      joinCacheSize: 2,
    },
    'unit',
    1024,
    { call: () => undefined, error: () => undefined },
    pino({ level: 'silent' }),
  );
  try {
    for (const room of ['r1', 'r2', 'r3', 'r3', 'r2', 'r1'])
      expect(await hooks.join!({ user: 'u', room, conn: 'c' })).toEqual({ kind: 'allow' });
    // r1 was evicted by r3 (size 2); r2 and r3 were served from the cache.
    expect(seen).toEqual(['r1', 'r2', 'r3', 'r1']);
  } finally {
    await hooks.close();
  }
});

test.each([
  [{ HOOK_CONNECT_URL: 'ftp://backend' }, 'HOOK_CONNECT_URL must be an http:// or https:// URL'],
  [{ HOOK_JOIN_ON_FAILURE: 'maybe' }, 'HOOK_JOIN_ON_FAILURE must be one of closed, open'],
  [{ HOOK_SECRET: 'short' }, 'HOOK_SECRET must be at least 16 characters'],
  [{ WEBHOOK_URL: 'http://127.0.0.1:9/x' }, 'WEBHOOK_URL needs WEBHOOK_SECRET'],
  [{ WEBHOOK_EVENTS: 'user.online,user.deleted' }, 'WEBHOOK_EVENTS must be a comma-separated subset'],
  [
    {
      WEBHOOK_URL: 'http://127.0.0.1:9/x',
      WEBHOOK_SECRET: 'webhook-secret-0123456789',
      WEBHOOK_CLAIM_IDLE_MS: '1000',
    },
    'WEBHOOK_TIMEOUT_MS + WEBHOOK_RETRY_MAX_MS must be below WEBHOOK_CLAIM_IDLE_MS',
  ],
])('a bad hook or webhook setting %j stops the process, naming it', async (env, message) => {
  const p = await startGateway(env as Record<string, string>, { waitReady: false });
  expect(await p.exited).toBe(2);
  expect(p.logs()).toContain(message);
});
