// Raw protocol clients that keep score for the fault tests. They reconnect to the next node after a drop and
// rejoin with `since`, as the promise expects of a client, but they do NOT dedupe: every frame is counted, so a
// duplicate or a missing offset is the server's, not hidden by the client.
import WebSocket from 'ws';
import { token } from '../helpers/harness';

type Json = Record<string, unknown>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A socket that joins `room` and rejoins with since after every drop, trying the URLs in turn. */
export class Subscriber {
  /** "epoch:offset" -> times received */
  readonly counts = new Map<string, number>();
  /** offsets in arrival order, with their epoch */
  readonly order: [string, number][] = [];
  readonly gaps: Json[] = [];
  readonly latencies: number[] = [];
  reconnects = 0;
  notRecovered = 0;
  epoch?: string;
  last = 0;
  private ws?: WebSocket;
  private stopped = false;
  private urlIndex: number;
  private nextId = 1;
  private joined!: Promise<void>;

  constructor(
    readonly name: string,
    private readonly urls: string[],
    private readonly room: string,
    start = 0,
  ) {
    this.urlIndex = start;
  }

  /** Resolves once joined the first time. */
  start(): Promise<void> {
    this.joined = this.connect();
    return this.joined;
  }

  private async connect(): Promise<void> {
    for (let attempt = 0; !this.stopped; attempt++) {
      const url = this.urls[this.urlIndex % this.urls.length]!;
      try {
        await this.open(url);
        return;
      } catch {
        this.urlIndex++;
        await sleep(Math.min(50 * 2 ** attempt, 500) * Math.random() + 20);
      }
    }
  }

  private open(url: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`${url}?token=${token(this.name)}`);
      let joined = false;
      ws.on('error', () => undefined);
      ws.on('close', () => {
        if (!joined) return reject(new Error('closed before join'));
        if (this.stopped) return;
        this.reconnects++;
        this.urlIndex++;
        void this.connect();
      });
      ws.on('message', (data) => {
        const f = JSON.parse(data.toString()) as Json;
        if (f.type === 'welcome') {
          const since = this.epoch === undefined ? undefined : { offset: this.last, epoch: this.epoch };
          ws.send(JSON.stringify({ id: this.nextId++, type: 'join', room: this.room, since }));
        } else if (f.re !== undefined && !joined) {
          if (!f.ok) return reject(new Error(`join failed: ${JSON.stringify(f.error)}`));
          joined = true;
          if (f.recovered === false) {
            this.notRecovered++;
            this.gaps.push({ recovered: false, from: this.last + 1, epoch: f.epoch });
            this.last = f.offset as number;
          }
          this.epoch = f.epoch as string;
          if (this.last === 0 && this.counts.size === 0) this.last = f.offset as number;
          resolve();
        } else if (f.type === 'message' && f.room === this.room) {
          const offset = f.offset as number;
          if (f.epoch !== this.epoch) {
            // Offset 0 has seen nothing: a room that was empty (epoch "") at join continues into its first epoch.
            if (this.last > 0) this.gaps.push({ epochChange: true, from: this.last + 1, epoch: f.epoch });
            this.epoch = f.epoch as string;
          }
          const key = `${String(f.epoch)}:${offset}`;
          this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
          this.order.push([f.epoch as string, offset]);
          this.last = Math.max(this.last, offset);
          const sentAt = (f.body as { t?: number } | undefined)?.t;
          if (typeof sentAt === 'number') this.latencies.push(Date.now() - sentAt);
        } else if (f.type === 'gap') {
          this.gaps.push(f);
          if (typeof f.epoch === 'string') this.epoch = f.epoch;
          if (f.to === null) this.last = 0;
          else this.last = Math.max(this.last, f.to as number);
        }
      });
      this.ws = ws;
    });
  }

  /** Stops reading from the socket (the kernel buffers fill, then the server sees backpressure). */
  pauseReading(): void {
    (this.ws as unknown as { _socket: { pause(): void } })._socket.pause();
  }

  resumeReading(): void {
    (this.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.ws?.close();
  }
}

export interface Acked {
  offset: number;
  epoch: string;
  id: string;
}

