// A load generator process, started by the coordinator (loadtest/lib/pool.ts) with an IPC channel. It owns a
// slice of a scenario's connections, publishes at the rate it is told, and counts what its connections receive:
// distinct deliveries and duplicates from per-stream sequence numbers, end-to-end latency from the send time in
// each body. It answers every request with an Envelope (see lib/ipc.ts).
import { connect, nowUs, type ClientHandlers, type LoadClient, type Payload } from './lib/clients';
import { Histogram } from './lib/histogram';
import type { ConnectResult, Envelope, Layout, PhaseSent, PhaseStatsJson, Reply, Request } from './lib/ipc';
import { roomIndexOf, roomMembers, userOf } from './lib/ipc';
import { SeqWindow } from './lib/seq';
import { signToken } from './lib/token';

class Conn {
  client?: LoadClient;
  /** Set by `arm`: the node is about to be killed; the close is expected and the connection does not publish. */
  moving?: { closed: Promise<void>; close(): void };
  readonly handlers: ClientHandlers;

  constructor(
    readonly index: number,
    public url: string,
  ) {
    this.handlers = handlersFor(this);
  }
}

class PhaseState {
  published = 0;
  expected = 0;
  delivered = 0;
  duplicates = 0;
  publishErrors = 0;
  wireBytes = 0;
  latency = new Histogram();
  timeline = new Map<number, [number, number]>();

  record(sentUs: number, latencyUs: number, wireBytes: number): void {
    this.delivered += 1;
    this.wireBytes += wireBytes;
    this.latency.record(latencyUs);
    const sec = Math.floor(sentUs / 1e6);
    const t = this.timeline.get(sec);
    if (t) {
      t[0] += 1;
      if (latencyUs > t[1]) t[1] = latencyUs;
    } else this.timeline.set(sec, [1, latencyUs]);
  }

  toJSON(): PhaseStatsJson {
    return {
      published: this.published,
      expected: this.expected,
      delivered: this.delivered,
      duplicates: this.duplicates,
      publishErrors: this.publishErrors,
      wireBytes: this.wireBytes,
      latency: this.latency.toJSON(),
      timeline: [...this.timeline].map(([sec, [n, max]]) => [sec, n, max] as [number, number, number]),
    };
  }
}

let genId = 0;
let layout: Layout | undefined;
const conns: Conn[] = [];
const phases = new Map<number, PhaseState>();
const streamSeq = new Map<string, number>();
/** Connections of the scenario (any generator's) that failed to connect or join: they receive nothing. */
const absent = new Set<number>();
let lost = 0;
let gapped = 0;
let rr = 0;

function phase(k: number): PhaseState {
  let p = phases.get(k);
  if (!p) {
    p = new PhaseState();
    phases.set(k, p);
  }
  return p;
}

/** One connection's handlers, kept across its reconnects so a message replayed after one counts as a duplicate. */
function handlersFor(conn: Conn): ClientHandlers {
  const windows = new Map<string, SeqWindow>();
  return {
    deliver(body: Payload, wireBytes: number): void {
      const ps = phase(body.k);
      let w = windows.get(body.r);
      if (!w) {
        w = new SeqWindow();
        windows.set(body.r, w);
      }
      if (w.see(body.s)) {
        ps.record(body.t, nowUs() - body.t, wireBytes);
      } else {
        ps.duplicates += 1;
      }
    },
    lost(): void {
      if (conn.moving) conn.moving.close();
      else lost += 1;
    },
    gap(count: number): void {
      gapped += count;
    },
  };
}

const roomOf = (l: Layout, i: number) => `${l.roomPrefix}${roomIndexOf(l, i)}`;

/**
 * Connects each of `targets` to its `url` (and joins its room: from the position its previous client reached when
 * `resume`), with `connectConcurrency` attempts in flight: the shared step of a connect storm and a reconnect storm.
 */
