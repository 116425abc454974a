// Issue 10 attacks on tokens and identities, tried against two production nodes on one real Redis: pathological
// and oversized `rooms` claims, tokens without `exp`, lone surrogates, one user opening too many sockets across
// nodes, and revocation (by jti and by user) reaching live connections on every node within a second.
import jwt from 'jsonwebtoken';
import WebSocket from 'ws';
import {
  startGateway,
  startRedis,
  TEST_SECRET,
  TestClient,
  token,
  until,
  upgradeStatus,
  type GatewayProc,
  type RedisProc,
  presenceChange,
} from '../helpers/harness';
import { closeAll, sdk, waitEvent } from '../client/util';

const API_KEY = 'api-key-for-hostile-auth-tests';
let redis: RedisProc;
let a: GatewayProc;
let b: GatewayProc;

beforeAll(async () => {
  redis = await startRedis();
  const env = {
    NODE_ENV: 'production',
    REDIS_URL: redis.url,
    API_KEY,
    MAX_CONNECTIONS_PER_USER: '3',
    CONN_RATE_PER_IP: '0',
  };
  [a, b] = await Promise.all([startGateway(env), startGateway(env)]);
});
afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill()]);
  await redis?.stop();
});

let n = 0;
const uniqueUser = (base: string) => `${base}-${++n}`;

/** A ping answered within a second on both nodes: they still serve. */
async function bothServe(): Promise<void> {
  for (const gw of [a, b]) {
    const c = await TestClient.connect(gw.wsUrl, token(uniqueUser('prober')));
    const started = Date.now();
    expect((await c.request({ type: 'ping' }, 1000)).ok).toBe(true);
    expect(Date.now() - started).toBeLessThan(1000);
    await c.close();
  }
}

async function rssBytes(gw: GatewayProc): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  return Number(/^process_resident_memory_bytes(?:\{[^}]*\})? (\S+)$/m.exec(text)?.[1]);
}

