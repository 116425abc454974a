// One contract, two engines: the same suite runs against MemoryEngine and RedisEngine (real redis-server); the DM
// operation also against RedisEngine on a real Redis Cluster.
import { pino } from 'pino';
import {
  dmFrameParts,
  type Activity,
  type BusMessage,
  type DirectMessageInput,
  type DirectMessageResult,
  type Engine,
  type Revocation,
  type StreamRef,
} from '../../services/gateway/src/engine/engine';
import { MemoryEngine } from '../../services/gateway/src/engine/memory-engine';
import {
  RedisEngine,
  type CommandObserver,
  type RedisEngineOptions,
} from '../../services/gateway/src/engine/redis-engine';
import { keySlot } from '../../services/gateway/src/engine/redis-connections';
import { storedEventParts } from '../../protocol';
import { startRedis, until, type RedisProc } from '../helpers/harness';
import { startCluster, type RedisClusterProc } from '../helpers/redis-topologies';

const bounds = { historySize: 5, historyTtlS: 60, inboxSize: 5, inboxTtlS: 60, dedupWindowS: 60 };
let redis: RedisProc;
let seq = 0;

beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

/** A RedisEngine with the contract's bounds on this file's Redis; `opts` overrides (another url, a cluster, timeouts). */
function redisEngine(opts: Partial<RedisEngineOptions> = {}, observe?: CommandObserver): RedisEngine {
  return new RedisEngine(
    {
      ...bounds,
      url: redis.url,
      nodeId: `n${++seq}`,
      keyPrefix: 'ct',
      commandTimeoutMs: 2000,
      presenceTtlMs: 1000,
      ...opts,
    },
    pino({ level: 'silent' }),
    observe,
  );
}

const makers: [string, () => Engine][] = [
  ['memory', () => new MemoryEngine(bounds)],
  ['redis', () => redisEngine()],
];

describe('redis engine readiness', () => {
  test('a node whose own event loop was busy past the probe timeout stays ready while Redis answers; a stopped Redis makes it unready', async () => {
    const engine = redisEngine({ commandTimeoutMs: 5000, probeTimeoutMs: 1000 });
    await engine.start();
    try {
      await until('engine ready', () => engine.ready());
      // Right after sending a probe the node is busy for twice the probe timeout (a connect storm, a big fan-out;
      // less than the command timeout, which a longer stall would reach), 3 times; ready() is read every few ms.
      // Redis answers the PING meanwhile, however loaded the machine: the PONG waits to be read. (A probe timeout
      // of a second, so that Redis itself answers every other probe in time on a loaded machine too.)
      const client = (engine as unknown as { redis: { ping: () => Promise<string> } }).redis;
      const ping = client.ping.bind(client);
      let busyProbes = 0;
      client.ping = () => {
        const sent = ping();
        // Busy from the next check phase: after ioredis's auto-pipeline has written the PING.
        if (busyProbes < 3)
          setImmediate(() => {
            busyProbes++;
            const end = performance.now() + 2000;
            while (performance.now() < end); // busy
          });
        return sent;
      };
      let unready = 0;
      const sampler = setInterval(() => (unready += engine.ready() ? 0 : 1), 2);
      await until('3 busy probes', () => busyProbes === 3, 30_000);
      await new Promise((resolve) => setTimeout(resolve, 200));
      clearInterval(sampler);
      expect(unready).toBe(0);
      // Redis itself stopped: unready within the probe timeout (and a probe interval), ready again once it answers.
      redis.pause();
      try {
        await until('unready', () => !engine.ready(), 4000);
      } finally {
        redis.resume();
      }
      await until('ready again', () => engine.ready(), 5000);
    } finally {
      await engine.stop();
    }
  });
});

