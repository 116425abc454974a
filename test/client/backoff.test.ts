// Reconnect delays: exponential ceiling, capped, full jitter (uniform in [0, ceiling)).
import { backoffDelay } from '../../client/src';

test('the ceiling doubles per attempt from initialMs and stops at maxMs', () => {
  const top = (attempt: number) => backoffDelay(attempt, { initialMs: 100, maxMs: 1000 }, () => 0.999999);
  expect([0, 1, 2, 3, 4, 5, 10].map(top)).toEqual([99, 199, 399, 799, 999, 999, 999]);
});

test('full jitter: the delay is random() times the ceiling, so it can be anything from 0 up', () => {
  expect(backoffDelay(3, { initialMs: 100, maxMs: 10_000 }, () => 0)).toBe(0);
  expect(backoffDelay(3, { initialMs: 100, maxMs: 10_000 }, () => 0.5)).toBe(400);
  const samples = Array.from({ length: 2000 }, () => backoffDelay(2, { initialMs: 100, maxMs: 10_000 }));
  expect(Math.min(...samples)).toBeGreaterThanOrEqual(0);
  expect(Math.max(...samples)).toBeLessThan(400);
  // Spread over the whole range, not bunched at the ceiling.
  expect(samples.filter((d) => d < 200).length).toBeGreaterThan(800);
});

test('defaults: 250 ms initial, 10 s cap', () => {
  expect(backoffDelay(0, {}, () => 0.999999)).toBe(249);
  expect(backoffDelay(20, {}, () => 0.999999)).toBe(9999);
});