const api = (gw: GatewayProc, path: string, body: unknown) =>
  fetch(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${API_KEY}` },
    body: JSON.stringify(body),
  });

describe('the rooms claim', () => {
  test('a backtracking pattern is matched at once: the join answers forbidden within a second and the node serves', async () => {
    const name = 'a'.repeat(128);
    const patterns = ['******x', `${'*a'.repeat(100)}x`, `${'a*'.repeat(100)}b`, 'lob?y'];
    const c = await TestClient.connect(a.wsUrl, token(uniqueUser('glob'), { rooms: patterns }));
    const started = Date.now();
    const replies = await Promise.all(
      Array.from({ length: 20 }, () => c.request({ type: 'join', room: name }, 1000)),
    );
    expect(Date.now() - started).toBeLessThan(1000);
    for (const r of replies) expect(r).toMatchObject({ ok: false, error: { code: 'forbidden' } });
    expect((await c.request({ type: 'join', room: 'lobby' }, 1000)).ok).toBe(true);
    await c.close();
    await bothServe();
    expect(await rssBytes(a)).toBeLessThan(300 * 1024 * 1024);
  });

  test('a token over the caps on patterns gets 401 with a reason', async () => {
    const many = Array.from({ length: 65 }, (_, i) => `room-${i}`);
    expect(await upgradeStatus(a.wsUrl, `?token=${token('cap', { rooms: many })}`)).toEqual({
      status: 401,
      body: { error: 'unauthorized', reason: 'too_many_room_patterns' },
    });
    expect(await upgradeStatus(b.wsUrl, `?token=${token('cap', { rooms: ['x'.repeat(257)] })}`)).toEqual({
      status: 401,
      body: { error: 'unauthorized', reason: 'room_pattern_too_long' },
    });
    await bothServe();
  });
});

describe('identities and token lifetime', () => {
  test('a token without exp is refused with no_expiry', async () => {
    const noExp = jwt.sign({}, TEST_SECRET, { algorithm: 'HS256', subject: 'forever' });
    expect(await upgradeStatus(a.wsUrl, `?token=${noExp}`)).toEqual({
      status: 401,
      body: { error: 'unauthorized', reason: 'no_expiry' },
    });
  });

  test('a lone surrogate in sub gets 401, in a DM target bad_request, and no keys are made for it', async () => {
    expect(await upgradeStatus(a.wsUrl, `?token=${token('mal\uD800')}`)).toEqual({
      status: 401,
      body: { error: 'unauthorized', reason: 'bad_subject' },
    });
    const c = await TestClient.connect(b.wsUrl, token(uniqueUser('sender')));
    for (const to of ['bob\uD800', '\uDC00bob', 'x\uDFFF\uD800']) {
      expect(await c.request({ type: 'dm', to, body: 'hi' })).toMatchObject({
        ok: false,
        error: { code: 'bad_request' },
      });
    }
    // The valid pair (an emoji) is a fine user id.
    expect((await c.request({ type: 'dm', to: 'bob😀', body: 'hi' })).ok).toBe(true);
    // Neither as U+FFFD nor in the key layout's %u escape of a lone surrogate.
    expect(await redis.cli('--scan', '--pattern', '*\uFFFD*')).toBe('');
    expect(await redis.cli('--scan', '--pattern', '*%u*')).toBe('');
    expect((await c.request({ type: 'ping' }, 1000)).ok).toBe(true);
    await c.close();
  });

  test('refresh applies the new rooms claim: rooms no longer allowed are left, with a `left` event', async () => {
    const user = uniqueUser('narrowed');
    const watcher = await TestClient.connect(a.wsUrl, token(uniqueUser('watcher')));
    await watcher.ok({ type: 'join', room: 'secret' });
    const c = await TestClient.connect(b.wsUrl, token(user, { rooms: ['lobby', 'secret'] }));
    await c.ok({ type: 'join', room: 'lobby' });
    await c.ok({ type: 'join', room: 'secret' });
    await watcher.waitFor((f) => presenceChange(f, 'join', user));
    const r = await c.ok({ type: 'refresh', token: token(user, { rooms: ['lobby'] }) });
    expect(r.expiresAt).toBeGreaterThan(Date.now());
    expect(await c.waitFor((f) => f.type === 'left')).toEqual({
      type: 'left',
      rooms: ['secret'],
      reason: 'token',
    });
    await watcher.waitFor((f) => presenceChange(f, 'leave', user));
    expect(await c.request({ type: 'publish', room: 'secret', body: 'x' })).toMatchObject({
      ok: false,
      error: { code: 'not_member' },
    });
    expect((await c.request({ type: 'publish', room: 'lobby', body: 'still here' })).ok).toBe(true);
    await Promise.all([c.close(), watcher.close()]);
  });
});

/** Opens a socket: 'welcome' when it is welcomed, else the close code it gets first. */
function admission(wsUrl: string, tok: string): Promise<{ ws: WebSocket; outcome: 'welcome' | number }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${wsUrl}?token=${encodeURIComponent(tok)}`);
    ws.once('message', (d) => {
      if ((JSON.parse(d.toString()) as { type?: string }).type === 'welcome')
        resolve({ ws, outcome: 'welcome' });
    });
    ws.once('close', (code) => resolve({ ws, outcome: code }));
    ws.once('unexpected-response', () => reject(new Error('upgrade refused')));
  });
}

describe('MAX_CONNECTIONS_PER_USER across nodes', () => {
  test('the fourth socket of a user, on either node, is closed with 4029; a closed one frees a place', async () => {
    const user = uniqueUser('greedy');
    const open = [
      await TestClient.connect(a.wsUrl, token(user)),
      await TestClient.connect(b.wsUrl, token(user)),
      await TestClient.connect(a.wsUrl, token(user)),
    ];
    for (const gw of [a, b]) expect((await admission(gw.wsUrl, token(user))).outcome).toBe(4029);
    await open.pop()!.close();
    const next = await until('a place is free again', async () => {
      const r = await admission(b.wsUrl, token(user));
      if (r.outcome === 'welcome') return r.ws;
      return undefined;
    });
    next!.close();
    await Promise.all(open.map((c) => c.close()));
    await bothServe();
  });

  test('concurrent connects of one user on two nodes: exactly the cap are welcomed', async () => {
    const user = uniqueUser('racer');
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => admission((i % 2 ? a : b).wsUrl, token(user))),
    );
    expect(results.filter((r) => r.outcome === 'welcome')).toHaveLength(3);
    expect(results.filter((r) => r.outcome === 4029)).toHaveLength(9);
    for (const r of results) r.ws.close();
  });
});

