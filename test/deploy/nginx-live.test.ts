// The nginx alternative to HAProxy (deploy/nginx/nginx.conf), run for real by Debian's `nginx` binary in front of
// two real gateways on a real Redis, plus a third upstream that answers every request 503, as a gateway that is
// not ready (Redis unreachable) answers a WebSocket upgrade and /readyz. Only addresses change: the listen line
// gets a free local port and the three compose server lines become these three upstreams. Clients connect
// through nginx and never see the 503 (nginx retries the handshake on the next replica), chat across nodes, and
// one gateway is drained (SIGTERM) while its peer keeps publishing: a client that connects during the drain lands
// on the survivor, and the drained client comes back through nginx, recovers what it missed and chats again.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
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
let notReady: Server;
let notReadyHits = 0;
let nginx: ChildProcess | undefined;
let nginxLog = '';
let dir = '';
let lbUrl = '';
const clients: TestClient[] = [];

/** deploy/nginx/nginx.conf listening on `lbPort` with its server lines replaced by `servers` (name -> address). */
function renderNginxConfig(lbPort: number, servers: Record<string, string>): string {
  const lines = read('deploy/nginx/nginx.conf').split('\n');
  const serverLine = /^(\s*)server gw\d+:8080 (.*);$/;
  const first = lines.findIndex((l) => serverLine.test(l));
  if (first < 0) throw new Error('nginx.conf has no `server gwN:8080 ...;` lines');
  const [, indent, params] = serverLine.exec(lines[first]!)!;
  const kept = lines.filter((l) => !serverLine.test(l));
  kept.splice(first, 0, ...Object.values(servers).map((addr) => `${indent}server ${addr} ${params};`));
  const out = kept
    .join('\n')
    .replace(/^(\s*)listen 8080;$/m, `$1listen 127.0.0.1:${lbPort};`)
    .replace(/^(\s*)access_log \S+;$/m, `$1access_log ${join(dir, 'access.log')};`);
  if (!out.includes(`listen 127.0.0.1:${lbPort};`)) throw new Error('nginx.conf no longer listens on 8080');
  return out;
}

beforeAll(async () => {
  redis = await startRedis();
  const env = { REDIS_URL: redis.url, SHUTDOWN_GRACE_MS: '3000', TRUST_PROXY: 'true' };
  gateways = await Promise.all([
    startGateway({ ...env, NODE_ID: `ngx-a-${process.pid}` }),
    startGateway({ ...env, NODE_ID: `ngx-b-${process.pid}` }),
  ]);
  notReady = createServer((_req, res) => {
    notReadyHits += 1;
    res.writeHead(503, { 'content-type': 'application/json' }).end('{"status":"unavailable"}');
  });
  notReady.listen(0, '127.0.0.1');
  await once(notReady, 'listening');
  const lbPort = await freePort();
  lbUrl = `ws://127.0.0.1:${lbPort}/ws`;
  dir = mkdtempSync(join(tmpdir(), 'rc-nginx-'));
  const cfgPath = join(dir, 'nginx.conf');
  writeFileSync(
    cfgPath,
    renderNginxConfig(lbPort, {
      gw1: `127.0.0.1:${gateways[0]!.port}`,
      gw2: `127.0.0.1:${gateways[1]!.port}`,
      gw3: `127.0.0.1:${(notReady.address() as { port: number }).port}`,
    }),
  );
  nginx = spawn(
    'nginx',
    ['-p', dir, '-c', cfgPath, '-g', `daemon off; pid ${join(dir, 'nginx.pid')}; error_log stderr;`],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  nginx.stdout!.on('data', (d: Buffer) => (nginxLog += d.toString()));
  nginx.stderr!.on('data', (d: Buffer) => (nginxLog += d.toString()));
  nginx.on('error', (err) => (nginxLog += `spawn failed: ${err.message} (install Debian's nginx-light)`));
  const died = once(nginx, 'exit').then(() => {
    throw new Error(`nginx exited: ${nginxLog}`);
  });
  died.catch(() => undefined);
  const healthz = `http://127.0.0.1:${lbPort}/healthz`;
  await Promise.race([died, until('nginx answers', async () => (await fetch(healthz)).ok, 15_000, 100)]);
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  if (nginx && nginx.exitCode === null) {
    nginx.kill('SIGQUIT');
    await once(nginx, 'exit');
  }
  await Promise.all(gateways.map((g) => (g.proc.exitCode === null ? g.stop() : undefined)));
  await new Promise((r) => notReady?.close(r));
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

it('passes WebSocket upgrades, skips a replica that answers 503, and survives one gateway draining', async () => {
  const byNode = new Map(gateways.map((g) => [g.nodeId, g]));

  // Four connections through nginx: every one succeeds, none on the 503 replica, which nginx did try.
  const first4 = await Promise.all(
    ['alice', 'bob', 'carol', 'dave'].map((u) => TestClient.connect(lbUrl, token(u))),
  );
  clients.push(...first4);
  for (const c of first4) expect(byNode.has(String(c.welcome.node))).toBe(true);
  expect(notReadyHits).toBeGreaterThan(0);
  // nginx logs a WebSocket request when it ends; the health checks it proxied are there already.
  expect(readFileSync(join(dir, 'access.log'), 'utf8')).toMatch(/"GET \/healthz HTTP\/1.1" 200 /);
  const alice = first4[0]!;

  // least_conn spreads them over both gateways.
  const nodes = new Set(first4.map((c) => String(c.welcome.node)));
  expect(nodes.size).toBe(2);
  const other = first4.find((c) => c.welcome.node !== alice.welcome.node)!;

  await alice.ok({ type: 'join', room: 'ngx' });
  await other.ok({ type: 'join', room: 'ngx' });
  const first = await alice.ok({ type: 'publish', room: 'ngx', body: 'hello through nginx' });
  await other.waitFor((f) => f.type === 'message' && f.id === first.id);

  // Drain alice's node while the other side keeps publishing.
  const victim = byNode.get(String(alice.welcome.node))!;
  const survivor = gateways.find((g) => g !== victim)!;
  const exit = victim.stop();
  const during = await TestClient.connect(lbUrl, token('erin'));
  clients.push(during);
  expect(during.welcome.node).toBe(survivor.nodeId);
  await alice.waitFor((f) => f.type === 'reconnect');
  const missed = await other.ok({ type: 'publish', room: 'ngx', body: 'while you were away' });
  await until('alice closed by the draining node', () => alice.closeCode !== null);
  expect(alice.closeCode).toBe(1001);
  expect(await exit).toBe(0);

  // Alice comes back through nginx, to the survivor, and recovers what she missed.
  const alice2 = await TestClient.connect(lbUrl, token('alice'));
  clients.push(alice2);
  expect(alice2.welcome.node).toBe(survivor.nodeId);
  const rejoined = await alice2.ok({
    type: 'join',
    room: 'ngx',
    since: { offset: first.offset, epoch: first.epoch },
  });
  expect(rejoined.recovered).toBe(true);
  await alice2.waitFor((f) => f.type === 'message' && f.id === missed.id);
  const again = await alice2.ok({ type: 'publish', room: 'ngx', body: 'back again' });
  await other.waitFor((f) => f.type === 'message' && f.id === again.id);
}, 60_000);
