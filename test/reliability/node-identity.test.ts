// Node identity: every process is its own instance in the lease, whatever NODE_ID says. A node SIGKILLed and
// started again under the same NODE_ID on the same port takes nothing over: the dead process's presence and
// connections are swept within PRESENCE_TTL_MS plus one beat, with leave events. Two live processes with one
// NODE_ID are reported (log and metric).
import {
  startGateway,
  startRedis,
  token,
  TestClient,
  until,
  type GatewayProc,
  type RedisProc,
  presenceChange,
} from '../helpers/harness';

const TTL_MS = 2000;
const BEAT_MS = TTL_MS / 4;

let redis: RedisProc;
const procs: GatewayProc[] = [];
const clients: TestClient[] = [];

beforeEach(async () => {
  redis = await startRedis();
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(procs.splice(0).map((p) => p.kill()));
  await redis.stop();
});

async function gateway(env: Record<string, string>): Promise<GatewayProc> {
  const g = await startGateway({ REDIS_URL: redis.url, PRESENCE_TTL_MS: String(TTL_MS), ...env });
  procs.push(g);
  return g;
}

async function connect(node: GatewayProc, user: string): Promise<TestClient> {
  const c = await TestClient.connect(node.wsUrl, token(user));
  clients.push(c);
  return c;
}

async function metric(node: GatewayProc, name: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').pop()) : NaN;
}

test('kill -9 then restart under the same NODE_ID and port: the old process is swept within PRESENCE_TTL_MS + a beat', async () => {
  const gw1 = await gateway({ NODE_ID: 'gw-1' });
  const gw2 = await gateway({ NODE_ID: 'gw-2' });
  const alice = await connect(gw1, 'alice');
  const bob = await connect(gw2, 'bob');
  await alice.ok({ type: 'join', room: 'haunt' });
  await bob.ok({ type: 'join', room: 'haunt' });
  expect(((await bob.ok({ type: 'presence', room: 'haunt' })).presence as string[]).sort()).toEqual([
    'alice',
    'bob',
  ]);
  const before = await bob.ok({ type: 'dm', to: 'alice', body: 'are you there?' });
  expect(before).toMatchObject({ delivered: 1, live: true });
  const oldInstances = await redis.cli('ZRANGE', 'rc:nodes', '0', '-1');

  await gw1.kill();
  const killedAt = Date.now();
  procs.splice(procs.indexOf(gw1), 1);
  const again = await gateway({ NODE_ID: 'gw-1', PORT: String(gw1.port) });
  expect(again.port).toBe(gw1.port);

  // The new process is a new instance: it renews its own lease, not the dead one's.
  await until('the new instance to hold a lease', async () => {
    const now = (await redis.cli('ZRANGE', 'rc:nodes', '0', '-1')).split('\n');
    return now.some((n) => n.startsWith('gw-1#') && !oldInstances.includes(n));
  });

  const leave = await bob.waitFor((f) => presenceChange(f, 'leave', 'alice'), TTL_MS + BEAT_MS + 5000);
  const sweptAfterMs = Date.now() - killedAt;
  expect(leave).toMatchObject({ room: 'haunt' });
  expect((await bob.ok({ type: 'presence', room: 'haunt' })).presence).toEqual(['bob']);
  const dm = await bob.ok({ type: 'dm', to: 'alice', body: 'gone?' });
  expect(dm).toMatchObject({ delivered: 0, live: false, stored: true });
  // The lapse is noticed at the first beat after PRESENCE_TTL_MS; allow one beat of scheduling on a busy machine.
  expect(sweptAfterMs).toBeLessThanOrEqual(TTL_MS + 2 * BEAT_MS);
  const nodes = (await redis.cli('ZRANGE', 'rc:nodes', '0', '-1')).split('\n');
  expect(nodes.filter((n) => oldInstances.split('\n').includes(n) && n.startsWith('gw-1#'))).toEqual([]);
  console.log(
    `node-identity: old gw-1 swept ${sweptAfterMs} ms after kill -9 (TTL ${TTL_MS}, beat ${BEAT_MS})`,
  );

  // The restarted node serves alice again, and she is listed again once she joins.
  const back = await connect(again, 'alice');
  await back.ok({ type: 'join', room: 'haunt' });
  expect(((await bob.ok({ type: 'presence', room: 'haunt' })).presence as string[]).sort()).toEqual([
    'alice',
    'bob',
  ]);
  expect(await bob.ok({ type: 'dm', to: 'alice', body: 'welcome back' })).toMatchObject({
    delivered: 1,
    live: true,
  });
});

test('two live processes with the same NODE_ID are reported loudly: an error log and gateway_node_id_conflicts', async () => {
  const a = await gateway({ NODE_ID: 'twin' });
  const b = await gateway({ NODE_ID: 'twin' });
  const other = await gateway({ NODE_ID: 'single' });
  await until('both twins to count the other', async () => {
    const [x, y] = await Promise.all([
      metric(a, 'gateway_node_id_conflicts'),
      metric(b, 'gateway_node_id_conflicts'),
    ]);
    return x === 1 && y === 1;
  });
  expect(await metric(other, 'gateway_node_id_conflicts')).toBe(0);
  expect(a.logs()).toContain('another live gateway process uses this NODE_ID');
  expect(b.logs()).toContain('another live gateway process uses this NODE_ID');
  expect(other.logs()).not.toContain('another live gateway process uses this NODE_ID');

  // Each twin still serves its own clients, and a user on one is not confused with a user on the other.
  const u1 = await connect(a, 'u1');
  const u2 = await connect(b, 'u2');
  await u1.ok({ type: 'join', room: 'twins' });
  await u2.ok({ type: 'join', room: 'twins' });
  await u1.close();
  await until('u1 to leave presence', async () => {
    const p = (await u2.ok({ type: 'presence', room: 'twins' })).presence as string[];
    return p.length === 1 && p[0] === 'u2';
  });

  // Once one twin is gone (SIGTERM) the other stops reporting a conflict.
  procs.splice(procs.indexOf(b), 1);
  expect(await b.stop()).toBe(0);
  await until(
    'the conflict to clear',
    async () => (await metric(a, 'gateway_node_id_conflicts')) === 0,
    10_000,
  );
});