/** Publishes numbered messages with idempotency keys; retries a message with the same key until it is acked. */
export class Publisher {
  readonly acked = new Map<number, Acked>(); // seq -> ack
  readonly errors = new Map<string, number>(); // error code -> count
  duplicates = 0;
  attempts = 0;
  private ws?: WebSocket;
  private ready?: Promise<WebSocket>;
  private nextId = 1;
  private urlIndex = 0;
  private pending = new Map<number, (f: Json | null) => void>();
  /** Extra body bytes per message. */
  pad = '';

  constructor(
    readonly name: string,
    private readonly urls: string[],
    private readonly room: string,
  ) {}

  private connection(): Promise<WebSocket> {
    if (this.ready) return this.ready;
    this.ready = new Promise((resolve, reject) => {
      const url = this.urls[this.urlIndex++ % this.urls.length]!;
      const ws = new WebSocket(`${url}?token=${token(this.name)}`);
      ws.on('error', () => undefined);
      ws.on('close', () => {
        this.ready = undefined;
        for (const done of this.pending.values()) done(null);
        this.pending.clear();
        reject(new Error('closed'));
      });
      ws.on('message', (data) => {
        const f = JSON.parse(data.toString()) as Json;
        if (f.type === 'welcome') {
          const id = this.nextId++;
          this.pending.set(id, (r) => (r?.ok ? resolve(ws) : ws.close()));
          ws.send(JSON.stringify({ id, type: 'join', room: this.room }));
        } else if (typeof f.re === 'number') {
          const done = this.pending.get(f.re);
          this.pending.delete(f.re);
          done?.(f);
        }
      });
      this.ws = ws;
    });
    this.ready.catch(() => undefined);
    return this.ready;
  }

  /** One attempt: the reply, or null when the socket dropped first. */
  private async attempt(seq: number): Promise<Json | null> {
    let ws: WebSocket;
    try {
      ws = await this.connection();
    } catch {
      return null;
    }
    return new Promise((resolve) => {
      const id = this.nextId++;
      this.pending.set(id, resolve);
      this.attempts++;
      ws.send(
        JSON.stringify({
          id,
          type: 'publish',
          room: this.room,
          key: `${this.name}-${seq}`,
          body: { seq, t: Date.now(), pad: this.pad },
        }),
      );
    });
  }

  /** Publishes message `seq`, retrying (same key) until ok or `deadline`. Returns whether it was acked. */
  async publish(seq: number, deadline: number): Promise<boolean> {
    while (Date.now() < deadline) {
      const r = await this.attempt(seq);
      if (r?.ok) {
        if (r.duplicate) this.duplicates++;
        this.acked.set(seq, { offset: r.offset as number, epoch: r.epoch as string, id: r.id as string });
        return true;
      }
      const code = r ? String((r.error as Json).code) : 'dropped';
      this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
      await sleep(r ? 50 : 100);
    }
    return false;
  }

  async stop(): Promise<void> {
    this.ws?.close();
  }
}

export interface Score {
  published: number;
  acknowledged: number;
  received: Record<string, number>;
  lost: number;
  duplicated: number;
  outOfOrder: number;
  gaps: number;
}

/** Lost = acked offsets a subscriber never got (and no gap covered); duplicated = extra copies of an offset. */
export function score(published: number, acked: Acked[], subs: Subscriber[]): Score {
  let lost = 0;
  let duplicated = 0;
  let outOfOrder = 0;
  let gaps = 0;
  const received: Record<string, number> = {};
  for (const s of subs) {
    received[s.name] = s.order.length;
    gaps += s.gaps.length;
    for (const a of acked) if (!s.counts.has(`${a.epoch}:${a.offset}`)) lost++;
    for (const n of s.counts.values()) if (n > 1) duplicated += n - 1;
    for (let i = 1; i < s.order.length; i++) {
      const [e0, o0] = s.order[i - 1]!;
      const [e1, o1] = s.order[i]!;
      if (e0 === e1 && o1 <= o0) outOfOrder++;
    }
  }
  return { published, acknowledged: acked.length, received, lost, duplicated, outOfOrder, gaps };
}

/** Publishes `count` messages at `perSecond`, one at a time per publisher, retrying each until acked. */
export async function stream(
  pub: Publisher,
  count: number,
  perSecond: number,
  deadlineMs: number,
): Promise<void> {
  const start = Date.now();
  const deadline = start + deadlineMs;
  for (let seq = 1; seq <= count; seq++) {
    const due = start + (seq * 1000) / perSecond;
    if (due > Date.now()) await sleep(due - Date.now());
    await pub.publish(seq, deadline);
  }
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}
