// A real Prometheus (the Debian `prometheus` binary) scrapes two real gateways on a real Redis while clients
// chat through them; then every expression the dashboards and the alert rules use is run through Prometheus'
// HTTP API. Any expression that returns no series fails the test, by name: no panel may query a metric the
// gateways do not export. Alert expressions are evaluated without their thresholds (each operand of their
// comparisons and and/or/unless on its own), since a healthy cluster should not fire them.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dump } from 'js-yaml';
import {
  TestClient,
  freePort,
  startGateway,
  startRedis,
  token,
  until,
  upgradeStatus,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';
import { ROOT, alertRules, dashboardQueries, operands, substituteGrafanaVariables } from './lib';

interface QueryResult {
  status: 'success' | 'error';
  error?: string;
  data?: { resultType: string; result: unknown[] };
}

let redis: RedisProc;
let gateways: GatewayProc[] = [];
let prometheus: ChildProcess | undefined;
let promLog = '';
let promUrl = '';
let dir = '';
const clients: TestClient[] = [];

async function query(expr: string): Promise<QueryResult> {
  const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  return (await res.json()) as QueryResult;
}

beforeAll(async () => {
  redis = await startRedis();
  gateways = await Promise.all([
    startGateway({ REDIS_URL: redis.url }),
    startGateway({ REDIS_URL: redis.url }),
  ]);

  dir = mkdtempSync(join(tmpdir(), 'rc-prometheus-'));
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    rule_files: [join(ROOT, 'deploy/prometheus/alerts.yml')],
    // The job name the alert rules select, as in deploy/prometheus/prometheus.yml.
    scrape_configs: [
      { job_name: 'gateway', static_configs: [{ targets: gateways.map((g) => `127.0.0.1:${g.port}`) }] },
    ],
  };
  writeFileSync(join(dir, 'prometheus.yml'), dump(config));
  prometheus = spawn(
    'prometheus',
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  prometheus.stdout!.on('data', (d: Buffer) => (promLog += d.toString()));
  prometheus.stderr!.on('data', (d: Buffer) => (promLog += d.toString()));
  prometheus.on(
    'error',
    (err) => (promLog += `spawn failed: ${err.message} (is the Debian package prometheus installed?)`),
  );
  await until(
    'prometheus scraping both gateways',
    async () => {
      if (prometheus!.exitCode !== null) throw new Error(`prometheus exited: ${promLog}`);
      const r = await query('sum(up{job="gateway"})');
      const v = (r.data?.result[0] as { value?: [number, string] } | undefined)?.value?.[1];
      return v === '2';
    },
    20_000,
    100,
  );

  // Traffic that makes every labelled series exist at least once.
  const [gw1, gw2] = gateways as [GatewayProc, GatewayProc];
  const alice = await TestClient.connect(gw1.wsUrl, token('alice'));
  const bob = await TestClient.connect(gw2.wsUrl, token('bob'));
  clients.push(alice, bob);
  await alice.ok({ type: 'join', room: 'live' });
  const joined = await bob.ok({ type: 'join', room: 'live', since: { offset: 0 } }); // a recovery
  expect(joined.recovered).toBe(true);
  for (let i = 0; i < 5; i++) await alice.ok({ type: 'publish', room: 'live', body: `m${i}` });
  await bob.waitFor((f) => f.type === 'message' && f.body === 'm4');
  await alice.ok({ type: 'dm', to: 'bob', body: 'psst' });
  const notMember = await alice.request({ type: 'publish', room: 'elsewhere', body: 1 }); // an error reply
  expect((notMember.error as { code: string }).code).toBe('not_member');
  const rejected = await upgradeStatus(gw1.wsUrl, '?token=not-a-jwt'); // a rejected upgrade, an auth failure
  expect(rejected.status).toBe(401);

  const carol = await TestClient.connect(gw2.wsUrl, token('carol'));
  const replies = await Promise.all(Array.from({ length: 150 }, () => carol.request({ type: 'ping' })));
  expect(replies.some((r) => (r.error as { code?: string } | undefined)?.code === 'rate_limited')).toBe(true);
  await carol.close(); // a close code

  // Redis refuses writes (out of memory) for one publish: a Redis error and an `unavailable` reply.
  await redis.cli('CONFIG', 'SET', 'maxmemory', '1');
  try {
    const failed = await alice.request({ type: 'publish', room: 'live', body: 'oom' });
    expect((failed.error as { code: string }).code).toBe('unavailable');
  } finally {
    await redis.cli('CONFIG', 'SET', 'maxmemory', '0');
  }
  await alice.ok({ type: 'publish', room: 'live', body: 'after' });
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  if (prometheus && prometheus.exitCode === null) {
    prometheus.kill('SIGTERM');
    await once(prometheus, 'exit');
  }
  await Promise.all(gateways.map((g) => g.stop()));
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Polls every expression until it returns series; resolves with those that never did (and why). */
async function emptyExpressions(exprs: Array<{ name: string; expr: string }>, timeoutMs: number) {
  let pending = exprs;
  const invalid: string[] = [];
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const still: typeof pending = [];
    for (const e of pending) {
      const r = await query(e.expr);
      if (r.status !== 'success') invalid.push(`${e.name}: ${e.expr}\n    -> ${r.error}`);
      else if ((r.data?.result.length ?? 0) === 0) still.push(e);
    }
    pending = still;
    if (pending.length === 0 || invalid.length > 0 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 500));
  }
  return [...invalid, ...pending.map((e) => `${e.name}: ${e.expr}\n    -> no series`)];
}

it('every dashboard query returns series from the live gateways', async () => {
  const exprs = dashboardQueries().map((q) => ({
    name: `${q.dashboard} / ${q.panel}`,
    expr: substituteGrafanaVariables(q.expr),
  }));
  expect(exprs.length).toBeGreaterThan(40);
  expect(await emptyExpressions(exprs, 20_000)).toEqual([]);
}, 60_000);

it('every alert and recording rule expression (without its thresholds) returns series', async () => {
  const exprs = alertRules().flatMap((r) =>
    (r.record ? [r.expr] : operands(r.expr)).map((expr) => ({ name: r.alert ?? r.record!, expr })),
  );
  expect(exprs.length).toBeGreaterThan(10);
  expect(await emptyExpressions(exprs, 20_000)).toEqual([]);
}, 60_000);

it('Prometheus loads every rule of alerts.yml and evaluates each without error', async () => {
  const res = await fetch(`${promUrl}/api/v1/rules`);
  const body = (await res.json()) as {
    data: { groups: Array<{ rules: Array<{ name: string; type: string; health: string; state?: string }> }> };
  };
  const rules = body.data.groups.flatMap((g) => g.rules);
  expect(rules.map((r) => r.name).sort()).toEqual(
    alertRules()
      .map((r) => r.alert ?? r.record)
      .sort(),
  );
  await until('every rule evaluated healthy', async () => {
    const again = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as typeof body;
    return again.data.groups.flatMap((g) => g.rules).every((r) => r.health === 'ok');
  });
}, 30_000);
