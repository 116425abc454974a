// A mergeable latency histogram: log-spaced buckets about 1% wide from 1 µs to ~100 s, so percentiles carry at
// most ~1% error, and histograms from several generator processes add up bucket by bucket.

const GROWTH = 1.01;
const LOG_GROWTH = Math.log(GROWTH);
const BUCKETS = Math.ceil(Math.log(1e8) / LOG_GROWTH) + 1;

export interface HistogramJson {
  counts: Record<number, number>;
  count: number;
  max: number;
  sum: number;
}

export class Histogram {
  private counts = new Float64Array(BUCKETS);
  count = 0;
  /** Exact largest value recorded, in microseconds. */
  max = 0;
  sum = 0;

  /** Records one value in microseconds (values below 1 µs count as 1 µs). */
  record(us: number): void {
    const v = us < 1 ? 1 : us;
    const i = Math.min(BUCKETS - 1, Math.floor(Math.log(v) / LOG_GROWTH));
    this.counts[i]! += 1;
    this.count += 1;
    this.sum += v;
    if (v > this.max) this.max = v;
  }

  /** The value at quantile q (0..1), in microseconds: the upper edge of the bucket holding it, capped by max. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(this.max, GROWTH ** (i + 1));
    }
    return this.max;
  }

  mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  merge(other: Histogram | HistogramJson): this {
    const o = other instanceof Histogram ? other.toJSON() : other;
    for (const [i, c] of Object.entries(o.counts)) this.counts[Number(i)]! += c;
    this.count += o.count;
    this.sum += o.sum;
    if (o.max > this.max) this.max = o.max;
    return this;
  }

  /** Sparse form for IPC and result files. */
  toJSON(): HistogramJson {
    const counts: Record<number, number> = {};
    for (let i = 0; i < BUCKETS; i++) if (this.counts[i]! > 0) counts[i] = this.counts[i]!;
    return { counts, count: this.count, max: this.max, sum: this.sum };
  }

  static from(json: HistogramJson): Histogram {
    return new Histogram().merge(json);
  }
}
