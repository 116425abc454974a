// Fault test 6: property-based fuzzing of frames against a live node. Every frame gets exactly one reply, the
// node keeps serving a bystander throughout, and its memory returns to near its baseline.
import fc from 'fast-check';
import { startGateway, token, TestClient, type GatewayProc } from '../helpers/harness';
import { rssKb } from './nodes';

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