async function connectAll(
  l: Layout,
  targets: Conn[],
  join: boolean,
  resume: boolean,
): Promise<ConnectResult> {
  const started = performance.now();
  const welcome = new Histogram();
  const joined = new Histogram();
  const errors: string[] = [];
  const failedIndices: number[] = [];
  let connected = 0;
  let unrecovered = 0;
  let next = 0;
  const fail = (c: Conn, what: string, e: Error) => {
    failedIndices.push(c.index);
    if (errors.length < 5) errors.push(`${what} ${c.index}: ${e.message}`);
  };
  const worker = async () => {
    while (next < targets.length) {
      const c = targets[next++]!;
      const room = roomOf(l, c.index);
      const since = resume ? c.client?.position(room) : undefined;
      const t0 = nowUs();
      let client: LoadClient;
      try {
        client = await connect(
          l.system,
          {
            url: c.url,
            token: signToken(userOf(l, c.index), l.secret),
            localAddress:
              l.localAddresses.length > 0 ? l.localAddresses[c.index % l.localAddresses.length] : undefined,
            timeoutMs: l.timeoutMs,
            encoding: l.encoding,
          },
          c.handlers,
        );
      } catch (e) {
        fail(c, 'connect', e as Error);
        continue;
      }
      welcome.record(nowUs() - t0);
      try {
        if (join && l.kind === 'rooms') {
          const r = await client.join(room, since);
          joined.record(nowUs() - t0);
          if (r.recovered === false) unrecovered += 1;
        }
        c.client = client;
        connected += 1;
      } catch (e) {
        client.close();
        fail(c, 'join', e as Error);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, l.connectConcurrency) }, worker));
  return {
    connected,
    failed: failedIndices.length,
    failedIndices,
    errors,
    elapsedMs: performance.now() - started,
    connectLatency: welcome.toJSON(),
    joinLatency: joined.toJSON(),
    unrecovered,
  };
}

async function connectRange(l: Layout, from: number, to: number, join: boolean): Promise<ConnectResult> {
  const targets = Array.from(
    { length: to - from },
    (_, k) => new Conn(from + k, l.urls[(from + k) % l.urls.length]!),
  );
  const r = await connectAll(l, targets, join, false);
  const failed = new Set(r.failedIndices);
  for (const c of targets) if (!failed.has(c.index)) conns.push(c);
  return r;
}

/** Marks the connections to `url` as moving: their node is about to be killed. */
function arm(url: string): void {
  for (const c of conns) {
    if (c.url !== url) continue;
    let close!: () => void;
    const closed = new Promise<void>((resolve) => (close = resolve));
    c.moving = { closed, close };
  }
}

/**
 * Reconnects the moving connections to `url` once each has seen its socket close (or after the timeout), rejoining
 * their rooms from their positions. Those that do not get back are dropped.
 */
async function reconnect(l: Layout, url: string): Promise<ConnectResult> {
  const moving = conns.filter((c) => c.moving);
  await Promise.all(
    moving.map((c) =>
      Promise.race([c.moving!.closed, new Promise((r) => setTimeout(r, l.timeoutMs))]).then(() => {
        c.url = url;
      }),
    ),
  );
  const r = await connectAll(l, moving, true, true);
  for (const c of moving) c.moving = undefined;
  const failed = new Set(r.failedIndices);
  if (failed.size > 0) conns.splice(0, conns.length, ...conns.filter((c) => !failed.has(c.index)));
  return r;
}

