// The `rooms` claim matcher (linear, no regex) and the config rows of the token and connection limits.
import fc from 'fast-check';
import { RoomPattern } from '../../services/gateway/src/auth/room-pattern';
import { TokenVerifier, AuthError } from '../../services/gateway/src/auth/tokens';
import { isWellFormed } from '../../protocol';
import { loadConfig, ConfigError } from '../../services/gateway/src/config';
import jwt from 'jsonwebtoken';

/** The glob semantics, the slow way (a regex; only ever run on small inputs here). */
function reference(glob: string, name: string): boolean {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`).test(name);
}

describe('RoomPattern', () => {
  test.each([
    ['lobby', 'lobby', true],
    ['lobby', 'lobby2', false],
    ['lobby', 'lobb', false],
    ['*', '', true],
    ['*', 'anything', true],
    ['team-*', 'team-', true],
    ['team-*', 'team-red', true],
    ['team-*', 'xteam-red', false],
    ['*-eu', 'team-eu', true],
    ['*-eu', 'team-eux', false],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'acb', false],
    ['a*a', 'a', false],
    ['a*a', 'aa', true],
    ['??', 'ab', true],
    ['??', 'abc', false],
    ['a?c*', 'abcdef', true],
    ['*ab*ab*', 'aab', false],
    ['*ab*ab*', 'abab', true],
    ['.:@', '.:@', true],
    ['a.b', 'aXb', false],
  ])('%s against %s is %s', (glob, name, want) => {
    expect(new RoomPattern(glob).matches(name)).toBe(want);
  });

  test('agrees with the regex semantics on random patterns and names', () => {
    const alphabet = fc.constantFrom('a', 'b', '*', '?', '.');
    const names = fc.constantFrom('a', 'b', '.');
    fc.assert(
      fc.property(
        fc.array(alphabet, { maxLength: 8 }).map((a) => a.join('')),
        fc.array(names, { maxLength: 10 }).map((a) => a.join('')),
        (glob, name) => new RoomPattern(glob).matches(name) === reference(glob, name),
      ),
      { numRuns: 5000 },
    );
  });

  test('adversarial patterns that made the regex backtrack exponentially answer at once, correctly', () => {
    const name = 'a'.repeat(128);
    const cases: [string, string, boolean][] = [
      ['******x', name, false],
      ['*'.repeat(255) + 'x', name, false],
      ['*a'.repeat(127) + 'x', name, false],
      ['*a'.repeat(64) + '*', name, true],
      ['a*'.repeat(64) + 'b', name, false],
      ['?*'.repeat(127) + '?', name, true],
      ['*?'.repeat(128) + 'b', name, false],
      [('*' + 'a'.repeat(7) + '?').repeat(25) + 'b', name, false],
    ];
    // 100 rounds of every case; the regex matcher needed about 30 s for the first case once.
    const start = performance.now();
    for (let round = 0; round < 100; round++)
      for (const [glob, n, want] of cases) expect(new RoomPattern(glob).matches(n)).toBe(want);
    expect(performance.now() - start).toBeLessThan(2000);
  });
});

test('isWellFormed rejects lone surrogates and accepts pairs', () => {
  expect(isWellFormed('alice')).toBe(true);
  expect(isWellFormed('😀')).toBe(true);
  expect(isWellFormed('a\uD83D')).toBe(false);
  expect(isWellFormed('\uDE00b')).toBe(false);
  expect(isWellFormed('\uDE00\uD83D')).toBe(false);
});

describe('TokenVerifier limits', () => {
  const secret = 'unit-secret-0123456789';
  const base = { secret, maxRoomPatterns: 3, maxRoomPatternLength: 8, allowNoExp: false, maxLifetimeS: 0 };
  const sign = (claims: Record<string, unknown>, opts: jwt.SignOptions = {}) =>
    jwt.sign(claims, secret, { algorithm: 'HS256', ...opts });
  const reason = (v: TokenVerifier, t: string) => {
    try {
      v.verify(t);
      return 'ok';
    } catch (err) {
      return (err as AuthError).reason;
    }
  };

  test('caps on the rooms claim, exp required, lifetime, subject well-formed, revoked', () => {
    const v = new TokenVerifier(base);
    const ok = { sub: 'u' };
    expect(reason(v, sign({ ...ok, rooms: ['a', 'b', 'c'] }, { expiresIn: 60 }))).toBe('ok');
    expect(reason(v, sign({ ...ok, rooms: ['a', 'b', 'c', 'd'] }, { expiresIn: 60 }))).toBe(
      'too_many_room_patterns',
    );
    expect(reason(v, sign({ ...ok, rooms: ['x'.repeat(9)] }, { expiresIn: 60 }))).toBe(
      'room_pattern_too_long',
    );
    expect(reason(v, sign(ok))).toBe('no_expiry');
    expect(reason(new TokenVerifier({ ...base, allowNoExp: true }), sign(ok))).toBe('ok');
    const limited = new TokenVerifier({ ...base, maxLifetimeS: 3600 });
    expect(reason(limited, sign(ok, { expiresIn: 3600 }))).toBe('ok');
    expect(reason(limited, sign(ok, { expiresIn: 3601 }))).toBe('lifetime_too_long');
    const now = Math.floor(Date.now() / 1000);
    // Without iat the lifetime is counted from now.
    expect(reason(limited, sign({ ...ok, exp: now + 7200 }, { noTimestamp: true }))).toBe(
      'lifetime_too_long',
    );
    expect(reason(limited, sign({ ...ok, exp: now + 60 }, { noTimestamp: true }))).toBe('ok');
    expect(reason(v, sign({ sub: 'a\uD800' }, { expiresIn: 60 }))).toBe('bad_subject');
    const revoking = new TokenVerifier(base, (id) => id.jti === 'gone');
    expect(reason(revoking, sign({ ...ok, jti: 'gone' }, { expiresIn: 60 }))).toBe('revoked');
    const id = revoking.verify(sign({ ...ok, jti: 'kept' }, { expiresIn: 60 }));
    expect(id).toMatchObject({ user: 'u', jti: 'kept' });
    expect(id.issuedAt).toBeGreaterThan(now - 5);
  });
});

describe('config', () => {
  const dev = () => 'generated-dev-secret';
  test('defaults for the token and connection limits', () => {
    const c = loadConfig({}, dev);
    expect(c.jwt).toMatchObject({
      maxRoomPatterns: 64,
      maxRoomPatternLength: 256,
      allowNoExp: false,
      maxLifetimeS: 0,
    });
    expect(c.limits.maxConnectionsPerUser).toBe(100);
    expect(c.revocationTtlS).toBe(86400);
    expect(loadConfig({ JWT_MAX_LIFETIME_S: '3600' }, dev).revocationTtlS).toBe(3600);
    expect(loadConfig({ NODE_ENV: 'test' }, dev).production).toBe(false);
    expect(loadConfig({ NODE_ENV: 'development' }, dev).production).toBe(false);
  });
  test.each([
    [{ NODE_ENV: 'Production' }, 'NODE_ENV must be one of development, production, test, got "Production"'],
    [{ NODE_ENV: 'prod' }, 'NODE_ENV must be one of'],
    [{ JWT_ALLOW_NO_EXP: 'yes' }, 'JWT_ALLOW_NO_EXP must be one of true, false'],
    [{ JWT_MAX_LIFETIME_S: '-1' }, 'JWT_MAX_LIFETIME_S must be between'],
    [{ MAX_TOKEN_ROOM_PATTERNS: '0' }, 'MAX_TOKEN_ROOM_PATTERNS must be between'],
    [{ MAX_TOKEN_ROOM_PATTERN_LENGTH: 'long' }, 'MAX_TOKEN_ROOM_PATTERN_LENGTH must be an integer'],
    [{ MAX_CONNECTIONS_PER_USER: '-5' }, 'MAX_CONNECTIONS_PER_USER must be between'],
    [
      { REVOCATION_TTL_S: '600', JWT_MAX_LIFETIME_S: '3600' },
      'REVOCATION_TTL_S must be at least JWT_MAX_LIFETIME_S',
    ],
  ])('%j is refused: %s', (env, message) => {
    expect(() => loadConfig(env, dev)).toThrow(ConfigError);
    expect(() => loadConfig(env, dev)).toThrow(message);
  });
});
