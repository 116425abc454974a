// Fault test 6: property-based fuzzing of frames against a live node. Every frame gets exactly one reply, the
// node keeps serving a bystander throughout, and its memory returns to near its baseline. Then a structure-aware
// run on two nodes and Redis: valid publishes mixed with hostile commands (deep bodies followed by history,
// reads of rooms that do not exist, floods from sockets that never read); nothing acknowledged is lost.
import fc from 'fast-check';
import WebSocket from 'ws';
import { startGateway, token, TestClient, type Frame, type GatewayProc } from '../helpers/harness';
import { rssKb, startBackend, startNodes, TOPOLOGIES } from './nodes';

let gw: GatewayProc;
beforeAll(async () => {
  gw = await startGateway({
    MAX_VIOLATIONS: '1000000',
    CMD_RATE: '1000000',
    CMD_BURST: '1000000',
    USER_MSG_RATE: '0',
    MAX_ROOMS_PER_CONNECTION: '20',
  });
});
afterAll(async () => {
  await gw?.kill();
});

const TYPES = [
  'join',
  'leave',
  'publish',
  'dm',
  'presence',
  'history',
  'inbox',
  'refresh',
  'ping',
  'nope',
  '',
];
const anyValue = fc.oneof(
  fc.jsonValue(),
  fc.string({ unit: 'binary' }),
  fc.constantFrom(1e308, -1e308, Number.MAX_SAFE_INTEGER + 2, -0, 0.5, -1),
  fc.constantFrom('\ud800', '\udfff\ud800', '\u0000', '\u202e', '👩‍👩‍👧‍👦', 'ø'.repeat(300)),
);
/** Plausible-looking commands with wrong, odd or missing fields. */
const command = fc
  .record(
    {
      id: fc.oneof(fc.nat(), anyValue),
      type: fc.oneof(fc.constantFrom(...TYPES), anyValue),
      room: fc.oneof(fc.constantFrom('lobby', 'fuzz-1', 'a'.repeat(200)), anyValue),
      to: anyValue,
      body: anyValue,
      key: anyValue,
      since: fc.oneof(fc.record({ offset: anyValue, epoch: anyValue }), anyValue),
      limit: anyValue,
      before: anyValue,
      token: anyValue,
    },
    { requiredKeys: [] },
  )
  .map((o) => JSON.stringify(o));
const nested = fc
  .integer({ min: 1, max: 30_000 })
  .map((d) => `{"id":1,"type":"publish","room":"r","body":${'['.repeat(d)}${']'.repeat(d)}}`);
const garbage = fc.oneof(
  fc.string({ unit: 'grapheme', maxLength: 200 }),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  fc.string({ maxLength: 50 }).map((s) => `{"id":1,"type":"ping"${s}`),
);
const frame = fc.oneof(
  { weight: 6, arbitrary: command },
  { weight: 1, arbitrary: nested },
  { weight: 3, arbitrary: garbage },
);

test('thousands of malformed, odd and deeply nested frames: one reply each, the node keeps serving, memory settles', async () => {
  // A new seed each run finds new cases; a failure prints it, and FUZZ_SEED=<seed> replays it.
  const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Date.now() % 2 ** 31;
  console.log(`fuzz seed ${seed}`);
  const frames = fc.sample(frame, { numRuns: 3000, seed });
  const bystander = await TestClient.connect(gw.wsUrl, token('bystander'));
  await bystander.ok({ type: 'join', room: 'lobby' });
  const fuzzer = await TestClient.connect(gw.wsUrl, token('fuzzer'));
  const baseline = rssKb(gw.pid);

  let replies = 0;
  fuzzer.ws.on('message', (d) => {
    if ('re' in (JSON.parse(d.toString()) as object)) replies++;
  });
  let peak = baseline;
  for (let i = 0; i < frames.length; i += 100) {
    for (const f of frames.slice(i, i + 100)) fuzzer.sendRaw(f);
    // The bystander is served between every batch.
    expect((await bystander.request({ type: 'ping' })).ok).toBe(true);
    peak = Math.max(peak, rssKb(gw.pid));
  }
  // An id no generated frame uses (fc.nat stays below 2^31), so this reply is the ping's own.
  const lastId = 2 ** 52;
  const last = fuzzer.next((f) => f.re === lastId, 30_000);
  fuzzer.sendRaw(JSON.stringify({ id: lastId, type: 'ping' }));
  expect(await last).toMatchObject({ ok: true });
  const settled = rssKb(gw.pid);
  console.log(
    `fuzz: ${JSON.stringify({ seed, frames: frames.length, replies: replies - 1, rssKb: { baseline, peak, settled } })}`,
  );

  expect(fuzzer.closeCode).toBeNull();
  expect(replies - 1).toBe(frames.length); // exactly one reply per frame (the final ping excluded)
  const pub = await bystander.ok({ type: 'publish', room: 'lobby', body: 'still here' });
  await bystander.waitFor((f) => f.type === 'message' && f.id === pub.id);
  expect(settled - baseline).toBeLessThan(100 * 1024);
  await Promise.all([fuzzer.close(), bystander.close()]);
});

