// The session limits on their own: the token bucket shared by commands per connection and connections per
// address, and the violation window.
import {
  AddressLimiter,
  TokenBucket,
  Violations,
  VIOLATION_WINDOW_MS,
} from '../../services/gateway/src/session/limits';

test('a token bucket allows its burst at once, then says how long to wait', () => {
  const b = new TokenBucket(10, 3);
  expect([b.take(), b.take(), b.take()]).toEqual([0, 0, 0]);
  const wait = b.take();
  expect(wait).toBeGreaterThan(0);
  expect(wait).toBeLessThanOrEqual(100); // one token at 10/s
});

test('the address limiter keeps one bucket per address and is off at 0', () => {
  const limiter = new AddressLimiter(2);
  expect([limiter.allow('a'), limiter.allow('a'), limiter.allow('a')]).toEqual([true, true, false]);
  expect(limiter.allow('b')).toBe(true);
  const off = new AddressLimiter(0);
  expect(Array.from({ length: 1000 }, () => off.allow('a')).every(Boolean)).toBe(true);
});

test('violations older than the window are forgotten, so the count stays bounded', () => {
  const v = new Violations();
  const t0 = 1_000_000;
  expect([v.add(t0), v.add(t0 + 1), v.add(t0 + 2)]).toEqual([1, 2, 3]);
  expect(v.add(t0 + VIOLATION_WINDOW_MS + 1)).toBe(3); // t0 left the window; t0+1 and t0+2 are still in it
  expect(v.add(t0 + 3 * VIOLATION_WINDOW_MS)).toBe(1);
});