function runPhase(l: Layout, k: number, ratePerSec: number, durationMs: number): Promise<PhaseSent> {
  const ps = phase(k);
  const padding = l.payloadBytes > 0 ? 'x'.repeat(l.payloadBytes) : undefined;
  const total = Math.floor((ratePerSec * durationMs) / 1000);
  const errors: string[] = [];
  let sent = 0;
  let inflight = 0;
  let lastSentAt = 0;
  const start = performance.now();

  /** The next connection that may publish (not one whose node is about to be killed), if any. */
  const publisher = () => {
    for (let tries = 0; tries < conns.length; tries++) {
      const c = conns[rr++ % conns.length]!;
      if (!c.moving) return c;
    }
    return undefined;
  };

  const sendOne = () => {
    const c = publisher();
    if (!c?.client) return;
    const client = c.client;
    let stream: string;
    let send: (body: Payload) => Promise<void>;
    let deliveries: number;
    if (l.kind === 'dm') {
      stream = `u${c.index}`;
      const to = userOf(l, c.index ^ 1);
      send = (body) => client.dm(to, body);
      deliveries = absent.has(c.index ^ 1) ? 0 : 1;
    } else {
      const room = roomOf(l, c.index);
      stream = `${genId}:${room}`;
      send = (body) => client.publish(room, body);
      deliveries = roomMembers(l, c.index, absent);
    }
    const s = (streamSeq.get(stream) ?? 0) + 1;
    streamSeq.set(stream, s);
    inflight += 1;
    send({ r: stream, s, t: nowUs(), k, p: padding }).then(
      () => {
        inflight -= 1;
        ps.published += 1;
        ps.expected += deliveries;
      },
      (e: Error) => {
        inflight -= 1;
        ps.publishErrors += 1;
        if (errors.length < 5) errors.push(e.message);
      },
    );
  };

  return new Promise((resolve) => {
    const finish = () => {
      const deadline = performance.now() + 15000;
      const wait = () => {
        if (inflight === 0 || performance.now() > deadline) {
          resolve({
            published: ps.published,
            publishErrors: ps.publishErrors + inflight,
            expected: ps.expected,
            errors: inflight > 0 ? [...errors, `${inflight} publishes unanswered after 15 s`] : errors,
            sentForMs: lastSentAt,
          });
        } else setTimeout(wait, 10);
      };
      wait();
    };
    const tick = () => {
      const elapsed = performance.now() - start;
      const due = Math.min(total, Math.floor((ratePerSec * elapsed) / 1000));
      if (conns.length > 0) {
        while (sent < due) {
          sendOne();
          sent += 1;
        }
        lastSentAt = performance.now() - start;
      }
      if (sent < total && elapsed < durationMs * 3) setTimeout(tick, 2);
      else finish();
    };
    tick();
  });
}

async function handle(req: Request): Promise<Reply> {
  switch (req.type) {
    case 'init':
      genId = req.genId;
      layout = req.layout;
      absent.clear();
      return { type: 'ok' };
    case 'connect':
      return { type: 'connected', ...(await connectRange(layout!, req.from, req.to, req.join)) };
    case 'absent':
      for (const i of req.indices) absent.add(i);
      return { type: 'ok' };
    case 'arm':
      arm(req.url);
      return { type: 'ok' };
    case 'reconnect':
      return { type: 'connected', ...(await reconnect(layout!, req.url)) };
    case 'phase':
      return { type: 'sent', ...(await runPhase(layout!, req.phase, req.ratePerSec, req.durationMs)) };
    case 'progress': {
      const delivered: Record<number, number> = {};
      for (const [k, p] of phases) delivered[k] = p.delivered;
      return { type: 'progress', delivered };
    }
    case 'collect': {
      const out: Record<number, PhaseStatsJson> = {};
      for (const k of req.phases) out[k] = phase(k).toJSON();
      return { type: 'collected', phases: out };
    }
    case 'close':
      for (const c of conns) c.client?.close();
      conns.length = 0;
      return { type: 'ok' };
  }
}

process.on('message', (msg: { seq: number; body: Request }) => {
  handle(msg.body).then(
    (body) => process.send!({ seq: msg.seq, lost, gapped, body } satisfies Envelope<Reply>),
    (e: Error) =>
      process.send!({
        seq: msg.seq,
        lost,
        gapped,
        body: { type: 'error', message: e.stack ?? e.message },
      } satisfies Envelope<Reply>),
  );
});
process.on('disconnect', () => process.exit(0));
