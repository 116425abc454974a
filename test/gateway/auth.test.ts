// The JWT is checked in the upgrade: every bad token gets 401 with a reason and no socket.
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import jwt from 'jsonwebtoken';
import {
  startGateway,
  TEST_SECRET,
  token,
  TestClient,
  upgradeStatus,
  type GatewayProc,
} from '../helpers/harness';

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
const privatePem = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const otherPem = other.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
const publicPath = join(mkdtempSync(join(tmpdir(), 'rc-auth-')), 'public.pem');
writeFileSync(publicPath, rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString());

const ISS = 'https://auth.example';
const AUD = 'relaychat';
let gw: GatewayProc;

beforeAll(async () => {
  gw = await startGateway({
    JWT_PUBLIC_KEY: publicPath,
    JWT_ISSUER: ISS,
    JWT_AUDIENCE: AUD,
    ALLOWED_ORIGINS: 'https://chat.example',
  });
});
afterAll(async () => {
  await gw?.kill();
});

const good = (claims: Record<string, unknown> = {}, opts: jwt.SignOptions = {}) =>
  jwt.sign(claims, TEST_SECRET, {
    algorithm: 'HS256',
    subject: 'alice',
    issuer: ISS,
    audience: AUD,
    ...('exp' in claims ? {} : { expiresIn: 60 }),
    ...opts,
  });

