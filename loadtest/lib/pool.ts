// The coordinator's side of the generator processes: starts them (optionally pinned with taskset), splits
// connection ranges and publish rates between them, and merges what they report.
import { spawn, type ChildProcess } from 'node:child_process';
import { Histogram } from './histogram';
import type { ConnectResult, Envelope, Layout, PhaseSent, PhaseStatsJson, Reply, Request } from './ipc';

type ReplyOf<T extends Reply['type']> = Extract<Reply, { type: T }>;

interface Gen {
  id: number;
  child: ChildProcess;
  pending: Map<number, { resolve(r: Reply): void; reject(e: Error): void }>;
  seq: number;
  lost: number;
  gapped: number;
  conns: number;
  exited: boolean;
}

export interface PoolOptions {
  /** Path of the built generator entry (dist/loadtest/generator.js). */
  script: string;
  count: number;
  /** A taskset CPU list (e.g. "1") to pin the generators to. */
  cpus?: string;
}

export interface PhaseResult {
  published: number;
  expected: number;
  delivered: number;
  duplicates: number;
  publishErrors: number;
  wireBytes: number;
  latency: Histogram;
  /** second of send time -> [deliveries, worst latency µs], merged over the generators. */
  timeline: Map<number, [number, number]>;
}

export class GeneratorPool {
  private constructor(private readonly gens: Gen[]) {}

