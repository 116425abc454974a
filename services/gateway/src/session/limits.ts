// The limits a session applies, in one place: the token bucket (commands per connection, and new connections per
// address), the byte budget of heavy replies, and the violation policy (MAX_VIOLATIONS bad frames a minute).

/** `rate` per second with bursts of `burst`. */
export class TokenBucket {
  private tokens: number;
  private last = performance.now();
  constructor(
    private readonly rate: number,
    private readonly burst: number,
  ) {
    this.tokens = burst;
  }
  /** 0 when allowed (a token is taken), else ms until a token is available. */
  take(): number {
    const now = performance.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) * this.rate) / 1000);
    this.last = now;
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return 0;
    }
    return Math.ceil(((1 - this.tokens) * 1000) / this.rate);
  }
}

/** New connections per address (CONN_RATE_PER_IP, 0 = off): one token bucket per address, forgotten each minute. */
export class AddressLimiter {
  private readonly buckets = new Map<string, TokenBucket>();
  constructor(private readonly rate: number) {
    setInterval(() => this.buckets.clear(), 60_000).unref();
  }
  allow(address: string): boolean {
    if (this.rate === 0) return true;
    let bucket = this.buckets.get(address);
    if (!bucket) this.buckets.set(address, (bucket = new TokenBucket(this.rate, this.rate)));
    return bucket.take() === 0;
  }
}

/**
 * Bytes per second for the heavy replies of one connection (history, presence, replays), with a burst of one
 * second's worth. A heavy command is admitted while the balance is positive and reserves its worst case; the reply
 * then settles the reservation with its real size. The balance may go negative; the connection then waits.
 */
export class ByteBudget {
  private balance: number;
  private last = performance.now();
  constructor(private readonly rate: number) {
    this.balance = rate;
  }
  private refill(): void {
    const now = performance.now();
    this.balance = Math.min(this.rate, this.balance + ((now - this.last) * this.rate) / 1000);
    this.last = now;
  }
  /** 0 when a heavy command may start now, else ms until it may. */
  wait(): number {
    this.refill();
    return this.balance > 0 ? 0 : Math.ceil(((1 - this.balance) * 1000) / this.rate);
  }
  spend(bytes: number): void {
    this.refill();
    this.balance -= bytes;
  }
}

export const VIOLATION_WINDOW_MS = 60_000;

/** Protocol violations of one connection within the last VIOLATION_WINDOW_MS. */
export class Violations {
  private readonly at: number[] = [];
  /** Records one violation now; returns how many fall within the window. */
  add(now = Date.now()): number {
    this.at.push(now);
    while (this.at.length > 0 && this.at[0]! < now - VIOLATION_WINDOW_MS) this.at.shift();
    return this.at.length;
  }
}