type Action =
  | { kind: 'publish'; body: unknown }
  | { kind: 'deep'; depth: number; node: number }
  | { kind: 'history'; limit: number; before?: number; node: number }
  | { kind: 'read-missing'; room: string; node: number }
  | { kind: 'flood'; commands: number; node: number }
  | { kind: 'garbage'; frame: string; node: number };

const node01 = fc.integer({ min: 0, max: 1 });
const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constant('publish' as const),
      // Some large bodies, so that history replies and floods weigh something.
      body: fc.oneof(
        { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 4 }) },
        { weight: 1, arbitrary: fc.integer({ min: 1000, max: 16_000 }).map((n) => 'x'.repeat(n)) },
      ),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('deep' as const),
      depth: fc.integer({ min: 33, max: 30_000 }),
      node: node01,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record(
      {
        kind: fc.constant('history' as const),
        limit: fc.integer({ min: 1, max: 100 }),
        before: fc.integer({ min: 1, max: 400 }),
        node: node01,
      },
      { requiredKeys: ['kind', 'limit', 'node'] },
    ),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('read-missing' as const),
      room: fc.stringMatching(/^[a-z0-9]{1,40}$/).map((r) => `missing-${r}`),
      node: node01,
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('flood' as const),
      commands: fc.integer({ min: 10, max: 200 }),
      node: node01,
    }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('garbage' as const), frame, node: node01 }) },
);

/** A request retried after retryAfterMs while it is rate_limited. */
async function paced(c: TestClient, cmd: Record<string, unknown>): Promise<Frame> {
  for (;;) {
    const r = await c.request(cmd);
    const error = r.error as { code: string; retryAfterMs: number } | undefined;
    if (r.ok || error?.code !== 'rate_limited') return r;
    await new Promise((res) => setTimeout(res, error.retryAfterMs));
  }
}