  static start(opts: PoolOptions): GeneratorPool {
    const gens: Gen[] = [];
    for (let id = 0; id < opts.count; id++) {
      const [cmd, args] = opts.cpus
        ? ['taskset', ['-c', opts.cpus, process.execPath, opts.script]]
        : [process.execPath, [opts.script]];
      const child = spawn(cmd, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const gen: Gen = { id, child, pending: new Map(), seq: 0, lost: 0, gapped: 0, conns: 0, exited: false };
      child.on('message', (env: Envelope<Reply>) => {
        gen.lost = env.lost;
        gen.gapped = env.gapped;
        const p = gen.pending.get(env.seq);
        if (!p) return;
        gen.pending.delete(env.seq);
        if (env.body.type === 'error') p.reject(new Error(`generator ${id}: ${env.body.message}`));
        else p.resolve(env.body);
      });
      child.on('exit', (code, signal) => {
        gen.exited = true;
        for (const p of gen.pending.values())
          p.reject(new Error(`generator ${id} exited (${code ?? signal})`));
        gen.pending.clear();
      });
      gens.push(gen);
    }
    return new GeneratorPool(gens);
  }

  get size(): number {
    return this.gens.length;
  }

  /** Connections closed by the other side so far, over all generators. */
  lost(): number {
    return this.gens.reduce((n, g) => n + g.lost, 0);
  }

  /** Messages the server declared undeliverable (`gap` events), over all generators. */
  gapped(): number {
    return this.gens.reduce((n, g) => n + g.gapped, 0);
  }

  pids(): number[] {
    return this.gens.map((g) => g.child.pid!);
  }

  private request<T extends Reply['type']>(gen: Gen, req: Request, expect: T): Promise<ReplyOf<T>> {
    if (gen.exited) return Promise.reject(new Error(`generator ${gen.id} is not running`));
    const seq = ++gen.seq;
    return new Promise<Reply>((resolve, reject) => {
      gen.pending.set(seq, { resolve, reject });
      gen.child.send({ seq, body: req });
    }).then((r) => {
      if (r.type !== expect) throw new Error(`generator ${gen.id}: expected ${expect}, got ${r.type}`);
      return r as ReplyOf<T>;
    });
  }

  async init(layout: Layout): Promise<void> {
    for (const g of this.gens) g.conns = 0;
    await Promise.all(this.gens.map((g) => this.request(g, { type: 'init', genId: g.id, layout }, 'ok')));
  }

  /** Opens connections [from, to), split into one contiguous slice per generator. */
  async connect(from: number, to: number, join: boolean): Promise<ConnectResult> {
    const n = to - from;
    const slices = this.gens.map((g, i) => ({
      g,
      from: from + Math.floor((i * n) / this.gens.length),
      to: from + Math.floor(((i + 1) * n) / this.gens.length),
    }));
    return this.connected(
      slices.map((s) => s.g),
      (g, i) =>
        this.request(g, { type: 'connect', from: slices[i]!.from, to: slices[i]!.to, join }, 'connected'),
    );
  }

  /** Tells the generators that the node at `url` is about to be killed (its connections' closes are expected). */
  async arm(url: string): Promise<void> {
    await Promise.all(this.gens.map((g) => this.request(g, { type: 'arm', url }, 'ok')));
  }

  /** Reconnects the armed connections to `url` and rejoins their rooms from where they were. */
  async reconnect(url: string): Promise<ConnectResult> {
    return this.connected(this.gens, (g) => this.request(g, { type: 'reconnect', url }, 'connected'), false);
  }

  /** Runs one connect request per generator and merges the replies. */
  private async connected(
    gens: Gen[],
    ask: (g: Gen, i: number) => Promise<ConnectResult>,
    newConnections = true,
  ): Promise<ConnectResult> {
    const started = performance.now();
    const results = await Promise.all(gens.map(ask));
    const welcome = new Histogram();
    const joined = new Histogram();
    const merged: ConnectResult = {
      connected: 0,
      failed: 0,
      failedIndices: [],
      errors: [],
      elapsedMs: 0,
      connectLatency: welcome.toJSON(),
      joinLatency: joined.toJSON(),
      unrecovered: 0,
    };
    results.forEach((r, i) => {
      if (newConnections) gens[i]!.conns += r.connected;
      else gens[i]!.conns -= r.failed;
      merged.connected += r.connected;
      merged.failed += r.failed;
      merged.unrecovered += r.unrecovered;
      merged.failedIndices.push(...r.failedIndices);
      merged.errors.push(...r.errors);
      welcome.merge(r.connectLatency);
      joined.merge(r.joinLatency);
    });
    merged.elapsedMs = performance.now() - started;
    // Every generator must know who is missing, so that no message counts a delivery to a connection that failed.
    if (merged.failedIndices.length > 0)
      await Promise.all(
        this.gens.map((g) => this.request(g, { type: 'absent', indices: merged.failedIndices }, 'ok')),
      );
    merged.connectLatency = welcome.toJSON();
    merged.joinLatency = joined.toJSON();
    return merged;
  }

  /** Publishes `rate` messages/s in all for `durationMs`, shared by the generators by their connection counts. */
  async phase(k: number, rate: number, durationMs: number): Promise<PhaseSent> {
    const total = this.gens.reduce((n, g) => n + g.conns, 0);
    const results = await Promise.all(
      this.gens
        .filter((g) => g.conns > 0)
        .map((g) =>
          this.request(
            g,
            { type: 'phase', phase: k, ratePerSec: (rate * g.conns) / total, durationMs },
            'sent',
          ),
        ),
    );
    return results.reduce<PhaseSent>(
      (a, r) => ({
        published: a.published + r.published,
        publishErrors: a.publishErrors + r.publishErrors,
        expected: a.expected + r.expected,
        errors: [...a.errors, ...r.errors].slice(0, 10),
        sentForMs: Math.max(a.sentForMs, r.sentForMs),
      }),
      { published: 0, publishErrors: 0, expected: 0, errors: [], sentForMs: 0 },
    );
  }

  async delivered(phases: number[]): Promise<number> {
    const replies = await Promise.all(
      this.gens.map((g) => this.request(g, { type: 'progress' }, 'progress')),
    );
    let n = 0;
    for (const r of replies) for (const k of phases) n += r.delivered[k] ?? 0;
    return n;
  }

  /**
   * Waits until the phases' deliveries reach `expected`, or stop growing for `stallMs`, or `maxMs` passes.
   * Returns how long it waited.
   */
  async drain(phases: number[], expected: number, stallMs: number, maxMs: number): Promise<number> {
    const started = performance.now();
    let last = -1;
    let lastChange = started;
    for (;;) {
      const n = await this.delivered(phases);
      const now = performance.now();
      if (n >= expected) return now - started;
      if (n !== last) {
        last = n;
        lastChange = now;
      }
      if (now - lastChange > stallMs || now - started > maxMs) return now - started;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async collect(phases: number[]): Promise<Map<number, PhaseResult>> {
    const replies = await Promise.all(
      this.gens.map((g) => this.request(g, { type: 'collect', phases }, 'collected')),
    );
    const out = new Map<number, PhaseResult>();
    for (const k of phases) {
      const r: PhaseResult = {
        published: 0,
        expected: 0,
        delivered: 0,
        duplicates: 0,
        publishErrors: 0,
        wireBytes: 0,
        latency: new Histogram(),
        timeline: new Map(),
      };
      for (const reply of replies) {
        const p: PhaseStatsJson | undefined = reply.phases[k];
        if (!p) continue;
        r.published += p.published;
        r.expected += p.expected;
        r.delivered += p.delivered;
        r.duplicates += p.duplicates;
        r.publishErrors += p.publishErrors;
        r.wireBytes += p.wireBytes;
        r.latency.merge(p.latency);
        for (const [sec, n, max] of p.timeline) {
          const t = r.timeline.get(sec);
          if (t) {
            t[0] += n;
            t[1] = Math.max(t[1], max);
          } else r.timeline.set(sec, [n, max]);
        }
      }
      out.set(k, r);
    }
    return out;
  }

  async closeConnections(): Promise<void> {
    await Promise.all(
      this.gens.filter((g) => !g.exited).map((g) => this.request(g, { type: 'close' }, 'ok')),
    );
    for (const g of this.gens) g.conns = 0;
  }

  /** Ends the generator processes (they exit when their IPC channel closes). */
  async stop(): Promise<void> {
    await Promise.all(
      this.gens.map(
        (g) =>
          new Promise<void>((resolve) => {
            if (g.exited) return resolve();
            const timer = setTimeout(() => g.child.kill('SIGKILL'), 5000);
            g.child.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            g.child.disconnect();
          }),
      ),
    );
  }
}