describe('revocation', () => {
  test('revoking a jti on one node closes its connections on the other with 4004 within a second', async () => {
    const user = uniqueUser('rick');
    const revokedToken = token(user, { extra: { jti: `jti-${user}` } });
    const keptToken = token(user, { extra: { jti: `kept-${user}` } });
    const victim = await TestClient.connect(b.wsUrl, revokedToken);
    const bystander = await TestClient.connect(b.wsUrl, keptToken);
    const res = await api(a, '/api/revoke-token', {
      jti: `jti-${user}`,
      exp: Math.floor(Date.now() / 1000) + 600,
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ revoked: true, jti: `jti-${user}` });
    expect(await victim.waitClosed(1000)).toBe(4004);
    for (const gw of [a, b])
      expect(await upgradeStatus(gw.wsUrl, `?token=${revokedToken}`)).toEqual({
        status: 401,
        body: { error: 'unauthorized', reason: 'revoked' },
      });
    expect((await bystander.request({ type: 'ping' }, 1000)).ok).toBe(true);
    expect(await bystander.request({ type: 'refresh', token: revokedToken })).toMatchObject({
      ok: false,
      error: { code: 'unauthorized', message: 'token rejected: revoked' },
    });
    await bystander.close();
  });

  test('revoking a user closes every connection on both nodes; tokens issued after the call work', async () => {
    const user = uniqueUser('banned');
    const old = token(user);
    const conns = [await TestClient.connect(a.wsUrl, old), await TestClient.connect(b.wsUrl, token(user))];
    const res = await api(b, '/api/revoke-user', { user });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { issuedBefore: number; expiresAt: number };
    expect(body).toMatchObject({ revoked: true, user });
    expect(body.expiresAt).toBeGreaterThan(Date.now() + 86_000_000); // REVOCATION_TTL_S default: one day
    expect(await Promise.all(conns.map((c) => c.waitClosed(1000)))).toEqual([4004, 4004]);
    for (const gw of [a, b])
      expect(await upgradeStatus(gw.wsUrl, `?token=${old}`)).toEqual({
        status: 401,
        body: { error: 'unauthorized', reason: 'revoked' },
      });
    // Tokens issued from the second after the call on are good, on both nodes.
    await until('the revocation second is over', () => Date.now() / 1000 >= body.issuedBefore, 2000);
    const fresh = token(user);
    const again = [await TestClient.connect(a.wsUrl, fresh), await TestClient.connect(b.wsUrl, fresh)];
    for (const c of again) expect((await c.request({ type: 'ping' }, 1000)).ok).toBe(true);
    await Promise.all(again.map((c) => c.close()));
    await bothServe();
  });

  test('the denylist is kept in Redis no longer than asked, and a node started later refuses the token', async () => {
    const user = uniqueUser('later');
    const t = token(user, { extra: { jti: `late-${user}` } });
    expect((await api(a, '/api/revoke-token', { jti: `late-${user}`, ttl: 120 })).status).toBe(200);
    const ttl = Number(await redis.cli('PTTL', 'rc:{revoked}:x'));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(86_400_000);
    const c = await startGateway({ NODE_ENV: 'production', REDIS_URL: redis.url, API_KEY });
    try {
      expect(await upgradeStatus(c.wsUrl, `?token=${t}`)).toEqual({
        status: 401,
        body: { error: 'unauthorized', reason: 'revoked' },
      });
    } finally {
      await c.kill();
    }
  });

  test('the SDK treats 4004 as signed out: no reconnect, even with a token getter; a `left` event drops rooms', async () => {
    const user = uniqueUser('sdk');
    let fetched = 0;
    // The first token is short-lived, so the SDK refreshes at once, with a token that drops `side`.
    const t = sdk(user, {
      url: [a.wsUrl, b.wsUrl],
      refreshBeforeMs: 2500,
      token: (why) => {
        fetched++;
        return why === 'connect'
          ? token(user, { rooms: ['lobby', 'side'], expiresIn: 3 })
          : token(user, { rooms: ['lobby'] });
      },
    });
    await t.client.connect();
    await t.client.join('lobby');
    await t.client.join('side');
    // The server leaves `side` and says so; the SDK stops rejoining it.
    expect(await waitEvent(t, 'left')).toEqual({ rooms: ['side'], reason: 'token' });
    expect(t.client.rooms()).toEqual(['lobby']);
    const getterCalls = fetched;
    expect((await api(a, '/api/revoke-user', { user })).status).toBe(200);
    expect(await waitEvent(t, 'signedOut', () => true, 1000)).toMatchObject({ code: 4004 });
    expect(t.client.state).toBe('disconnected');
    expect(t.seen.disconnected.at(-1)).toMatchObject({ code: 4004, willReconnect: false });
    expect(fetched).toBe(getterCalls);
    closeAll();
  });

  test('a revocation missed while a node was cut off from Redis is loaded when it reconnects, and applied', async () => {
    const user = uniqueUser('missed');
    const c = await TestClient.connect(b.wsUrl, token(user, { extra: { jti: `missed-${user}` } }));
    // Stored as the revoke call would store it, but never published: no node hears of it.
    const expiresAt = Date.now() + 600_000;
    await redis.cli('ZADD', 'rc:{revoked}:x', String(expiresAt), `j:missed-${user}`);
    expect((await c.request({ type: 'ping' }, 1000)).ok).toBe(true);
    // Cut every node's subscriber connection: each reconnects, resubscribes and reloads the denylist.
    await redis.cli('CLIENT', 'KILL', 'TYPE', 'pubsub');
    expect(await c.waitClosed(5000)).toBe(4004);
    for (const gw of [a, b])
      await until(`${gw.nodeId} ready again`, async () => (await fetch(`${gw.url}/readyz`)).status === 200);
    await bothServe();
  });

  test('the revocation API checks its input and its key', async () => {
    expect((await api(a, '/api/revoke-user', { user: 'x\uD800' })).status).toBe(400);
    expect((await api(a, '/api/revoke-token', {})).status).toBe(400);
    expect((await api(a, '/api/revoke-token', { jti: 'j', ttl: -1 })).status).toBe(400);
    const noKey = await fetch(`${a.url}/api/revoke-user`, { method: 'POST', body: '{"user":"u"}' });
    expect(noKey.status).toBe(401);
  });
});