describe('redis engine command timeout', () => {
  test('a command written before the node got busy past REDIS_COMMAND_TIMEOUT_MS, and answered meanwhile, succeeds; one Redis does not answer fails at the limit', async () => {
    const engine = redisEngine({
      commandTimeoutMs: 500,
      // No readiness PING during the test: a command auto-pipelined behind one in flight is written only once
      // that one's answer is read, so it would not have been sent before the node got busy.
      probeTimeoutMs: 60_000,
    });
    await engine.start();
    try {
      await until('engine ready', () => engine.ready());
      for (let i = 0; i < 3; i++) {
        const counted = engine.userRate(`busy-${seq}`, 1000);
        // Busy for twice the limit (below ioredis's backstop), from the turn after ioredis wrote the command: the
        // answer waits unread.
        setImmediate(() => {
          const end = performance.now() + 1000;
          while (performance.now() < end); // busy
        });
        await expect(counted).resolves.toBe(0);
      }
      redis.pause();
      try {
        const started = performance.now();
        await expect(engine.userRate(`stalled-${seq}`, 1000)).rejects.toThrow(/no answer within 500 ms/);
        expect(performance.now() - started).toBeLessThan(1500); // the limit, not ioredis's backstop behind it
      } finally {
        redis.resume();
      }
    } finally {
      await engine.stop();
    }
  });
});

describe('redis engine registry', () => {
  test('a connection whose removal failed while Redis was down is removed at the next heartbeat', async () => {
    // Its own Redis, persisted, so the registry outlives the crash and the removal is what went missing.
    const own = await startRedis({ appendonly: true });
    const engine = redisEngine({ url: own.url, commandTimeoutMs: 500, presenceTtlMs: 10_000 });
    await engine.start();
    try {
      await until('engine ready', () => engine.ready());
      const user = `gone|{u}-${seq}`;
      const local = () => ({ rooms: new Map(), users: new Map([[user, new Set(['c2'])]]) });
      await engine.heartbeat(local);
      await engine.connectionAdd(user, 'c1', {});
      await engine.connectionAdd(user, 'c2', {});
      await own.kill();
      await expect(engine.connectionRemove(user, 'c1')).rejects.toThrow();
      await own.restart();
      await until('engine ready', () => engine.ready(), 10_000);
      expect(await engine.connectionCount(user)).toBe(2); // still registered: it would hold one of the user's places
      await engine.heartbeat(local);
      expect(await engine.connectionCount(user)).toBe(1);
    } finally {
      await engine.stop();
      await own.stop();
    }
  });
});

