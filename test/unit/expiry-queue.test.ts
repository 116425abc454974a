import { jest } from '@jest/globals';
import { ExpiryQueue } from '../../services/gateway/src/auth/expiry-queue';

beforeEach(() => jest.useFakeTimers({ now: 1_000_000 }));
afterEach(() => jest.useRealTimers());

test('items expire at their instant, in instant order, each once, behind one timer', () => {
  const fired: string[] = [];
  const q = new ExpiryQueue<string>((s) => fired.push(s));
  q.add('c', 1_003_000);
  q.add('a', 1_001_000);
  q.add('b', 1_001_000);
  q.add('b', 1_001_000); // twice: still once
  expect(q.size).toBe(3);
  expect(jest.getTimerCount()).toBe(1);
  jest.advanceTimersByTime(999);
  expect(fired).toEqual([]);
  jest.advanceTimersByTime(1);
  expect(fired).toEqual(['a', 'b']);
  expect(jest.getTimerCount()).toBe(1);
  jest.advanceTimersByTime(2000);
  expect(fired).toEqual(['a', 'b', 'c']);
  expect(q.size).toBe(0);
  expect(jest.getTimerCount()).toBe(0);
});

test('a removed item never fires; an earlier add re-arms the timer; a past instant fires at once', () => {
  const fired: string[] = [];
  const q = new ExpiryQueue<string>((s) => fired.push(s));
  q.add('late', 1_010_000);
  q.add('gone', 1_002_000);
  q.remove('gone', 1_002_000);
  q.remove('never-added', 1_002_000);
  q.add('early', 1_001_000);
  jest.advanceTimersByTime(1000);
  expect(fired).toEqual(['early']);
  jest.advanceTimersByTime(1000);
  expect(fired).toEqual(['early']);
  q.add('past', 999_000);
  jest.advanceTimersByTime(0);
  expect(fired).toEqual(['early', 'past']);
  // A refresh: the old instant is removed, the new one added.
  q.remove('late', 1_010_000);
  q.add('late', 1_020_000);
  jest.advanceTimersByTime(10_000);
  expect(fired).toEqual(['early', 'past']);
  jest.advanceTimersByTime(10_000);
  expect(fired).toEqual(['early', 'past', 'late']);
  expect(q.size).toBe(0);
});

test('an instant beyond the longest timer is reached by re-arming, not by firing early', () => {
  const fired: string[] = [];
  const q = new ExpiryQueue<string>((s) => fired.push(s));
  const far = 1_000_000 + 3 * 2 ** 31;
  q.add('far', far);
  jest.advanceTimersByTime(2 ** 31 - 1);
  expect(fired).toEqual([]);
  jest.advanceTimersByTime(far - Date.now() - 1);
  expect(fired).toEqual([]);
  jest.advanceTimersByTime(1);
  expect(fired).toEqual(['far']);
});

test('100,000 items cost one timer', () => {
  let n = 0;
  const q = new ExpiryQueue<number>(() => n++);
  for (let i = 0; i < 100_000; i++) q.add(i, 1_000_000 + 1000 * (1 + (i % 3600)));
  expect(jest.getTimerCount()).toBe(1);
  jest.advanceTimersByTime(3600 * 1000);
  expect(n).toBe(100_000);
  expect(jest.getTimerCount()).toBe(0);
});
