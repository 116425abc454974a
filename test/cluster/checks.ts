// Cross-node protocol checks and a scored publish stream, shared by the Redis Cluster and Sentinel suites: the
// same assertions as test/gateway/cluster.test.ts, run against gateways on another Redis topology.
import { presenceChange, token, TestClient, type Frame, type GatewayProc } from '../helpers/harness';

export type Connect = (node: GatewayProc, user: string) => Promise<TestClient>;

/** Gateway settings for a steady stream: limits out of the way. */
export const STREAM_ENV = {
  CMD_RATE: '100000',
  CMD_BURST: '100000',
  USER_MSG_RATE: '0',
  CONN_RATE_PER_IP: '0',
  PRESENCE_TTL_MS: '3000',
};

export async function roomAcrossNodes(connect: Connect, a: GatewayProc, b: GatewayProc, room: string) {
  const alice = await connect(a, 'alice');
  const bob = await connect(b, 'bob');
  await alice.ok({ type: 'join', room });
  await bob.ok({ type: 'join', room });
  const p1 = await alice.ok({ type: 'publish', room, body: { text: 'from a' } });
  expect(await bob.waitFor((f) => f.type === 'message' && f.id === p1.id)).toMatchObject({
    room,
    from: 'alice',
    body: { text: 'from a' },
    offset: p1.offset,
    epoch: p1.epoch,
  });
  await alice.waitFor((f) => f.type === 'message' && f.id === p1.id);
  const p2 = await bob.ok({ type: 'publish', room, body: 'from b' });
  expect(p2.offset).toBe((p1.offset as number) + 1);
  expect(await alice.waitFor((f) => f.type === 'message' && f.id === p2.id)).toMatchObject({
    from: 'bob',
    body: 'from b',
  });
}

export async function dmAcrossNodes(connect: Connect, a: GatewayProc, b: GatewayProc) {
  const sender = await connect(a, 'dave');
  const senderOther = await connect(b, 'dave');
  const erinA = await connect(a, 'erin');
  const erinB = await connect(b, 'erin');
  const reply = await sender.ok({ type: 'dm', to: 'erin', body: 'hello erin' });
  expect(reply).toMatchObject({ delivered: 2, live: true, stored: true });
  for (const c of [erinA, erinB, senderOther])
    expect(await c.waitFor((f) => f.type === 'dm' && f.id === reply.id)).toMatchObject({
      from: 'dave',
      to: 'erin',
      body: 'hello erin',
    });
  await sender.ok({ type: 'ping' });
  expect(sender.events('dm')).toEqual([]);
}

export async function presenceAcrossNodes(connect: Connect, a: GatewayProc, b: GatewayProc, room: string) {
  const alice = await connect(a, 'alice');
  const bob = await connect(b, 'bob');
  expect((await alice.ok({ type: 'join', room })).presence).toEqual(['alice']);
  expect(((await bob.ok({ type: 'join', room })).presence as string[]).sort()).toEqual(['alice', 'bob']);
  await alice.waitFor((f) => presenceChange(f, 'join', 'bob'));
  await bob.ok({ type: 'leave', room });
  await alice.waitFor((f) => presenceChange(f, 'leave', 'bob'));
  expect((await alice.ok({ type: 'presence', room })).presence).toEqual(['alice']);
}

/** A client leaves, three messages are published, it comes back on the other node with since: all three. */
export async function recoveryAcrossNodes(connect: Connect, a: GatewayProc, b: GatewayProc, room: string) {
  const carol = await connect(a, 'carol');
  const joined = await carol.ok({ type: 'join', room });
  const p0 = await carol.ok({ type: 'publish', room, body: 0 });
  await carol.waitFor((f) => f.type === 'message' && f.id === p0.id);
  await carol.close();
  const dan = await connect(a, 'dan');
  await dan.ok({ type: 'join', room });
  const sent: Frame[] = [];
  for (const body of [1, 2, 3]) sent.push(await dan.ok({ type: 'publish', room, body }));
  const back = await connect(b, 'carol');
  const r = await back.ok({ type: 'join', room, since: { offset: p0.offset, epoch: joined.epoch } });
  expect(r.recovered).toBe(true);
  await back.waitFor((f) => f.type === 'message' && f.id === sent[2]!.id);
  expect(back.events('message', room).map((f) => f.body)).toEqual([1, 2, 3]);
  expect(back.events('gap')).toEqual([]);
}

// ---------------------------------------------------------------------------------------------------------------
// A publish stream scored for loss: every acknowledged message must reach every subscriber, or be inside a gap
// the subscriber was told about.

export interface Ack {
  seq: number;
  id: string;
  offset: number;
}

/** Publishes numbered messages one after another; an `unavailable` (or timed-out) publish is retried with the
 *  same idempotency key until it is acknowledged. */
export class StreamPublisher {
  readonly acks: Ack[] = [];
  readonly errors = new Map<string, number>();
  attempts = 0;
  private stopped = false;
  private done?: Promise<void>;

  constructor(
    private readonly client: TestClient,
    private readonly room: string,
    private readonly pauseMs = 2,
  ) {}

  start(): void {
    this.done = this.run();
  }

