// The HAProxy config of the docker-compose cluster (deploy/haproxy/haproxy.cfg), run for real by the Debian
// `haproxy` binary in front of two real gateways on a real Redis. Only the addresses change: the bind lines get
// free local ports and the three compose server lines become the two local gateways. Clients connect through it,
// chat across nodes, and one gateway is drained (SIGTERM): its client is told to reconnect, comes back through
// HAProxy to the other gateway, recovers what it missed, and chats again.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  TestClient,
  freePort,
  startGateway,
  startRedis,
  token,
  until,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';
import { read } from './lib';

let redis: RedisProc;
let gateways: GatewayProc[] = [];
let haproxy: ChildProcess | undefined;
let haproxyLog = '';
let dir = '';
let lbUrl = '';
let statsUrl = '';
const clients: TestClient[] = [];

/**
 * deploy/haproxy/haproxy.cfg with its listeners on local ports and its server lines replaced by `servers`
 * (name -> host:port); everything else (balancing, health checks, timeouts) exactly as committed.
 */
function renderHaproxyConfig(lbPort: number, statsPort: number, servers: Record<string, string>): string {
  const cfg = read('deploy/haproxy/haproxy.cfg');
  const lines = cfg.split('\n');
  const first = lines.findIndex((l) => /^\s*server\s/.test(l));
  if (first < 0) throw new Error('haproxy.cfg has no server lines');
  const indent = /^(\s*)/.exec(lines[first]!)![1];
  const kept = lines.filter((l) => !/^\s*server\s/.test(l));
  kept.splice(
    first,
    0,
    ...Object.entries(servers).map(([name, addr]) => `${indent}server ${name} ${addr} check`),
  );
  const out = kept
    .join('\n')
    .replace(/^(\s*)bind :8080$/m, `$1bind 127.0.0.1:${lbPort}`)
    .replace(/^(\s*)bind :8404$/m, `$1bind 127.0.0.1:${statsPort}`);
  if (!out.includes(`127.0.0.1:${lbPort}`) || !out.includes(`127.0.0.1:${statsPort}`))
    throw new Error('haproxy.cfg no longer binds :8080 and :8404');
  return out;
}

/** Server name -> status (UP, DOWN, ...) of the `gateways` backend, from the stats page. */
async function serverStatus(): Promise<Record<string, string>> {
  const csv = await (await fetch(`${statsUrl}/stats;csv`)).text();
  const [header, ...rows] = csv.trim().split('\n');
  const cols = header!.replace(/^# /, '').split(',');
  const px = cols.indexOf('pxname');
  const sv = cols.indexOf('svname');
  const st = cols.indexOf('status');
  const out: Record<string, string> = {};
  for (const row of rows) {
    const f = row.split(',');
    if (f[px] === 'gateways' && f[sv] !== 'BACKEND' && f[sv] !== 'FRONTEND') out[f[sv]!] = f[st]!;
  }
  return out;
}

beforeAll(async () => {
  redis = await startRedis();
  const env = { REDIS_URL: redis.url, SHUTDOWN_GRACE_MS: '3000', TRUST_PROXY: 'true' };
  gateways = await Promise.all([
    startGateway({ ...env, NODE_ID: `lb-a-${process.pid}` }),
    startGateway({ ...env, NODE_ID: `lb-b-${process.pid}` }),
  ]);
  const [lbPort, statsPort] = [await freePort(), await freePort()];
  lbUrl = `ws://127.0.0.1:${lbPort}/ws`;
  statsUrl = `http://127.0.0.1:${statsPort}`;
  dir = mkdtempSync(join(tmpdir(), 'rc-haproxy-'));
  const cfgPath = join(dir, 'haproxy.cfg');
  writeFileSync(
    cfgPath,
    renderHaproxyConfig(lbPort, statsPort, {
      gw1: `127.0.0.1:${gateways[0]!.port}`,
      gw2: `127.0.0.1:${gateways[1]!.port}`,
    }),
  );
  haproxy = spawn('haproxy', ['-db', '-f', cfgPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  haproxy.stdout!.on('data', (d: Buffer) => (haproxyLog += d.toString()));
  haproxy.stderr!.on('data', (d: Buffer) => (haproxyLog += d.toString()));
  haproxy.on(
    'error',
    (err) => (haproxyLog += `spawn failed: ${err.message} (is the Debian package haproxy installed?)`),
  );
  const died = once(haproxy, 'exit').then(() => {
    throw new Error(`haproxy exited: ${haproxyLog}`);
  });
  died.catch(() => undefined);
  await Promise.race([
    died,
    until(
      'haproxy up with both gateways healthy',
      async () => {
        const s = await serverStatus();
        return s.gw1 === 'UP' && s.gw2 === 'UP';
      },
      15_000,
      100,
    ),
  ]);
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  if (haproxy && haproxy.exitCode === null) {
    haproxy.kill('SIGTERM');
    await once(haproxy, 'exit');
  }
  await Promise.all(gateways.map((g) => (g.proc.exitCode === null ? g.stop() : undefined)));
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('passes WebSocket upgrades, balances by least connections and survives one gateway draining', async () => {
  const byNode = new Map(gateways.map((g) => [g.nodeId, g]));

  // Two clients through the balancer land on different nodes (leastconn) and chat across them.
  const alice = await TestClient.connect(lbUrl, token('alice'));
  clients.push(alice);
  const bob = await TestClient.connect(lbUrl, token('bob'));
  clients.push(bob);
  expect(byNode.has(String(alice.welcome.node))).toBe(true);
  expect(byNode.has(String(bob.welcome.node))).toBe(true);
  expect(bob.welcome.node).not.toBe(alice.welcome.node);

  await alice.ok({ type: 'join', room: 'lb' });
  await bob.ok({ type: 'join', room: 'lb' });
  const first = await alice.ok({ type: 'publish', room: 'lb', body: 'hello through haproxy' });
  await alice.waitFor((f) => f.type === 'message' && f.id === first.id);
  await bob.waitFor((f) => f.type === 'message' && f.id === first.id);

  // Drain alice's node: she is told to reconnect and her socket closes with 1001, through the proxy.
  const victim = byNode.get(String(alice.welcome.node))!;
  const survivor = gateways.find((g) => g !== victim)!;
  const exit = victim.stop();
  await alice.waitFor((f) => f.type === 'reconnect');
  await until('alice closed by the draining node', () => alice.closeCode !== null);
  expect(alice.closeCode).toBe(1001);
  expect(await exit).toBe(0);

  // Published while alice was away.
  const missed = await bob.ok({ type: 'publish', room: 'lb', body: 'while you were away' });

  // HAProxy's /readyz check takes the drained node out; the next connection goes to the survivor.
  await until('haproxy marks the drained gateway down', async () => {
    const s = await serverStatus();
    return Object.values(s).filter((v) => v.startsWith('DOWN')).length === 1;
  });
  const alice2 = await TestClient.connect(lbUrl, token('alice'));
  clients.push(alice2);
  expect(alice2.welcome.node).toBe(survivor.nodeId);

  const rejoined = await alice2.ok({
    type: 'join',
    room: 'lb',
    since: { offset: first.offset, epoch: first.epoch },
  });
  expect(rejoined.recovered).toBe(true);
  await alice2.waitFor((f) => f.type === 'message' && f.id === missed.id);

  const again = await alice2.ok({ type: 'publish', room: 'lb', body: 'back again' });
  await bob.waitFor((f) => f.type === 'message' && f.id === again.id);
  await alice2.waitFor((f) => f.type === 'message' && f.id === again.id);
}, 60_000);
