export interface BackoffOptions {
  /** First delay ceiling, ms. Default 250. */
  initialMs?: number;
  /** Largest delay ceiling, ms. Default 10000. */
  maxMs?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
}

/**
 * Exponential backoff with full jitter: attempt n (0-based) waits a uniformly random time in
 * [0, min(maxMs, initialMs * factor^n)). Spreads a herd of clients reconnecting after a node dies.
 */
export function backoffDelay(
  attempt: number,
  opts: BackoffOptions = {},
  random: () => number = Math.random,
): number {
  const initial = opts.initialMs ?? 250;
  const max = opts.maxMs ?? 10_000;
  const factor = opts.factor ?? 2;
  const ceiling = Math.min(max, initial * Math.pow(factor, Math.max(0, attempt)));
  return Math.floor(random() * ceiling);
}
