// Two gateways on a primary with two replicas behind three real Sentinels: the cross-node protocol, then the
// primary killed mid-stream with REDIS_WAIT_REPLICAS=1: Sentinel promotes a replica, the gateways follow it,
// and no acknowledged message is lost.
import { startGateway, token, TestClient, until, type GatewayProc } from '../helpers/harness';
import { infoField, startSentinel, type SentinelProc } from '../helpers/redis-topologies';
import {
  dmAcrossNodes,
  presenceAcrossNodes,
  recoveryAcrossNodes,
  jumpAnnouncedToLateJoiner,
  roomAcrossNodes,
  settle,
  silentJumps,
  STREAM_ENV,
  StreamPublisher,
  subscriber,
} from './checks';

let sentinel: SentinelProc;
let a: GatewayProc;
let b: GatewayProc;
const clients: TestClient[] = [];
/** Streams a test started: stopped after it even if it failed midway. */
const streams: StreamPublisher[] = [];

async function connect(node: GatewayProc, user: string): Promise<TestClient> {
  const c = await TestClient.connect(node.wsUrl, token(user));
  clients.push(c);
  return c;
}

beforeAll(async () => {
  sentinel = await startSentinel({ replicas: 2, sentinels: 3 });
  const env = {
    LOG_LEVEL: process.env.GW_LOG_LEVEL ?? 'warn',
    REDIS_SENTINELS: sentinel.seeds,
    REDIS_SENTINEL_NAME: sentinel.name,
    ...STREAM_ENV,
  };
  [a, b] = await Promise.all([startGateway({ ...env, REDIS_WAIT_REPLICAS: '1' }), startGateway({ ...env })]);
}, 60_000);

afterEach(async () => {
  await Promise.allSettled(streams.splice(0).map((s) => s.stop()));
  await Promise.all(clients.splice(0).map((c) => c.close()));
});

afterAll(async () => {
  if (process.env.DUMP_GW_LOGS) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(`${process.env.DUMP_GW_LOGS}-a.log`, a?.logs() ?? '');
    writeFileSync(`${process.env.DUMP_GW_LOGS}-b.log`, b?.logs() ?? '');
  }
  await Promise.all([a?.kill(), b?.kill()]);
  await sentinel?.stop();
});

test('sentinel: a room message crosses nodes in both directions', async () => {
  await roomAcrossNodes(connect, a, b, 's-room');
});

test('sentinel: a DM reaches the recipient on both nodes and the sender’s other connection', async () => {
  await dmAcrossNodes(connect, a, b);
});

test('sentinel: presence joins and leaves cross nodes', async () => {
  await presenceAcrossNodes(connect, a, b, 's-pres');
});

test('sentinel: a client rejoining on the other node with since recovers every missed message', async () => {
  await recoveryAcrossNodes(connect, a, b, 's-recover');
});

test('sentinel: both gateways command and subscribe on the primary the sentinels name', async () => {
  const primary = await sentinel.primary();
  const list = await primary.cli('CLIENT', 'LIST');
  for (const g of [a, b]) {
    expect(list).toContain(`name=gateway:${g.nodeId}`);
    expect(list).toContain(`name=gateway-sub:${g.nodeId}`);
  }
  for (const r of sentinel.data.filter((n) => n !== primary))
    expect(infoField(await r.cli('INFO', 'replication'), 'role')).toBe('slave');
});

test('sentinel: subscriber connections killed mid-stream: resubscribed, caught up from history, nothing lost', async () => {
  const room = 's-killsub';
  const subA = await subscriber(a, 'ka', room);
  const subB = await subscriber(b, 'kb', room);
  clients.push(subA, subB);
  const pub = await connect(b, 'pk');
  await pub.ok({ type: 'join', room });
  const primary = await sentinel.primary();
  const stream = new StreamPublisher(pub, room);
  streams.push(stream);
  stream.start();
  await until('20 acks', () => stream.acks.length >= 20);
  expect(Number(await primary.cli('CLIENT', 'KILL', 'TYPE', 'pubsub'))).toBeGreaterThanOrEqual(2);
  const killedAt = stream.acks.length;
  await until('both gateways subscribed again', async () => {
    return (await primary.cli('PUBSUB', 'NUMSUB', `rc:{r:${room}}`)) === `rc:{r:${room}}\n2`;
  });
  await until('20 acks after', () => stream.acks.length >= killedAt + 20);
  await stream.stop();
  for (const sub of [subA, subB]) {
    const s = await settle(sub, room, stream.acks);
    expect(s).toMatchObject({ lost: 0, inGap: 0, gaps: 0, duplicates: 0, outOfOrder: 0 });
  }
});

test('the primary killed mid-stream with REDIS_WAIT_REPLICAS=1: Sentinel promotes a replica, no acknowledged message is lost, and the offset jump is announced to live and late subscribers', async () => {
  const room = 's-failover';
  const subA = await subscriber(a, 'fa', room);
  const subB = await subscriber(b, 'fb', room);
  clients.push(subA, subB);
  const pub = await connect(a, 'pf');
  await pub.ok({ type: 'join', room });
  const victim = await sentinel.primary();

  const stream = new StreamPublisher(pub, room);
  streams.push(stream);
  stream.start();
  await until('30 acks before the kill', () => stream.acks.length >= 30);
  const killedAt = Date.now();
  const ackedBeforeKill = stream.acks.length;
  await victim.kill();
  const heir = await sentinel.waitSettled(undefined, 30_000);
  const promotedMs = Date.now() - killedAt;
  expect(heir).not.toBe(victim);
  // WAIT 1 needs the other replica to follow the heir: when that happens bounds when publishing can resume.
  await until(
    'the other replica following the heir',
    async () => Number(infoField(await heir.cli('INFO', 'replication'), 'connected_slaves')) >= 1,
    30_000,
  );
  const replicaMs = Date.now() - killedAt;
  await until('an ack after the failover', () => stream.acks.length > ackedBeforeKill + 1, 30_000);
  const resumedMs = Date.now() - killedAt;
  const resumedAt = stream.acks.length;
  await until('20 acks after the failover', () => stream.acks.length >= resumedAt + 20, 15_000);
  await stream.stop();

  for (const [name, sub] of [
    ['a', subA],
    ['b', subB],
  ] as const) {
    const s = await settle(sub, room, stream.acks);
    console.log(
      `sentinel failover (sub on ${name}): ${JSON.stringify({ ...s, promotedMs, replicaMs, resumedMs, attempts: stream.attempts, errors: Object.fromEntries(stream.errors) })}`,
    );
    expect(s.lost).toBe(0);
    expect(s.outOfOrder).toBe(0);
    expect(silentJumps(sub, room)).toEqual([]);
  }
  await jumpAnnouncedToLateJoiner(connect, b, room, stream.acks);
}, 120_000);