function unsigned(payload: Record<string, unknown>): string {
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${b64({ alg: 'none', typ: 'JWT' })}.${b64(payload)}.`;
}

const now = () => Math.floor(Date.now() / 1000);

test.each([
  ['missing', '', 'missing_token'],
  ['garbage', '?token=not-a-jwt', 'malformed'],
  ['wrong signature', `?token=${good({}, {}).slice(0, -4)}AAAA`, 'bad_signature'],
  [
    'signed with another secret',
    `?token=${jwt.sign({}, 'another-secret-0123456789', { algorithm: 'HS256', subject: 'alice', issuer: ISS, audience: AUD })}`,
    'bad_signature',
  ],
  ['alg none', `?token=${unsigned({ sub: 'alice', iss: ISS, aud: AUD, exp: now() + 60 })}`, 'bad_algorithm'],
  ['expired', `?token=${good({ exp: now() - 10 })}`, 'expired'],
  ['not yet valid', `?token=${good({}, { notBefore: 3600 })}`, 'not_yet_valid'],
  ['wrong audience', `?token=${good({}, { audience: 'someone-else' })}`, 'bad_audience'],
  ['wrong issuer', `?token=${good({}, { issuer: 'https://evil.example' })}`, 'bad_issuer'],
  [
    'RS256 signed by another key',
    `?token=${jwt.sign({}, otherPem, { algorithm: 'RS256', subject: 'alice', issuer: ISS, audience: AUD, expiresIn: 60 })}`,
    'bad_signature',
  ],
  [
    'HS384 (not allowed)',
    `?token=${jwt.sign({}, TEST_SECRET, { algorithm: 'HS384', subject: 'alice', issuer: ISS, audience: AUD, expiresIn: 60 })}`,
    'bad_algorithm',
  ],
  [
    'no subject',
    `?token=${jwt.sign({}, TEST_SECRET, { algorithm: 'HS256', issuer: ISS, audience: AUD, expiresIn: 60 })}`,
    'no_subject',
  ],
])('upgrade with %s token is refused with 401', async (_name, query, reason) => {
  const r = await upgradeStatus(gw.wsUrl, query);
  expect(r).toEqual({ status: 401, body: { error: 'unauthorized', reason } });
});

test('RS256 and HS256 tokens from the configured keys are accepted, in the query or the Authorization header', async () => {
  const rs = jwt.sign({}, privatePem, {
    algorithm: 'RS256',
    subject: 'rsa-user',
    issuer: ISS,
    audience: AUD,
    expiresIn: 60,
  });
  const c = await TestClient.connect(gw.wsUrl, rs);
  expect(c.welcome).toMatchObject({ user: 'rsa-user', node: gw.nodeId, protocol: 1 });
  await c.close();
  expect(await upgradeStatus(gw.wsUrl, '', { authorization: `Bearer ${good()}` })).toEqual({
    status: 101,
    body: null,
  });
});

test('a browser origin outside ALLOWED_ORIGINS is refused with 403', async () => {
  expect(await upgradeStatus(gw.wsUrl, `?token=${good()}`, { origin: 'https://evil.example' })).toMatchObject(
    { status: 403 },
  );
  expect(await upgradeStatus(gw.wsUrl, `?token=${good()}`, { origin: 'https://chat.example' })).toEqual({
    status: 101,
    body: null,
  });
});

test('the rooms claim limits joins, with globs', async () => {
  const c = await TestClient.connect(gw.wsUrl, good({ rooms: ['lobby', 'team-*'] }));
  expect((await c.request({ type: 'join', room: 'lobby' })).ok).toBe(true);
  expect((await c.request({ type: 'join', room: 'team-red' })).ok).toBe(true);
  const denied = await c.request({ type: 'join', room: 'admin' });
  expect(denied).toMatchObject({ ok: false, error: { code: 'forbidden' } });
  expect(await c.request({ type: 'presence', room: 'admin' })).toMatchObject({
    ok: false,
    error: { code: 'forbidden' },
  });
  await c.close();
});

test('an expiring token closes the socket with 4001 unless refreshed first', async () => {
  const short = () => good({}, { expiresIn: 2 });
  const lapsing = await TestClient.connect(gw.wsUrl, short());
  const refreshed = await TestClient.connect(gw.wsUrl, short());
  const r = await refreshed.ok({ type: 'refresh', token: good({}, { expiresIn: 600 }) });
  expect(r.expiresAt).toBeGreaterThan(Date.now() + 500_000);
  const wrongUser = await refreshed.request({ type: 'refresh', token: good({}, { subject: 'mallory' }) });
  expect(wrongUser).toMatchObject({ ok: false, error: { code: 'unauthorized' } });
  const badToken = await refreshed.request({ type: 'refresh', token: 'nope' });
  expect(badToken).toMatchObject({ ok: false, error: { code: 'unauthorized' } });

  expect(await lapsing.waitClosed(5000)).toBe(4001);
  expect((await refreshed.request({ type: 'ping' })).ok).toBe(true);
  await refreshed.close();
});

test('with no key configured and NODE_ENV=production the gateway refuses to start, naming the variable', async () => {
  const p = await startGateway({ JWT_SECRET: '', NODE_ENV: 'production' }, { waitReady: false });
  expect(await p.exited).toBe(2);
  expect(p.logs()).toContain('JWT_SECRET or JWT_PUBLIC_KEY must be set when NODE_ENV=production');
});

test('a bad config value stops the process with a message naming the variable', async () => {
  const p = await startGateway({ MAX_MESSAGE_BYTES: 'lots' }, { waitReady: false });
  expect(await p.exited).toBe(2);
  expect(p.logs()).toContain('MAX_MESSAGE_BYTES must be an integer');
});

test('dev mode serves /dev/token and its tokens work; with a key configured /dev/token is 404', async () => {
  const dev = await startGateway({ JWT_SECRET: '' });
  try {
    const res = await fetch(`${dev.url}/dev/token`, {
      method: 'POST',
      body: JSON.stringify({ user: 'devuser' }),
    });
    const { token: t } = (await res.json()) as { token: string };
    const c = await TestClient.connect(dev.wsUrl, t);
    expect(c.welcome.user).toBe('devuser');
    await c.close();
    expect(dev.logs()).toContain('DEV MODE');
    expect((await fetch(`${dev.url}/dev/token`, { method: 'POST', body: '{"user":"<bad>"}' })).status).toBe(
      400,
    );
  } finally {
    await dev.kill();
  }
  expect((await fetch(`${gw.url}/dev/token`, { method: 'POST', body: '{"user":"x"}' })).status).toBe(404);
  // The secret's tokens are not valid elsewhere: a token minted with TEST_SECRET has no issuer here.
  expect((await upgradeStatus(gw.wsUrl, `?token=${token('x')}`)).status).toBe(401);
});

test('DEV_TOKENS=true serves /dev/token signed with the shared JWT_SECRET: its tokens work on every node', async () => {
  const env = { JWT_SECRET: 'shared-secret-0123456789', DEV_TOKENS: 'true' };
  const [n1, n2] = await Promise.all([startGateway(env), startGateway(env)]);
  try {
    const res = await fetch(`${n1.url}/dev/token`, { method: 'POST', body: JSON.stringify({ user: 'sam' }) });
    const { token: t } = (await res.json()) as { token: string };
    const c = await TestClient.connect(n2.wsUrl, t);
    expect(c.welcome).toMatchObject({ user: 'sam', node: n2.nodeId });
    await c.close();
  } finally {
    await Promise.all([n1.kill(), n2.kill()]);
  }
});