describe('redis engine revocations across nodes', () => {
  const node = (id: string) => redisEngine({ nodeId: id, keyPrefix: 'rv' });

  test('a revocation reaches another node through the bus, and a node started later loads it', async () => {
    const a = node(`rva-${++seq}`);
    const b = node(`rvb-${++seq}`);
    const onB: Revocation[] = [];
    b.onRevoked((r) => onB.push(r));
    await Promise.all([a.start(), b.start()]);
    try {
      await until('both ready', () => a.ready() && b.ready());
      const r: Revocation = { kind: 'user', user: 'eve', issuedBefore: 1000, expiresAt: Date.now() + 60_000 };
      await a.revoke(r);
      await until('b heard of it', () => onB.length === 1, 1000);
      expect(onB[0]).toEqual(r);
      expect(b.isRevoked({ user: 'eve', issuedAt: 999 })).toBe(true);
      const c = node(`rvc-${++seq}`);
      await c.start();
      try {
        await until('c ready', () => c.ready());
        expect(c.isRevoked({ user: 'eve', issuedAt: 999 })).toBe(true);
        expect(c.isRevoked({ user: 'eve', issuedAt: 1000 })).toBe(false);
      } finally {
        await c.stop();
      }
      // Redis keeps it no longer than its expiry.
      const ttl = Number(await redis.cli('PTTL', 'rv:{revoked}:x'));
      expect(ttl).toBeGreaterThan(50_000);
      expect(ttl).toBeLessThanOrEqual(60_000);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
  });
});

describe.each(makers)('%s engine', (kind, make) => {
  let engine: Engine;
  /** Keys in Redis (the memory engine has no key space to count: its contract is the answers above). */
  const keyCount = async () => (kind === 'redis' ? Number(await redis.cli('DBSIZE')) : 0);
  const received: [string, BusMessage][] = [];
  const room = (): StreamRef => ({ kind: 'room', name: `room-${++seq}` });
  const append = (ref: StreamRef, body: string, extra: { key?: string } = {}) =>
    engine.append(ref, {
      id: `m${++seq}`,
      ts: Date.now(),
      frame: storedEventParts('message', { room: ref.name, id: 'x', from: 'u', ts: 1 }, JSON.stringify(body)),
      dedup: extra.key ? { scope: 'u', key: extra.key } : undefined,
    });

  beforeEach(async () => {
    received.length = 0;
    engine = make();
    engine.onMessage((channel, m) => received.push([channel, m]));
    await engine.start();
    await until('engine ready', () => engine.ready());
  });
  afterEach(async () => {
    await engine.stop();
  });

  test('append assigns consecutive offsets in one epoch and publishes the stored frame in order', async () => {
    const ref = room();
    await engine.subscribe(engine.channel(ref));
    const r = [await append(ref, 'a'), await append(ref, 'b'), await append(ref, 'c')];
    expect(r.map((x) => x.offset)).toEqual([1, 2, 3]);
    expect(new Set(r.map((x) => x.epoch)).size).toBe(1);
    await until('three bus messages', () => received.length === 3);
    const events = received.map(([, m]) => m as Extract<BusMessage, { kind: 'event' }>);
    expect(events.map((e) => e.offset)).toEqual([1, 2, 3]);
    const frame = JSON.parse(Buffer.from(events[1]!.frame).toString());
    expect(frame).toMatchObject({
      type: 'message',
      offset: 2,
      epoch: r[0]!.epoch,
      room: ref.name,
      body: 'b',
    });
  });

  test('read returns events after an offset; readBefore pages back; history is bounded', async () => {
    const ref = room();
    for (const b of ['1', '2', '3', '4', '5', '6', '7']) await append(ref, b);
    const after = await engine.read(ref, 4, 10);
    expect(after.top).toBe(7);
    expect(after.events.map((e) => e.offset)).toEqual([5, 6, 7]);
    const all = await engine.read(ref, 0, 10);
    expect(all.events.map((e) => e.offset)).toEqual([3, 4, 5, 6, 7]); // HISTORY_SIZE 5
    const before = await engine.readBefore(ref, 6, 2);
    expect(before.events.map((e) => e.offset)).toEqual([4, 5]);
    const newest = await engine.readBefore(ref, undefined, 2);
    expect(newest.events.map((e) => e.offset)).toEqual([6, 7]);
    expect((await engine.read(ref, 7, 10)).events).toEqual([]);
  });

  test('a repeated idempotency key returns the first result and stores nothing new', async () => {
    const ref = room();
    const first = await append(ref, 'once', { key: 'k1' });
    const again = await append(ref, 'once', { key: 'k1' });
    expect(again).toEqual({ ...first, duplicate: true });
    expect((await engine.read(ref, 0, 10)).top).toBe(1);
  });

  test('reads of a stream that does not exist answer empty with no epoch and create nothing', async () => {
    const before = await keyCount();
    for (let i = 0; i < 20; i++) {
      const ref: StreamRef = i % 2 ? room() : { kind: 'inbox', name: `nobody-${++seq}` };
      expect(await engine.read(ref, 0, 10)).toEqual({ epoch: '', top: 0, events: [] });
      expect(await engine.read(ref, Number.MAX_SAFE_INTEGER, 1)).toEqual({ epoch: '', top: 0, events: [] });
      expect(await engine.readBefore(ref, undefined, 10)).toEqual({ epoch: '', top: 0, events: [] });
      expect(await engine.readBefore(ref, 5, 10)).toEqual({ epoch: '', top: 0, events: [] });
      expect(await engine.presence(ref.name)).toEqual([]);
    }
    expect(await keyCount()).toBe(before);
  });

  test('a stream read while empty gets its epoch from its first append; offset 0 continues into it', async () => {
    const ref = room();
    const empty = await engine.read(ref, 0, 1);
    expect(empty).toEqual({ epoch: '', top: 0, events: [] });
    const first = await append(ref, 'x');
    expect(first.offset).toBe(1);
    expect(first.epoch).not.toBe('');
    // A reader positioned at {offset: 0} (whatever epoch it held) reads the new epoch from offset 1: no gap.
    const page = await engine.read(ref, 0, 10);
    expect(page).toMatchObject({ epoch: first.epoch, top: 1 });
    expect(page.events.map((e) => e.offset)).toEqual([1]);
    // Reads afterwards see the same epoch; they do not reset it.
    expect((await engine.readBefore(ref, undefined, 10)).epoch).toBe(first.epoch);
    expect((await append(ref, 'y')).epoch).toBe(first.epoch);
  });

  test('presence: first add publishes join, last remove publishes leave', async () => {
    const ref = room();
    await engine.subscribe(engine.channel(ref));
    expect(await engine.presenceAdd(ref.name, 'ann')).toEqual(['ann']);
    expect(await engine.presenceAdd(ref.name, 'ann')).toEqual(['ann']);
    expect((await engine.presenceAdd(ref.name, 'ben')).sort()).toEqual(['ann', 'ben']);
    await engine.presenceRemove(ref.name, 'ann');
    expect(await engine.presence(ref.name)).toEqual(['ben']);
    await until('three presence events', () => received.length === 3);
    const frames = received.map(([, m]) =>
      JSON.parse(Buffer.from((m as { frame: Uint8Array }).frame).toString()),
    );
    expect(frames.map((f) => `${f.event}:${f.user}`)).toEqual(['join:ann', 'join:ben', 'leave:ann']);
  });

  test('connection counts and the per-user rate window', async () => {
    const user = `user-${++seq}`;
    await engine.connectionAdd(user, 'c1', {});
    await engine.connectionAdd(user, 'c2', {});
    expect(await engine.connectionCount(user)).toBe(2);
    await engine.connectionRemove(user, 'c1');
    expect(await engine.connectionCount(user)).toBe(1);
    const waits = [];
    for (let i = 0; i < 4; i++) waits.push(await engine.userRate(user, 3));
    expect(waits.slice(0, 3)).toEqual([0, 0, 0]);
    expect(waits[3]).toBeGreaterThan(0);
    expect(waits[3]).toBeLessThanOrEqual(1000);
  });

  test('connectionReserve admits up to the limit and no further, counting every registration', async () => {
    const user = `capped-${++seq}`;
    await engine.connectionAdd(user, 'c0', {});
    const admitted = await Promise.all(
      ['c1', 'c2', 'c3', 'c4'].map((c) => engine.connectionReserve(user, c, 3, {})),
    );
    expect(admitted.filter(Boolean)).toHaveLength(2);
    expect(await engine.connectionCount(user)).toBe(3);
    await engine.connectionRemove(user, 'c0');
    expect(await engine.connectionReserve(user, 'c5', 3, {})).toBe(true);
    expect(await engine.connectionCount(user)).toBe(3);
  });

  test('revocations: by jti and by user before a moment, reported once, checked from memory, expiring', async () => {
    const seen: Revocation[] = [];
    engine.onRevoked((r) => seen.push(r));
    const user = `rv-${++seq}`;
    const now = Date.now();
    const issued = Math.floor(now / 1000);
    expect(engine.isRevoked({ user, jti: 'j1', issuedAt: issued })).toBe(false);
    await engine.revoke({ kind: 'jti', jti: 'j1', expiresAt: now + 60_000 });
    await engine.revoke({ kind: 'jti', jti: 'j1', expiresAt: now + 60_000 });
    expect(engine.isRevoked({ user, jti: 'j1', issuedAt: issued })).toBe(true);
    expect(engine.isRevoked({ user, jti: 'j2', issuedAt: issued })).toBe(false);
    await engine.revoke({ kind: 'user', user, issuedBefore: issued + 1, expiresAt: now + 60_000 });
    expect(engine.isRevoked({ user, jti: 'j2', issuedAt: issued })).toBe(true);
    expect(engine.isRevoked({ user })).toBe(true); // no iat: cannot be dated, counts as older
    expect(engine.isRevoked({ user, issuedAt: issued + 1 })).toBe(false);
    expect(engine.isRevoked({ user: `${user}-other`, issuedAt: issued })).toBe(false);
    // A short-lived one is gone once it expires.
    await engine.revoke({ kind: 'jti', jti: 'brief', expiresAt: Date.now() + 300 });
    expect(engine.isRevoked({ user: 'someone', jti: 'brief' })).toBe(true);
    await until(
      'the brief revocation expired',
      () => !engine.isRevoked({ user: 'someone', jti: 'brief' }),
      3000,
    );
    await until('three distinct revocations reported', () => seen.length === 3);
    expect(seen.map((r) => r.kind)).toEqual(['jti', 'user', 'jti']);
  });

  test('unsubscribed channels deliver nothing', async () => {
    const ref = room();
    const channel = engine.channel(ref);
    await engine.subscribe(channel);
    await engine.unsubscribe(channel);
    await append(ref, 'nobody hears');
    const other = room();
    await engine.subscribe(engine.channel(other));
    await append(other, 'marker');
    await until('marker', () => received.length === 1);
    expect(received[0]![0]).toBe(engine.channel(other));
  });

  test('activity: a user online at the first connection and offline at the last; a room occupied by its first user and vacated by its last', async () => {
    const seen: Activity[] = [];
    engine.onActivity((a) => seen.push(a));
    const user = `user-${++seq}`;
    const r = `room-${++seq}`;
    await engine.connectionAdd(user, 'c1', {});
    await engine.connectionAdd(user, 'c2', {});
    await engine.connectionAdd(user, 'c2', {}); // again: no transition
    await engine.connectionRemove(user, 'c1');
    await engine.connectionRemove(user, 'c1'); // already gone: no transition
    await engine.connectionRemove(user, 'c2');
    await engine.presenceAdd(r, 'ann');
    await engine.presenceAdd(r, 'ben');
    await engine.presenceRemove(r, 'ann');
    await engine.presenceRemove(r, 'ben');
    expect(seen).toEqual([
      { type: 'user.online', user },
      { type: 'user.offline', user },
      { type: 'room.occupied', room: r },
      { type: 'room.vacated', room: r },
    ]);
  });

  test('webhook queue: each entry to one consumer until acked; an entry idle past claimIdleMs goes to another; retention bounds it', async () => {
    const q = engine.webhookQueue(1000);
    // Drain anything an earlier test of this engine left.
    await q.ack((await q.read('drain', 10_000, 0)).map((e) => e.entry));
    for (let i = 0; i < 3; i++) await q.append(`{"n":${i}}`);
    const a = await q.read('node-a', 2, 60_000);
    expect(a.map((e) => e.payload)).toEqual(['{"n":0}', '{"n":1}']);
    const b = await q.read('node-b', 10, 60_000);
    expect(b.map((e) => e.payload)).toEqual(['{"n":2}']);
    await q.ack([b[0]!.entry, a[1]!.entry]);
    expect(await q.read('node-b', 10, 60_000)).toEqual([]);
    // node-a "crashed" holding n0: after claimIdleMs node-b gets it; a touch keeps it from being claimed.
    await q.touch('node-a', [a[0]!.entry]);
    expect(await q.read('node-b', 10, 60_000)).toEqual([]);
    await until('n0 claimable', async () => (await q.read('node-b', 10, 20)).length === 1, 5000);
    await q.ack([a[0]!.entry]);
    expect(await q.read('node-c', 10, 0)).toEqual([]);
    // Retention: beyond it the oldest entries go, handed out or not.
    const small = engine.webhookQueue(100);
    for (let i = 0; i < 105; i++) await small.append(`{"r":${i}}`);
    const all = await small.read('node-d', 1000, 60_000);
    expect(all.length).toBe(100);
    expect(all[0]!.payload).toBe('{"r":5}');
    await small.ack(all.map((e) => e.entry));
  });
});

// The DM operation on the three Redis topologies' two code paths (single Redis and Sentinel run one script;
// Cluster splits it by slot) and in memory.
let cluster: RedisClusterProc | undefined;
const dmEngines: [string, () => Engine][] = [
  ...makers,
  ['redis cluster', () => redisEngine({ url: undefined, cluster: cluster!.seeds.split(',') })],
];

describe.each(dmEngines)('%s engine: dm', (kind, make) => {
  let engine: Engine;
  const received: [string, BusMessage][] = [];
  const inbox = (name: string): StreamRef => ({ kind: 'inbox', name });
  /** Two new users whose inboxes are in different Cluster slots (so a Cluster engine takes its split path). */
  const pair = (a = 'ann', b = 'bob'): [string, string] => {
    for (;;) {
      const n = ++seq;
      const from = `${a}-${n}`;
      const to = `${b}-${n}`;
      if (keySlot(`ct:{u:${from}}`) !== keySlot(`ct:{u:${to}}`)) return [from, to];
    }
  };
  const dm = (from: string, to: string, extra: Partial<DirectMessageInput> = {}) =>
    engine.dm({
      from,
      to,
      id: `m${++seq}`,
      ts: 1_700_000_000_000 + seq,
      body: JSON.stringify({ n: seq }),
      senderCopy: true,
      ...extra,
    });
  const stored = async (user: string) =>
    (await engine.read(inbox(user), 0, 100)).events.map(
      (e) => JSON.parse(e.frame) as Record<string, unknown>,
    );

  /** A Redis engine of this kind that records every call it makes but pings in `calls`. */
  const countingEngine = (k: string, calls: string[]) =>
    redisEngine(k === 'redis' ? {} : { url: undefined, cluster: cluster!.seeds.split(',') }, (command) => {
      if (command !== 'ping') calls.push(command);
    });

  beforeAll(async () => {
    if (kind === 'redis cluster') cluster = await startCluster({ primaries: 3, replicas: 0 });
  }, 60_000);
  afterAll(async () => {
    await cluster?.stop();
    cluster = undefined;
  });
  beforeEach(async () => {
    received.length = 0;
    engine = make();
    engine.onMessage((channel, m) => received.push([channel, m]));
    await engine.start();
    await until('engine ready', () => engine.ready());
  });
  afterEach(async () => {
    await engine.stop();
  });

  test('stores the recipient copy and the sender copy with one id and ts, publishes both (the sending connection skipped on its own copy), and counts the recipient connections', async () => {
    const [from, to] = pair();
    await Promise.all([from, to].map((u) => engine.subscribe(engine.channel(inbox(u)))));
    await engine.connectionAdd(to, 'c1', {});
    await engine.connectionAdd(to, 'c2', {});
    const r = await dm(from, to, { key: 'k1', skip: 'conn-a', body: '{"text":"hi"}' });
    if (r.limited) throw new Error('limited');
    expect(r.delivered).toBe(2);
    expect(r.message).toMatchObject({ offset: 1, duplicate: false });
    const fields = { type: 'dm', id: r.message.id, from, to, ts: r.message.ts, body: { text: 'hi' } };
    expect(await stored(to)).toEqual([{ ...fields, offset: 1, epoch: r.message.epoch }]);
    const [copy] = await stored(from);
    expect(copy).toMatchObject({ ...fields, offset: 1 });
    await until('both published', () => received.length === 2);
    const events = new Map(received.map(([ch, m]) => [ch, m as Extract<BusMessage, { kind: 'event' }>]));
    expect(events.get(engine.channel(inbox(to)))).toMatchObject({ offset: 1, skip: '' });
    expect(events.get(engine.channel(inbox(from)))).toMatchObject({ offset: 1, skip: 'conn-a' });
    // Nobody connected: delivered 0, stored anyway.
    const offline = await dm(to, `nobody-${++seq}`);
    expect(offline).toMatchObject({ limited: false, delivered: 0, message: { offset: 1 } });
  });

  test('a repeated key answers the first result and stores nothing new; a keyless DM is new every time', async () => {
    const [from, to] = pair();
    const first = await dm(from, to, { key: 'same' });
    const again = await dm(from, to, { key: 'same', body: '"other"' });
    if (first.limited || again.limited) throw new Error('limited');
    expect(again.message).toEqual({ ...first.message, duplicate: true });
    expect((await stored(to)).length).toBe(1);
    expect((await stored(from)).length).toBe(1);
    await dm(from, to);
    await dm(from, to);
    expect((await stored(to)).length).toBe(3);
    expect((await stored(from)).length).toBe(3);
  });

  test('a retry after only the recipient copy was written (by the two-step path) writes the sender copy once, with the first id and ts', async () => {
    const [from, to] = pair();
    const firstId = `first-${++seq}`;
    const firstTs = 1_600_000_000_000;
    // What a node that died between the two writes left: the recipient's copy, deduplicated on (from, key).
    await engine.append(inbox(to), {
      id: firstId,
      ts: firstTs,
      frame: dmFrameParts('recipient', { from, to, id: firstId, ts: firstTs, body: '"lost reply"' }),
      dedup: { scope: from, key: 'k-retry' },
    });
    expect(await stored(from)).toEqual([]);
    const retry = await dm(from, to, { key: 'k-retry', body: '"lost reply"', skip: 'conn-b' });
    expect(retry).toMatchObject({
      limited: false,
      message: { id: firstId, ts: firstTs, offset: 1, duplicate: true },
    });
    expect(await stored(from)).toEqual([
      expect.objectContaining({ id: firstId, ts: firstTs, from, to, body: 'lost reply', offset: 1 }),
    ]);
    // Once written, later retries change nothing.
    expect(await dm(from, to, { key: 'k-retry', body: '"lost reply"' })).toMatchObject({
      message: { id: firstId, duplicate: true },
    });
    expect((await stored(from)).length).toBe(1);
    expect((await stored(to)).length).toBe(1);
  });

  test('a DM to oneself is one copy, also when retried', async () => {
    const [self] = pair('self');
    await engine.connectionAdd(self, 'c1', {});
    const r = await dm(self, self, { key: 'note', skip: 'c1' });
    expect(r).toMatchObject({ limited: false, delivered: 1, message: { offset: 1, duplicate: false } });
    expect(await dm(self, self, { key: 'note' })).toMatchObject({ message: { offset: 1, duplicate: true } });
    expect((await stored(self)).map((e) => e.offset)).toEqual([1]);
  });

  test('a DM from "server" (no sender copy) writes the recipient copy alone', async () => {
    const [, to] = pair();
    const r = await dm('server', to, { senderCopy: false, key: 'order-1' });
    expect(r).toMatchObject({ limited: false, message: { offset: 1 } });
    expect(await stored('server')).toEqual([]);
    expect((await stored(to)).map((e) => e.from)).toEqual(['server']);
  });

  test('users and keys with the key separators or odd Unicode get inboxes and dedup records of their own', async () => {
    const odd = ['x:y', 'x', 'a}', '{u:a}', 'p|q%3A', 'é', 'e\u0301', '👍🏽', 'שלום', ' '];
    const n = ++seq;
    const senderOf = (i: number) => `s{:|%}${i}-${n}`;
    for (const [i, user] of odd.entries()) {
      const r = await dm(senderOf(i), user, { key: 'k:{1}|%', body: JSON.stringify(user) });
      if (r.limited) throw new Error('limited');
      expect(r.message.duplicate).toBe(false);
    }
    // Two (sender, key) pairs that a naive "sender:key" would join into one record are both stored.
    const to = `to-${++seq}`;
    const a = await dm(`x:y-${n}`, to, { key: 'z' });
    const b = await dm(`x-${n}`, to, { key: 'y:z' });
    expect([a, b].map((r) => !r.limited && r.message.duplicate)).toEqual([false, false]);
    expect((await stored(to)).map((e) => e.from)).toEqual([`x:y-${n}`, `x-${n}`]);
    for (const [i, user] of odd.entries()) {
      const events = await stored(user);
      expect(events.filter((e) => e.from === senderOf(i)).map((e) => e.body)).toEqual([user]);
      expect((await stored(senderOf(i))).map((e) => [e.from, e.to, e.body])).toEqual([
        [senderOf(i), user, user],
      ]);
    }
  });

  test('over USER_MSG_RATE nothing is stored and the wait is answered', async () => {
    const [from, to] = pair();
    const results = [];
    for (let i = 0; i < 3; i++) results.push(await dm(from, to, { rate: 2, key: `r${i}` }));
    expect(results.map((r) => r.limited)).toEqual([false, false, true]);
    const limited = results[2] as Extract<DirectMessageResult, { limited: true }>;
    expect(limited.waitMs).toBeGreaterThan(0);
    expect(limited.waitMs).toBeLessThanOrEqual(1000);
    expect((await stored(to)).length).toBe(2);
    expect((await stored(from)).length).toBe(2);
  });

  if (kind !== 'memory')
    test('round trips per DM: one on a single Redis (rate, both copies and the count in one script); under Cluster the recipient copy with the count, then the sender copy', async () => {
      const calls: string[] = [];
      const counted = countingEngine(kind, calls);
      await counted.start();
      try {
        await until('engine ready', () => counted.ready());
        const [from, to] = pair();
        const send = (rate: number) => {
          calls.length = 0;
          return counted.dm({
            from,
            to,
            id: `m${++seq}`,
            ts: 1,
            body: '1',
            senderCopy: true,
            key: `k${seq}`,
            rate,
          });
        };
        await send(0);
        expect(calls).toEqual(kind === 'redis' ? ['dm'] : ['dm', 'append']);
        await send(100);
        expect(calls).toEqual(kind === 'redis' ? ['dm'] : ['rate', 'dm', 'append']);
        if (kind === 'redis') {
          // Redis ran one script for it: one EVALSHA, no other top-level command of the engine in between.
          const evalsha = async () =>
            Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.cli('INFO', 'commandstats'))![1]);
          const before = await evalsha();
          await send(100);
          expect((await evalsha()) - before).toBe(1);
        }
        expect((await counted.read({ kind: 'inbox', name: from }, 0, 10)).top).toBe(kind === 'redis' ? 3 : 2);
      } finally {
        await counted.stop();
      }
    });

  // A room message with its sender's rate rides in the append's call on a single Redis (RATED_APPEND).
  const post = (room: string, user: string, perSecond: number, key?: string) => {
    const id = `m${++seq}`;
    return engine.appendRated(
      { kind: 'room', name: room },
      {
        id,
        ts: 1,
        frame: storedEventParts('message', { room, id, from: user, ts: 1 }, '1'),
        dedup: key ? { scope: user, key } : undefined,
      },
      { user, perSecond },
    );
  };

  test("a room message over its sender's rate stores nothing and answers the wait; under it, it is appended as append does (a repeated key answers the first result)", async () => {
    const room = `rated-${++seq}:{x}|é`;
    const user = `u-${seq}|{y}`;
    const results = [
      await post(room, user, 2, 'k'),
      await post(room, user, 2, 'k'),
      await post(room, user, 2),
    ];
    expect(results.map((r) => r.limited)).toEqual([false, false, true]);
    const [first, again] = results.map((r) => (r.limited ? undefined : r.message));
    expect(first).toMatchObject({ offset: 1, duplicate: false });
    expect(again).toEqual({ ...first, duplicate: true });
    const limited = results[2] as { limited: true; waitMs: number };
    expect(limited.waitMs).toBeGreaterThan(0);
    expect(limited.waitMs).toBeLessThanOrEqual(1000);
    expect((await engine.read({ kind: 'room', name: room }, 0, 10)).top).toBe(1);
    // Without a rate nothing is counted, however many.
    for (let i = 0; i < 4; i++) expect((await post(room, `${user}-free`, 0)).limited).toBe(false);
  });

  if (kind !== 'memory')
    test('round trips per rated room message: one on a single Redis (the count and the append in one script); under Cluster the count, then the append', async () => {
      const calls: string[] = [];
      const counted = countingEngine(kind, calls);
      await counted.start();
      try {
        await until('engine ready', () => counted.ready());
        const room = `rt-${++seq}`;
        const id = `m${seq}`;
        calls.length = 0; // what start() read (the denylist)
        await counted.appendRated(
          { kind: 'room', name: room },
          { id, ts: 1, frame: storedEventParts('message', { room, id, from: 'u', ts: 1 }, '1') },
          { user: 'u', perSecond: 100 },
        );
        expect(calls).toEqual(kind === 'redis' ? ['append'] : ['rate', 'append']);
      } finally {
        await counted.stop();
      }
    });
});
