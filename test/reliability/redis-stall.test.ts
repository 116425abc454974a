// Redis stops answering (SIGSTOP) while clients join, connect, publish and DM: every reply comes within
// REDIS_COMMAND_TIMEOUT_MS (`unavailable`), SUBSCRIBE included; /readyz turns 503 within about a second and new
// upgrades are refused with 503; after SIGCONT /readyz is 200 again and nothing acknowledged was lost.
import WebSocket from 'ws';
import {
  startRedis,
  token,
  TestClient,
  until,
  upgradeStatus,
  type Frame,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';
import { faultEnv, startNodes } from './nodes';
import { Publisher, score, stream, Subscriber } from './tracker';

const TIMEOUT_MS = 1000;
/**
 * Scheduling slack on a shared machine, on top of one timeout. Each command here waits on one Redis command when
 * Redis stops (join: its SUBSCRIBE; publish and dm: their one script, which also counts USER_MSG_RATE when that
 * limit is on; presence: one read; a new connection: its inbox SUBSCRIBE),
 * so one timeout is the bound. The slack stays under a second timeout: a reply that waited on two Redis commands
 * in a row (2 × TIMEOUT_MS) still fails it, however loaded the machine.
 */
const SLACK_MS = 900;
/** /readyz answers 200 again at the next probe after SIGCONT (probed every 250 ms): 1 s and scheduling slack. */
const READY_MS = 1400;

let redis: RedisProc;
let nodes: GatewayProc[] = [];
const clients: TestClient[] = [];

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await Promise.all(nodes.map((n) => n.kill()));
  await redis?.stop();
});

const readyz = async (n: GatewayProc) => (await fetch(`${n.url}/readyz`)).status;

/** A command's reply and how long it took. */
async function timed(c: TestClient, cmd: Record<string, unknown>): Promise<{ reply: Frame; ms: number }> {
  const start = Date.now();
  const reply = await c.request(cmd, 10_000);
  return { reply, ms: Date.now() - start };
}

/** A socket opened during the stall: refused (503), or opened and closed without a welcome. Resolves with how. */
function connectDuringStall(url: string, user: string): Promise<{ outcome: string; ms: number }> {
  const start = Date.now();
  return new Promise((resolve) => {
    const ws = new WebSocket(`${url}?token=${token(user)}`);
    ws.on('error', () => undefined);
    ws.on('unexpected-response', (_req, res) => {
      resolve({ outcome: `http ${res.statusCode}`, ms: Date.now() - start });
      ws.terminate();
    });
    ws.on('message', (d) => {
      const f = JSON.parse(d.toString()) as Frame;
      if (f.type === 'welcome') resolve({ outcome: 'welcome', ms: Date.now() - start });
    });
    ws.on('close', (code) => resolve({ outcome: `close ${code}`, ms: Date.now() - start }));
  });
}

test('Redis SIGSTOPped: every reply within REDIS_COMMAND_TIMEOUT_MS, /readyz 503 then 200, 0 acknowledged lost', async () => {
  redis = await startRedis();
  ({ nodes } = await startNodes(
    1,
    faultEnv(redis.url, { REDIS_COMMAND_TIMEOUT_MS: String(TIMEOUT_MS), REDIS_PROBE_TIMEOUT_MS: '500' }),
  ));
  const [node] = nodes as [GatewayProc];
  const urls = [node.wsUrl];
  const subs = Array.from({ length: 2 }, (_, i) => new Subscriber(`sub${i}`, urls, 'stall'));
  await Promise.all(subs.map((s) => s.start()));
  const pub = new Publisher('pub', urls, 'stall');
  const actor = await TestClient.connect(node.wsUrl, token('actor'));
  clients.push(actor);
  await actor.ok({ type: 'join', room: 'stall' });
  const streaming = stream(pub, 150, 50, 60_000);
  await until('the stream to be flowing', () => pub.acked.size >= 20);

  redis.pause();
  const pausedAt = Date.now();
  const [join, publish, dm, presence, connect] = await Promise.all([
    timed(actor, { type: 'join', room: 'fresh-room' }), // a SUBSCRIBE on a channel new to the node
    timed(actor, { type: 'publish', room: 'stall', body: 'during', key: 'during-1' }),
    timed(actor, { type: 'dm', to: 'someone', body: 'during' }),
    timed(actor, { type: 'presence', room: 'stall' }),
    connectDuringStall(node.wsUrl, 'newcomer'), // its inbox SUBSCRIBE cannot be answered
  ]);
  const results = { join, publish, dm, presence };
  for (const [name, r] of Object.entries(results)) {
    expect([name, r.reply.ok, (r.reply.error as { code?: string } | undefined)?.code]).toEqual([
      name,
      false,
      'unavailable',
    ]);
    // Named, so that a failure says which command took how long.
    expect([name, r.ms <= TIMEOUT_MS + SLACK_MS ? 'in time' : r.ms]).toEqual([name, 'in time']);
  }
  expect(['http 503', 'close 1011']).toContain(connect.outcome);
  expect(connect.ms).toBeLessThanOrEqual(TIMEOUT_MS + SLACK_MS);

  const notReadyAt = await until('/readyz to answer 503', async () =>
    (await readyz(node)) === 503 ? Date.now() : 0,
  );
  // 503 once the probe PING waited REDIS_PROBE_TIMEOUT_MS, or once commands time out: within one command timeout.
  expect(notReadyAt - pausedAt).toBeLessThanOrEqual(TIMEOUT_MS + SLACK_MS);
  expect((await upgradeStatus(node.wsUrl, `?token=${token('late')}`)).status).toBe(503);
  // The node itself still answers (liveness is not readiness).
  expect((await fetch(`${node.url}/healthz`)).status).toBe(200);

  await new Promise((r) => setTimeout(r, Math.max(0, pausedAt + 3000 - Date.now())));
  redis.resume();
  const resumedAt = Date.now();
  const readyAt = await until('/readyz to answer 200 again', async () =>
    (await readyz(node)) === 200 ? Date.now() : 0,
  );
  expect(readyAt - resumedAt).toBeLessThanOrEqual(READY_MS);

  // Serving again: the join that failed works now, and the stream finishes with nothing acknowledged lost.
  await actor.ok({ type: 'join', room: 'fresh-room' });
  const back = await TestClient.connect(node.wsUrl, token('newcomer'));
  clients.push(back);
  await streaming;
  const acked = [...pub.acked.values()];
  const top = Math.max(...acked.map((a) => a.offset));
  await until('subscribers caught up', () => subs.every((s) => s.last >= top), 20_000);
  const result = score(150, acked, subs);
  console.log(
    `redis-stall: ${JSON.stringify({
      replyMs: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, v.ms])),
      connect,
      notReadyAfterMs: notReadyAt - pausedAt,
      readyAfterResumeMs: readyAt - resumedAt,
      ...result,
      publishErrors: Object.fromEntries(pub.errors),
    })}`,
  );
  await pub.stop();
  await Promise.all(subs.map((s) => s.stop()));
  expect(result.acknowledged).toBe(150);
  expect(result).toMatchObject({ lost: 0, duplicated: 0, outOfOrder: 0, gaps: 0 });
});
