// Two gateways on a real Redis Cluster (3 primaries, 3 replicas): the cross-node protocol, sharded pub/sub that
// keeps a room's traffic on its shard, a slot migrated mid-stream, and a primary killed mid-stream with
// REDIS_WAIT_REPLICAS=1: no acknowledged message lost.
import { keySlot } from '../../services/gateway/src/engine/redis-connections';
import { startGateway, token, TestClient, until, type GatewayProc } from '../helpers/harness';
import { infoField, startCluster, type RedisClusterProc } from '../helpers/redis-topologies';
import {
  dmAcrossNodes,
  presenceAcrossNodes,
  recoveryAcrossNodes,
  roomAcrossNodes,
  jumpAnnouncedToLateJoiner,
  settle,
  silentJumps,
  STREAM_ENV,
  StreamPublisher,
  subscriber,
} from './checks';

let cluster: RedisClusterProc;
let a: GatewayProc;
let b: GatewayProc;
const clients: TestClient[] = [];

async function connect(node: GatewayProc, user: string): Promise<TestClient> {
  const c = await TestClient.connect(node.wsUrl, token(user));
  clients.push(c);
  return c;
}

const channel = (room: string) => `rc:{r:${room}}`;

beforeAll(async () => {
  cluster = await startCluster({ primaries: 3, replicas: 1 });
  // a waits for one replica to hold each append before answering ok; b does not wait.
  [a, b] = await Promise.all([
    startGateway({ REDIS_CLUSTER_NODES: cluster.seeds, REDIS_WAIT_REPLICAS: '1', ...STREAM_ENV }),
    startGateway({ REDIS_CLUSTER_NODES: cluster.seeds, ...STREAM_ENV }),
  ]);
}, 60_000);

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill()]);
  await cluster?.stop();
});

test('cluster: a room message crosses nodes in both directions', async () => {
  await roomAcrossNodes(connect, a, b, 'c-room');
});

test('cluster: a DM reaches the recipient on both nodes and the sender’s other connection', async () => {
  await dmAcrossNodes(connect, a, b);
});

test('cluster: presence joins and leaves cross nodes', async () => {
  await presenceAcrossNodes(connect, a, b, 'c-pres');
});

test('cluster: a client rejoining on the other node with since recovers every missed message', async () => {
  await recoveryAcrossNodes(connect, a, b, 'c-recover');
});

test('a room’s keys, subscriptions and publishes stay on the shard owning its slot; the others see none', async () => {
  const room = 'c-shard';
  const alice = await connect(a, 'alice');
  const bob = await connect(b, 'bob');
  await alice.ok({ type: 'join', room });
  await bob.ok({ type: 'join', room });
  const owner = await cluster.primaryOf(channel(room));
  const others = (await cluster.primaries()).filter((p) => p !== owner);
  expect(others).toHaveLength(2);
  const slot = Number(await owner.cli('CLUSTER', 'KEYSLOT', channel(room)));

  // Both gateways hold the room's shard channel on the owner only; no classic pub/sub channel anywhere.
  expect(await owner.cli('PUBSUB', 'SHARDNUMSUB', channel(room))).toBe(`${channel(room)}\n2`);
  for (const p of others) {
    expect(await p.cli('PUBSUB', 'SHARDNUMSUB', channel(room))).toBe(`${channel(room)}\n0`);
    expect((await p.cli('PUBSUB', 'SHARDCHANNELS')).split('\n')).not.toContain(channel(room));
  }
  for (const p of [owner, ...others]) expect(await p.cli('PUBSUB', 'CHANNELS')).toBe('');

  for (const p of [owner, ...others]) await p.cli('CONFIG', 'RESETSTAT');
  const n = 20;
  let last = '';
  for (let i = 0; i < n; i++) last = (await alice.ok({ type: 'publish', room, body: i })).id as string;
  await bob.waitFor((f) => f.type === 'message' && f.id === last);
  await alice.waitFor((f) => f.type === 'message' && f.id === last);

  const calls = async (p: typeof owner, cmd: string) => {
    const line = infoField(await p.cli('INFO', 'commandstats'), `cmdstat_${cmd}`);
    return line ? Number(/calls=(\d+)/.exec(line)![1]) : 0;
  };
  expect(await calls(owner, 'spublish')).toBe(n);
  expect(await calls(owner, 'xadd')).toBe(n);
  for (const p of others) {
    expect(await calls(p, 'spublish')).toBe(0);
    expect(await calls(p, 'xadd')).toBe(0);
    expect(await calls(p, 'publish')).toBe(0);
    // The slot is not theirs: they hold none of its keys (and would answer MOVED for them).
    expect(await p.cli('CLUSTER', 'COUNTKEYSINSLOT', String(slot))).toBe('0');
  }
  expect(Number(await owner.cli('CLUSTER', 'COUNTKEYSINSLOT', String(slot)))).toBeGreaterThanOrEqual(3);
  expect(await owner.cli('XLEN', `${channel(room)}:h`)).toBe(String(n));

  // The last local member leaving unsubscribes that node's shard channel.
  await bob.ok({ type: 'leave', room });
  await until(
    'b to sunsubscribe',
    async () => (await owner.cli('PUBSUB', 'SHARDNUMSUB', channel(room))) === `${channel(room)}\n1`,
  );
});