  /** Publishing goes on until stop(), or until the client's socket closes (a test that failed midway): a send
   *  on a closed socket is dropped silently, so retrying it would time out and retry forever, keeping the test
   *  process alive. */
  private get running(): boolean {
    return !this.stopped && this.client.closeCode === null;
  }

  private async run(): Promise<void> {
    for (let seq = 1; this.running; seq++) {
      for (;;) {
        if (this.client.closeCode !== null) return;
        this.attempts++;
        let r: Frame;
        try {
          r = await this.client.request(
            { type: 'publish', room: this.room, body: { seq }, key: `s${seq}` },
            5000,
          );
        } catch {
          this.errors.set('timeout', (this.errors.get('timeout') ?? 0) + 1);
          continue;
        }
        if (r.ok) {
          this.acks.push({ seq, id: r.id as string, offset: r.offset as number });
          break;
        }
        const code = (r.error as { code: string }).code;
        this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
        if (code !== 'unavailable') throw new Error(`publish ${seq}: ${JSON.stringify(r.error)}`);
        await new Promise((res) => setTimeout(res, 50));
      }
      await new Promise((res) => setTimeout(res, this.pauseMs));
    }
  }

  /** Stops after the message in flight is acknowledged. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

export interface Score {
  acked: number;
  received: number;
  /** acknowledged, neither received nor inside a reported gap */
  lost: number;
  /** acknowledged, not received, but inside a reported gap */
  inGap: number;
  gaps: number;
  /** messages received more than once (same id) */
  duplicates: number;
  /** a message whose offset was not above the one before it */
  outOfOrder: number;
}

export function score(sub: TestClient, room: string, acks: Ack[]): Score {
  const messages = sub.events('message', room);
  const gaps = sub.events('gap', room);
  const ids = new Map<string, number>();
  let outOfOrder = 0;
  let last = 0;
  for (const m of messages) {
    ids.set(m.id as string, (ids.get(m.id as string) ?? 0) + 1);
    if ((m.offset as number) <= last) outOfOrder++;
    last = m.offset as number;
  }
  const covered = (offset: number) =>
    gaps.some((g) => (g.from as number) <= offset && (g.to === null || offset <= (g.to as number)));
  let lost = 0;
  let inGap = 0;
  for (const a of acks) {
    if (ids.has(a.id)) continue;
    if (covered(a.offset)) inGap++;
    else lost++;
  }
  return {
    acked: acks.length,
    received: messages.length,
    lost,
    inGap,
    gaps: gaps.length,
    duplicates: [...ids.values()].filter((n) => n > 1).length,
    outOfOrder,
  };
}

/**
 * Holes a client was not told about: places in its stream of messages and gaps (one room, in arrival order) where
 * the next offset is not the one after the last, with no gap event covering the difference. A new epoch (a gap
 * with `to: null`) restarts the count at 1.
 */
export function silentJumps(sub: TestClient, room: string): string[] {
  const jumps: string[] = [];
  let last: number | undefined;
  for (const f of sub.frames) {
    if (f.room !== room || (f.type !== 'message' && f.type !== 'gap')) continue;
    const first = f.type === 'gap' ? (f.from as number) : (f.offset as number);
    if (last !== undefined && first !== last + 1) jumps.push(`${last} -> ${first}`);
    last = f.type === 'message' ? (f.offset as number) : f.to === null ? 0 : (f.to as number);
  }
  return jumps;
}

/**
 * After a failover with REDIS_WAIT_REPLICAS the promoted replica skipped FAILOVER_OFFSET_JUMP offsets before its
 * first append: a client joining afterwards with since 0 replays the whole stream, and a gap precedes the jump
 * (it lies inside a history page), with every acknowledged message received once, in order.
 */
export async function jumpAnnouncedToLateJoiner(
  connect: Connect,
  node: GatewayProc,
  room: string,
  acks: Ack[],
) {
  const offsets = acks.map((a) => a.offset);
  const jumpAt = offsets.findIndex((o, i) => i > 0 && o - offsets[i - 1]! > 1);
  expect(jumpAt).toBeGreaterThan(0);
  const late = await connect(node, 'late-joiner');
  await late.ok({ type: 'join', room, since: { offset: 0 } });
  const lastId = acks.at(-1)!.id;
  await late.waitFor((f) => f.type === 'message' && f.id === lastId, 15_000);
  expect(silentJumps(late, room)).toEqual([]);
  const before = offsets[jumpAt - 1]!;
  const after = offsets[jumpAt]!;
  const announced = late
    .events('gap', room)
    .filter((g) => (g.from as number) > before && (g.to as number) < after);
  expect([before, after, announced.length]).toEqual([before, after, 1]);
  const s = score(late, room, acks);
  expect({ lost: s.lost, duplicates: s.duplicates, outOfOrder: s.outOfOrder }).toEqual({
    lost: 0,
    duplicates: 0,
    outOfOrder: 0,
  });
}

/** Resolves once the subscriber holds every acknowledged message or a gap for it (or the timeout passes). */
export async function settle(sub: TestClient, room: string, acks: Ack[], timeoutMs = 15_000): Promise<Score> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = score(sub, room, acks);
    if (s.lost === 0 || Date.now() > deadline) return s;
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function subscriber(node: GatewayProc, user: string, room: string): Promise<TestClient> {
  const c = await TestClient.connect(node.wsUrl, token(user));
  await c.ok({ type: 'join', room });
  return c;
}