test('a NODE_ENV typo stops the process with a message naming the variable', async () => {
  const p = await startGateway({ NODE_ENV: 'Production' }, { waitReady: false });
  expect(await p.exited).toBe(2);
  expect(p.logs()).toContain('NODE_ENV must be one of development, production, test, got "Production"');
});

test('memory engine, one node: /dev/token refuses rooms over the caps; revocation closes with 4004', async () => {
  const dev = await startGateway({ DEV_TOKENS: 'true', API_KEY, MAX_TOKEN_ROOM_PATTERNS: '4' });
  try {
    const mint = (body: unknown) =>
      fetch(`${dev.url}/dev/token`, { method: 'POST', body: JSON.stringify(body) });
    expect((await mint({ user: 'd', rooms: ['a', 'b', 'c', 'd', 'e'] })).status).toBe(400);
    expect((await mint({ user: 'd', rooms: ['x'.repeat(257)] })).status).toBe(400);
    const { token: t } = (await (await mint({ user: 'd', rooms: ['a*'] })).json()) as { token: string };
    const c = await TestClient.connect(dev.wsUrl, t);
    expect((await api(dev, '/api/revoke-user', { user: 'd' })).status).toBe(200);
    expect(await c.waitClosed(1000)).toBe(4004);
    expect(await upgradeStatus(dev.wsUrl, `?token=${t}`)).toEqual({
      status: 401,
      body: { error: 'unauthorized', reason: 'revoked' },
    });
  } finally {
    await dev.kill();
  }
});
