// One simple gateway figure per Redis topology, for docs/SCALING.md: two gateway nodes, ROOMS rooms of MEMBERS
// connections split over both nodes, one publisher per room at RATE messages/s for SECONDS; measured: deliveries/s,
// delivery latency (publish sent -> received, one clock), gateway CPU per delivery (/proc utime+stime) and RSS per
// connection. Same load on a single Redis and on a 3-primary Redis Cluster. Not a test: run it with
//   npx esbuild test/cluster/bench-gateway.ts --bundle --platform=node --format=esm --packages=external \
//     --outfile=.tmp/bench/gateway.mjs && node .tmp/bench/gateway.mjs
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { startGateway, startRedis, token, type GatewayProc } from '../helpers/harness';
import { startCluster } from '../helpers/redis-topologies';

const ROOMS = Number(process.env.ROOMS ?? 10);
const MEMBERS = Number(process.env.MEMBERS ?? 100);
const RATE = Number(process.env.RATE ?? 10);
const SECONDS = Number(process.env.SECONDS ?? 10);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in clock ticks of 1/100 s
}
function rssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

function open(
  node: GatewayProc,
  user: string,
  room: string,
  onMessage?: (f: Record<string, unknown>) => void,
) {
  return new Promise<WebSocket>((resolve, reject) => {
    const ws = new WebSocket(`${node.wsUrl}?token=${token(user)}`);
    ws.on('error', reject);
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as Record<string, unknown>;
      if (f.type === 'welcome') ws.send(JSON.stringify({ id: 1, type: 'join', room }));
      else if (f.re === 1) resolve(ws);
      else onMessage?.(f);
    });
  });
}

async function run(mode: string, env: Record<string, string>) {
  const common = { CONN_RATE_PER_IP: '0', CMD_RATE: '100000', CMD_BURST: '100000', USER_MSG_RATE: '0' };
  const nodes = await Promise.all([startGateway({ ...env, ...common }), startGateway({ ...env, ...common })]);
  const rssBefore = nodes.map((n) => rssKb(n.pid));
  let received = 0;
  const latencies: number[] = [];
  const sockets: WebSocket[] = [];
  for (let r = 0; r < ROOMS; r++)
    for (let m = 0; m < MEMBERS; m += 50)
      sockets.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(50, MEMBERS - m) }, (_, i) =>
            open(nodes[(m + i) % 2]!, `u${r}-${m + i}`, `room-${r}`, (f) => {
              if (f.type !== 'message') return;
              received++;
              latencies.push(performance.timeOrigin + performance.now() - (f.body as { t: number }).t);
            }),
          ),
        )),
      );
  await sleep(500);
  const rssAfter = nodes.map((n) => rssKb(n.pid));
  const publishers = await Promise.all(
    Array.from({ length: ROOMS }, (_, r) => open(nodes[r % 2]!, `pub${r}`, `room-${r}`)),
  );
  received = 0;
  latencies.length = 0;
  const cpu0 = nodes.map((n) => cpuSeconds(n.pid));
  const t0 = performance.now();
  let sent = 0;
  for (let tick = 0; tick < SECONDS * RATE; tick++) {
    for (const p of publishers)
      p.send(
        JSON.stringify({
          id: 2 + tick,
          type: 'publish',
          room: `room-${publishers.indexOf(p)}`,
          body: { t: performance.timeOrigin + performance.now(), pad: 'x'.repeat(100) },
        }),
      );
    sent += publishers.length;
    const next = t0 + ((tick + 1) * 1000) / RATE;
    await sleep(Math.max(0, next - performance.now()));
  }
  const expected = sent * MEMBERS; // the publishers' own copies are not counted
  for (let i = 0; i < 100 && received < expected; i++) await sleep(100);
  const seconds = (performance.now() - t0) / 1000;
  const cpu = nodes.reduce((s, n, i) => s + cpuSeconds(n.pid) - cpu0[i]!, 0);
  latencies.sort((a, b) => a - b);
  const result = {
    mode,
    connections: ROOMS * MEMBERS,
    offeredDeliveriesPerS: Math.round(expected / SECONDS),
    deliveredPerS: Math.round(received / seconds),
    lost: expected - received,
    p50ms: +latencies[Math.floor(latencies.length * 0.5)]!.toFixed(1),
    p99ms: +latencies[Math.floor(latencies.length * 0.99)]!.toFixed(1),
    gatewayCpuUsPerDelivery: +((cpu / received) * 1e6).toFixed(1),
    gatewayCores: +(cpu / seconds).toFixed(2),
    rssKbPerConnection: +(
      (rssAfter.reduce((s, x) => s + x, 0) - rssBefore.reduce((s, x) => s + x, 0)) /
      (ROOMS * MEMBERS)
    ).toFixed(1),
  };
  console.log(JSON.stringify(result));
  for (const ws of [...sockets, ...publishers]) ws.terminate();
  await Promise.all(nodes.map((n) => n.kill()));
  return result;
}

async function main() {
  const redis = await startRedis();
  await run('single Redis', { REDIS_URL: redis.url });
  await redis.stop();
  const cluster = await startCluster({ primaries: 3, replicas: 0 });
  await run('Redis Cluster (3 primaries)', { REDIS_CLUSTER_NODES: cluster.seeds });
  await cluster.stop();
}

void main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err);
    process.exit(1);
  },
);