test('the gateway computes the same hash slot as Redis for room and user channels', async () => {
  const keys = ['rc:{r:lobby}', 'rc:{u:alice}', 'rc:{r:team-ü✓}', 'rc:nodes', 'x{}y', '{a}{b}', 'rc:{r:}x'];
  for (let i = 0; i < 50; i++) keys.push(`rc:{r:room-${i * 7919}}`);
  const node = cluster.nodes[0]!;
  for (const key of keys)
    expect([key, keySlot(key)]).toEqual([key, Number(await node.cli('CLUSTER', 'KEYSLOT', key))]);
});

test('shard subscriber connections killed mid-stream: resubscribed, caught up from history, nothing lost', async () => {
  const room = 'c-killsub';
  const subA = await subscriber(a, 'ka', room);
  const subB = await subscriber(b, 'kb', room);
  clients.push(subA, subB);
  const pub = await connect(b, 'pk');
  await pub.ok({ type: 'join', room });
  const owner = await cluster.primaryOf(channel(room));
  const stream = new StreamPublisher(pub, room);
  stream.start();
  await until('20 acks', () => stream.acks.length >= 20);
  expect(Number(await owner.cli('CLIENT', 'KILL', 'TYPE', 'pubsub'))).toBeGreaterThanOrEqual(2);
  const killedAt = stream.acks.length;
  await until('both gateways subscribed again', async () => {
    return (await owner.cli('PUBSUB', 'SHARDNUMSUB', channel(room))) === `${channel(room)}\n2`;
  });
  await until('20 acks after', () => stream.acks.length >= killedAt + 20);
  await stream.stop();
  for (const sub of [subA, subB]) {
    const s = await settle(sub, room, stream.acks);
    expect(s).toMatchObject({ lost: 0, inGap: 0, gaps: 0, duplicates: 0, outOfOrder: 0 });
  }
});

test('a room’s slot migrated to another primary mid-stream: subscriptions follow it, nothing lost, no gap', async () => {
  const room = 'c-migrate';
  const subA = await subscriber(a, 'sa', room);
  const subB = await subscriber(b, 'sb', room);
  clients.push(subA, subB);
  const pub = await connect(b, 'pm');
  await pub.ok({ type: 'join', room });
  const from = await cluster.primaryOf(channel(room));
  const to = (await cluster.primaries()).find((p) => p !== from)!;
  const slot = Number(await from.cli('CLUSTER', 'KEYSLOT', channel(room)));

  const stream = new StreamPublisher(pub, room);
  stream.start();
  await until('20 acks before the migration', () => stream.acks.length >= 20);
  await cluster.migrateSlot(slot, to);
  const movedAt = stream.acks.length;
  await until('both gateways subscribed on the new owner', async () => {
    return (await to.cli('PUBSUB', 'SHARDNUMSUB', channel(room))) === `${channel(room)}\n2`;
  });
  await until('20 acks after the migration', () => stream.acks.length >= movedAt + 20, 15_000);
  await stream.stop();

  expect((await cluster.primaryOf(channel(room))).addr).toBe(to.addr);
  expect(await from.cli('PUBSUB', 'SHARDNUMSUB', channel(room))).toBe(`${channel(room)}\n0`);
  for (const sub of [subA, subB]) {
    const s = await settle(sub, room, stream.acks);
    console.log(`migration: ${JSON.stringify({ ...s, errors: Object.fromEntries(stream.errors) })}`);
    expect(s).toMatchObject({ lost: 0, inGap: 0, gaps: 0, duplicates: 0, outOfOrder: 0 });
    expect(s.received).toBe(stream.acks.length);
  }
}, 60_000);

test('a primary killed mid-stream with REDIS_WAIT_REPLICAS=1: its replica takes over, no acknowledged message is lost, and the offset jump is announced to live and late subscribers', async () => {
  const room = 'c-failover';
  const subA = await subscriber(a, 'fa', room);
  const subB = await subscriber(b, 'fb', room);
  clients.push(subA, subB);
  const pub = await connect(a, 'pf');
  await pub.ok({ type: 'join', room });
  const victim = await cluster.primaryOf(channel(room));
  const heir = await cluster.replicaOf(victim);

  const stream = new StreamPublisher(pub, room);
  stream.start();
  await until('30 acks before the kill', () => stream.acks.length >= 30);
  const killedAt = Date.now();
  const ackedBeforeKill = stream.acks.length;
  await victim.kill();
  await until('the replica promoted', async () => (await cluster.primaryOf(channel(room))) === heir, 30_000);
  const promotedMs = Date.now() - killedAt;
  // The heir has no replica now, so WAIT 1 cannot be met: publishes answer unavailable and are retried until
  // the old primary comes back (empty) and rejoins as the heir's replica.
  await victim.restart();
  await cluster.waitHealthy(30_000);
  await until('an ack after the failover', () => stream.acks.length > ackedBeforeKill + 1, 30_000);
  const resumedMs = Date.now() - killedAt;
  const healedAt = stream.acks.length;
  await until('20 acks after the old primary rejoined', () => stream.acks.length >= healedAt + 20, 15_000);
  await stream.stop();

  for (const [name, sub] of [
    ['a', subA],
    ['b', subB],
  ] as const) {
    const s = await settle(sub, room, stream.acks);
    console.log(
      `failover (sub on ${name}): ${JSON.stringify({ ...s, promotedMs, resumedMs, attempts: stream.attempts, errors: Object.fromEntries(stream.errors) })}`,
    );
    expect(s.lost).toBe(0);
    expect(s.outOfOrder).toBe(0);
    expect(silentJumps(sub, room)).toEqual([]);
  }

  await jumpAnnouncedToLateJoiner(connect, b, room, stream.acks);
}, 120_000);