describe.each(TOPOLOGIES)('on %s Redis', (topology) => {
  test('structure-aware fuzz on two nodes: valid publishes among deep bodies, histories, missing rooms and never-reading floods lose nothing acknowledged', async () => {
    const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : Date.now() % 2 ** 31;
    console.log(`structured fuzz seed ${seed}`);
    const actions = fc.sample(action, { numRuns: 400, seed });
    const backend = await startBackend(topology);
    // Production nodes with the default per-connection limits; only the per-user message rate is off so the
    // publisher's acknowledged stream is long.
    const { nodes } = await startNodes(2, {
      ...backend.env,
      NODE_ENV: 'production',
      USER_MSG_RATE: '0',
      CONN_RATE_PER_IP: '0',
      MAX_VIOLATIONS: '1000000',
    });
    const floods: WebSocket[] = [];
    try {
      const room = 'fuzz-structured';
      const subscriber = await TestClient.connect(nodes[1]!.wsUrl, token('fz-subscriber'));
      await subscriber.ok({ type: 'join', room });
      const publisher = await TestClient.connect(nodes[0]!.wsUrl, token('fz-publisher'));
      await publisher.ok({ type: 'join', room });
      // The hostile clients also send generated frames with ids of their own (fc.nat: below 2^31); their requests
      // and awaited raw frames use ids above that, so no generated frame's reply can be taken for theirs.
      const hostile = await Promise.all(
        nodes.map((n) => TestClient.connect(n.wsUrl, token('fz-hostile'), { firstId: 2 ** 40 })),
      );
      for (const h of hostile) await h.ok({ type: 'join', room });
      const baselines = nodes.map((n) => rssKb(n.pid));
      const peaks = [...baselines];

      const acked: { id: string; offset: number }[] = [];
      const tally: Record<string, number> = {};
      for (const [i, a] of actions.entries()) {
        tally[a.kind] = (tally[a.kind] ?? 0) + 1;
        switch (a.kind) {
          case 'publish': {
            const r = await paced(publisher, { type: 'publish', room, body: a.body, key: `k${i}` });
            expect(r).toMatchObject({ ok: true });
            acked.push({ id: r.id as string, offset: r.offset as number });
            break;
          }
          case 'deep': {
            const h = hostile[a.node]!;
            const reply = h.next((f) => f.re === 2 ** 41 + i);
            h.sendRaw(
              `{"id":${2 ** 41 + i},"type":"publish","room":"${room}","body":${'['.repeat(a.depth)}${']'.repeat(a.depth)}}`,
            );
            expect(await reply).toMatchObject({ ok: false, error: { code: 'bad_request' } });
            const history = await paced(h, { type: 'history', room, limit: 100 });
            expect(history).toMatchObject({ ok: true });
            break;
          }
          case 'history': {
            const r = await paced(hostile[a.node]!, {
              type: 'history',
              room,
              limit: a.limit,
              before: a.before,
            });
            expect(r).toMatchObject({ ok: true });
            break;
          }
          case 'read-missing': {
            const r = await paced(hostile[a.node]!, { type: 'history', room: a.room });
            expect(r).toMatchObject({ ok: true, epoch: '', offset: 0, messages: [] });
            break;
          }
          case 'flood': {
            const ws = new WebSocket(`${nodes[a.node]!.wsUrl}?token=${token(`fz-flood-${i}`)}`);
            ws.on('error', () => undefined);
            await new Promise((resolve) => ws.once('message', resolve));
            (ws as unknown as { _socket: { pause(): void } })._socket.pause();
            for (let k = 0; k < a.commands; k++)
              ws.send(JSON.stringify({ id: k, type: 'history', room, limit: 100 }));
            floods.push(ws);
            break;
          }
          case 'garbage':
            hostile[a.node]!.sendRaw(a.frame);
            break;
        }
        if (i % 25 === 0)
          for (const [n, node] of nodes.entries()) peaks[n] = Math.max(peaks[n]!, rssKb(node.pid));
      }
      // Both nodes serve a fresh client within a second.
      for (const node of nodes) {
        const start = performance.now();
        const probe = await TestClient.connect(node.wsUrl, token('fz-probe'));
        expect((await probe.request({ type: 'ping' }, 1000)).ok).toBe(true);
        expect(performance.now() - start).toBeLessThan(1000);
        await probe.close();
      }
      // Every acknowledged publish reached the subscriber on the other node once, in offset order.
      const last = acked[acked.length - 1];
      if (last) await subscriber.waitFor((f) => f.type === 'message' && f.offset === last.offset, 20_000);
      const received = subscriber.events('message', room);
      const offsets = received.map((f) => f.offset as number);
      expect(offsets).toEqual([...offsets].sort((x, y) => x - y));
      expect(new Set(offsets).size).toBe(offsets.length);
      const ids = new Set(received.map((f) => f.id));
      const lost = acked.filter((m) => !ids.has(m.id));
      expect(subscriber.events('gap')).toEqual([]);
      console.log(
        `structured fuzz: ${JSON.stringify({ seed, actions: tally, acked: acked.length, received: received.length, lost: lost.length, rssKb: { baselines, peaks } })}`,
      );
      expect(lost).toEqual([]);
      // Nothing but acknowledged publishes was stored.
      expect(received.length).toBe(acked.length);
      for (const [n] of nodes.entries()) expect(peaks[n]! - baselines[n]!).toBeLessThan(200 * 1024);
      await Promise.all([subscriber.close(), publisher.close(), ...hostile.map((h) => h.close())]);
    } finally {
      for (const ws of floods) ws.terminate();
      await Promise.all(nodes.map((n) => n.kill()));
      await backend.stop();
    }
  }, 120_000);
});
