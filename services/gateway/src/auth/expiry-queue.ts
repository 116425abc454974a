// Token expiries of every connection on one node, behind one timer. A Timeout per connection costs about 260 bytes
// (the Timeout, its closure, and a timer list per distinct duration that Node keeps until it would have fired);
// here a connection costs one Set entry in the bucket of its expiry instant.

const MAX_TIMER_MS = 2 ** 31 - 1;

export class ExpiryQueue<T> {
  /** Expiry instant (ms since epoch) -> items expiring then. JWT `exp` is in seconds, so instants repeat. */
  private readonly buckets = new Map<number, Set<T>>();
  private timer?: NodeJS.Timeout;
  /** When the timer fires (Infinity when none is armed). */
  private armedAt = Infinity;
  private count = 0;

  /** `expired` is called once per item whose instant has passed, unless it was removed first. */
  constructor(
    private readonly expired: (item: T) => void,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.count;
  }

  add(item: T, at: number): void {
    let bucket = this.buckets.get(at);
    if (!bucket) this.buckets.set(at, (bucket = new Set()));
    if (bucket.has(item)) return;
    bucket.add(item);
    this.count++;
    if (at < this.armedAt) this.arm(at);
  }

  /** Forgets the item added with instant `at`; a no-op if it is not there. */
  remove(item: T, at: number): void {
    const bucket = this.buckets.get(at);
    if (!bucket?.delete(item)) return;
    this.count--;
    if (bucket.size === 0) this.buckets.delete(at);
    // The timer stays armed: firing early finds nothing due and re-arms for the next instant.
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.armedAt = Infinity;
  }

  private arm(at: number): void {
    clearTimeout(this.timer);
    this.armedAt = at;
    this.timer = setTimeout(() => this.fire(), Math.min(Math.max(at - this.now(), 0), MAX_TIMER_MS));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.armedAt = Infinity;
    const now = this.now();
    const due: T[] = [];
    let next = Infinity;
    for (const [at, bucket] of this.buckets) {
      if (at <= now) {
        for (const item of bucket) due.push(item);
        this.buckets.delete(at);
        this.count -= bucket.size;
      } else if (at < next) next = at;
    }
    if (next < Infinity) this.arm(next);
    for (const item of due) this.expired(item);
  }
}
