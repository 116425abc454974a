// `npm run bench [-- --quick] [-- --pin]`: the side-by-side benchmark. Starts a private redis-server and two
// gateway nodes, runs the workloads with forked generator processes, then does the same against a two-node
// Socket.IO + @socket.io/redis-adapter cluster (loadtest/socketio-server.ts) and against the floor of this stack
// (loadtest/floor-server.ts: two bare uWebSockets.js nodes relaying one Redis PUBLISH per message into native
// topics), plus two reference limits (Redis PUBLISH ops/s, one gateway node's local fanout without Redis). Prints one table, writes JSON, Markdown and SVG
// charts to bench-results/ (and the charts to docs/ with --docs).
//
// Exit status: 1 only when something broke (a process crashed, a connection was dropped or refused, a message
// acknowledged while the system kept up was never delivered, a publish was refused); never because of a timing.
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Encoding, System } from './lib/clients';
import { Histogram } from './lib/histogram';
import type { Layout, ScenarioKind } from './lib/ipc';
import { GeneratorPool, type PhaseResult } from './lib/pool';
import { busyCores, cpuTimes, sampleProc, type ProcSample } from './lib/proc';
import { encodingRows, markdownTable, num, tableRows, textTable } from './lib/report';
import {
  idleSlope,
  summarise,
  sustained,
  type BenchResult,
  type ConnectStorm,
  type IdleLevel,
  type PhaseSummary,
  type ReconnectStorm,
  type SystemResult,
} from './lib/results';
import { run, startNode, startRedis, type NodeProc, type ServerProc } from './lib/servers';
import { latencyChart, memoryChart } from './lib/svg';

const USAGE = `usage: npm run bench -- [options]
  --quick               small and short (about two and a half minutes); what .ci/run uses
  --pin                 pin the server nodes to --server-cpus and generators + Redis to --generator-cpus
  --server-cpus LIST    taskset CPU list for the server nodes (default 0)
  --generator-cpus LIST taskset CPU list for generators and Redis (default 1)
  --generators N        generator processes (default 2)
  --addresses N         loopback source addresses 127.0.0.2 ... (default 4)
  --only relay|socketio|floor  run one system only
  --scenarios LIST      some of idle,fanout,chat,dm,connect,storm (default all; storm runs on connect's connections,
                        and connect's figures come with it)
  --connections N       connections of the connect + join storm (default 20000, quick 1000; capped by ulimit -n)
  --no-reference        skip redis-benchmark and the single-node local fanout
  --out DIR             results directory (default bench-results)
  --docs                also write the charts to docs/
  --retries N           repeat a step disturbed by other work on the machine up to N times (default 2, quick 0)
  --wait-quiet SECONDS  first wait up to this long for other work on the machine to stop (default: 600, quick: 0)`;

interface Plan {
  /** Idle connections on one node; the settled-RSS slope is taken between the first and the last level. */
  idleLevels: number[];
  /** Connect + join storm over both nodes, each connection joining one of `rooms` rooms. */
  connect: { connections: number; rooms: number };
  /** Reconnect storm: publish rate (messages/s, from the surviving node's clients) while it goes on. */
  storm: { ratePerSec: number; durationMs: number };
  fanout: { rooms: number; subscribers: number; rates: number[]; stepMs: number };
  chat: { rooms: number; size: number; intervalMs: number; durationMs: number };
  dm: { pairs: number; ratePerSec: number; durationMs: number };
  payloadBytes: number;
  redisBenchmarkRequests: number;
}

const FULL: Plan = {
  idleLevels: [5000, 10000, 19000],
  connect: { connections: 20000, rooms: 100 },
  storm: { ratePerSec: 50, durationMs: 2000 },
  fanout: { rooms: 10, subscribers: 500, rates: [20, 50, 100, 200, 400, 800, 1600], stepMs: 5000 },
  chat: { rooms: 2000, size: 5, intervalMs: 10000, durationMs: 30000 },
  dm: { pairs: 1000, ratePerSec: 500, durationMs: 10000 },
  payloadBytes: 64,
  redisBenchmarkRequests: 500000,
};

const QUICK: Plan = {
  idleLevels: [1000, 2000],
  connect: { connections: 1000, rooms: 100 },
  storm: { ratePerSec: 20, durationMs: 1000 },
  fanout: { rooms: 10, subscribers: 50, rates: [20, 100], stepMs: 2000 },
  chat: { rooms: 200, size: 5, intervalMs: 2000, durationMs: 4000 },
  dm: { pairs: 100, ratePerSec: 100, durationMs: 2000 },
  payloadBytes: 64,
  redisBenchmarkRequests: 50000,
};

const SECRET = 'bench-secret-0123456789abcdef';
const here = dirname(fileURLToPath(import.meta.url));
const GATEWAY = resolve(here, '../gateway/main.js');
const GENERATOR = resolve(here, 'generator.js');
const SOCKETIO = resolve(here, 'socketio-server.js');
const FLOOR = resolve(here, 'floor-server.js');

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => console.error(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}`);

/** Things to stop if the run is interrupted. */
const live = new Set<{ stop(): Promise<void> }>();

function noFileLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return !m || m[1] === 'unlimited' ? 1048576 : Number(m[1]);
}

interface Ctx {
  plan: Plan;
  generators: number;
  addresses: string[];
  serverCpus?: string;
  generatorCpus?: string;
  /** Most connections one process (server node or generator) can hold under `ulimit -n`. */
  perProcessCap: number;
  /** How many times a step disturbed by other work on the machine is repeated. */
  retries: number;
  scenarios: Set<string>;
}

function layoutFor(
  ctx: Ctx,
  system: System,
  kind: ScenarioKind,
  urls: string[],
  total: number,
  roomSize = 1,
  encoding: Encoding = 'json',
): Layout {
  return {
    system,
    encoding,
    kind,
    urls,
    secret: SECRET,
    userPrefix: `${kind}-u`,
    roomPrefix: `${kind}-r`,
    roomSize,
    total,
    localAddresses: ctx.addresses,
    payloadBytes: ctx.plan.payloadBytes,
    connectConcurrency: 64,
    timeoutMs: 15000,
  };
}

function cpuOf(procs: ServerProc[]): ProcSample[] {
  return procs.map((p) => sampleProc(p.pid));
}

function cpuSince(procs: ServerProc[], before: ProcSample[]): number {
  return cpuOf(procs).reduce((s, x, i) => s + x.cpuSeconds - before[i]!.cpuSeconds, 0);
}

/**
 * Waits until the servers and generators are quiet (under 0.1 core together for half a second), so that work
 * left over from connecting (joins, presence events) does not land in the first measured step. Returns ms waited.
 */
async function settle(pids: number[], maxMs = 60000): Promise<number> {
  const started = performance.now();
  for (;;) {
    const before = pids.map((p) => sampleProc(p).cpuSeconds);
    await sleep(500);
    const used = pids.reduce((s, p, i) => s + sampleProc(p).cpuSeconds - before[i]!, 0);
    if (used < 0.05 || performance.now() - started > maxMs) return performance.now() - started;
  }
}

/**
 * A CPU meter over a piece of work (a storm): first measures what the processes use at rest over a second, then
 * `stop()` waits until they are quiet again and returns each one's CPU seconds since the meter started, less its
 * rest rate over that time, with the seconds elapsed.
 */
async function cpuMeter(procs: ServerProc[]) {
  const r0 = cpuOf(procs);
  const tr = performance.now();
  await sleep(1000);
  const start = cpuOf(procs);
  const t0 = performance.now();
  const rest = start.map((x, i) => (x.cpuSeconds - r0[i]!.cpuSeconds) / ((t0 - tr) / 1000));
  return {
    async stop(): Promise<{ seconds: number; cpu: number[] }> {
      await settle(procs.map((p) => p.pid));
      const seconds = (performance.now() - t0) / 1000;
      const cpu = cpuOf(procs).map((x, i) =>
        Math.max(0, x.cpuSeconds - start[i]!.cpuSeconds - rest[i]! * seconds),
      );
      return { seconds, cpu };
    },
  };
}

/** Waits (up to maxMs) for other work on the machine to fall under 0.3 cores over 3 s. Returns the last reading. */
async function waitQuiet(maxMs: number): Promise<number> {
  const started = performance.now();
  let busy = 0;
  for (;;) {
    const a = cpuTimes();
    await sleep(3000);
    busy = busyCores(a, cpuTimes(), cpus().length);
    if (busy < 0.3 || performance.now() - started > maxMs) return busy;
    log(`machine busy with other work (${busy.toFixed(2)} cores); waiting for it to calm down`);
  }
}

async function startServers(ctx: Ctx, system: System, withRedis: boolean, nodes: number) {
  const redis = withRedis ? await startRedis(ctx.generatorCpus) : undefined;
  if (redis) live.add(redis);
  const started: NodeProc[] = [];
  for (let i = 1; i <= nodes; i++) {
    const name = `${system === 'relay' ? 'gw' : system === 'floor' ? 'floor' : 'sio'}-${i}`;
    const node =
      system === 'floor'
        ? await startNode({
            name,
            script: FLOOR,
            env: { NODE_ID: name, REDIS_URL: redis!.url },
            readyPath: '/readyz',
            clientPath: (port) => `ws://127.0.0.1:${port}/ws`,
            cpus: ctx.serverCpus,
          })
        : system === 'relay'
          ? await startNode({
              name,
              script: GATEWAY,
              env: {
                NODE_ID: name,
                JWT_SECRET: SECRET,
                LOG_LEVEL: 'warn',
                ...(redis ? { REDIS_URL: redis.url } : {}),
                // Socket.IO has no limits here; lift ours so both measure delivery, not policy.
                CONN_RATE_PER_IP: '1000000',
                CMD_RATE: '1000000',
                CMD_BURST: '1000000',
                USER_MSG_RATE: '1000000',
              },
              readyPath: '/readyz',
              clientPath: (port) => `ws://127.0.0.1:${port}/ws`,
              cpus: ctx.serverCpus,
            })
          : await startNode({
              name,
              script: SOCKETIO,
              env: { NODE_ID: name, JWT_SECRET: SECRET, REDIS_URL: redis!.url },
              readyPath: '/healthz',
              clientPath: (port) => `http://127.0.0.1:${port}`,
              cpus: ctx.serverCpus,
            });
    live.add(node);
    started.push(node);
  }
  return { redis, nodes: started };
}

async function stopAll(procs: Array<ServerProc | undefined>, pool?: GeneratorPool) {
  if (pool) {
    await pool.closeConnections().catch(() => {});
    await pool.stop();
    live.delete(pool);
  }
  for (const p of procs) {
    if (!p) continue;
    await p.stop();
    live.delete(p);
  }
}

async function idle(ctx: Ctx, system: System, node: NodeProc, pool: GeneratorPool, problems: string[]) {
  const levels = [...new Set(ctx.plan.idleLevels.map((l) => Math.min(l, ctx.perProcessCap)))];
  await pool.init(layoutFor(ctx, system, 'idle', [node.clientUrl], levels[levels.length - 1]!));
  await sleep(500);
  const base = sampleProc(node.pid);
  const out: IdleLevel[] = [];
  let prev = 0;
  let connected = 0;
  for (const level of levels) {
    const r = await pool.connect(prev, level, false);
    connected += r.connected;
    if (r.failed > 0)
      problems.push(`idle: ${r.failed} of ${level - prev} connections failed: ${r.errors.join('; ')}`);
    await settle([node.pid, ...pool.pids()], 20000);
    // The lowest of a few readings: RSS right after a burst of connections still holds garbage not yet collected.
    let s = sampleProc(node.pid);
    for (let i = 0; i < 4; i++) {
      await sleep(500);
      const x = sampleProc(node.pid);
      if (x.rssBytes < s.rssBytes) s = x;
    }
    out.push({
      connections: level,
      failed: r.failed,
      rssBaseBytes: base.rssBytes,
      rssBytes: s.rssBytes,
      bytesPerConnection: (s.rssBytes - base.rssBytes) / Math.max(1, connected),
      connectRate: r.connected / (r.elapsedMs / 1000),
      connectP99Ms: Histogram.from(r.connectLatency).quantile(0.99) / 1000,
    });
    log(
      `${system} idle ${level}: ${(s.rssBytes / 2 ** 20).toFixed(0)} MiB RSS, ` +
        `${((s.rssBytes - base.rssBytes) / Math.max(1, connected) / 1024).toFixed(2)} KB/conn, ` +
        `${num(r.connected / (r.elapsedMs / 1000))} conn/s`,
    );
    prev = level;
  }
  await pool.closeConnections();
  await sleep(1000);
  return out;
}

interface StepRaw {
  k: number;
  rate: number;
  seconds: number;
  serverCpu: number;
  redisCpu: number;
  generatorCpu: number;
  /** Cores busy machine-wide during the step. */
  machineCores: number;
}

function toSummary(p: PhaseResult, r: StepRaw): PhaseSummary {
  const s = summarise(p, r.rate, r.seconds, r.serverCpu, r.redisCpu);
  const ours = (r.serverCpu + r.redisCpu + r.generatorCpu) / r.seconds;
  return { ...s, generatorCores: r.generatorCpu / r.seconds, otherCores: Math.max(0, r.machineCores - ours) };
}

let nextPhase = 1;

/**
 * Runs one publish phase per rate, stopping once a step saturates. A step disturbed by other work on the machine
 * (over half a core busy with processes that are not ours) is repeated after the machine calms down, up to
 * `retries` times. Returns the steps to report and every attempt (for loss checks).
 */
async function steps(
  pool: GeneratorPool,
  servers: ServerProc[],
  redis: ServerProc | undefined,
  plan: Array<{ rate: number; durationMs: number }>,
  label: string,
  retries: number,
): Promise<{ reported: StepRaw[]; attempts: StepRaw[] }> {
  const reported: StepRaw[] = [];
  const attempts: StepRaw[] = [];
  const gens = pool.pids();
  for (const { rate, durationMs } of plan) {
    for (let attempt = 0; ; attempt++) {
      const k = nextPhase++;
      const s0 = cpuOf(servers);
      const r0 = redis ? cpuOf([redis]) : [];
      const g0 = gens.map((pid) => sampleProc(pid));
      const m0 = cpuTimes();
      const t0 = performance.now();
      const sent = await pool.phase(k, rate, durationMs);
      await pool.drain([k], sent.expected, 2000, 20000);
      const seconds = (performance.now() - t0) / 1000;
      const raw: StepRaw = {
        k,
        rate,
        seconds,
        serverCpu: cpuSince(servers, s0),
        redisCpu: redis ? cpuSince([redis], r0) : 0,
        generatorCpu: gens.reduce((n, pid, i) => n + sampleProc(pid).cpuSeconds - g0[i]!.cpuSeconds, 0),
        machineCores: busyCores(m0, cpuTimes(), cpus().length),
      };
      attempts.push(raw);
      const p = (await pool.collect([k])).get(k)!;
      const s = toSummary(p, raw);
      log(
        `${label} ${rate} msg/s: ${num(s.deliveredPerSec)} deliveries/s, p50 ${s.p50Ms.toFixed(2)} p99 ${s.p99Ms.toFixed(2)} ` +
          `max ${s.maxMs.toFixed(1)} ms, lost ${s.lost}, ${s.serverCpuUsPerDelivery.toFixed(2)} µs CPU/delivery, ` +
          `cores: servers ${s.serverCores.toFixed(2)} redis ${s.redisCores.toFixed(2)} ` +
          `generators ${(s.generatorCores ?? 0).toFixed(2)} others ${(s.otherCores ?? 0).toFixed(2)}` +
          (sent.errors.length ? `, errors: ${sent.errors.slice(0, 2).join('; ')}` : '') +
          (s.slowSeconds.length
            ? `, seconds with a delivery over 100 ms (s: worst ms): ${s.slowSeconds.map(([t, m]) => `${t}:${m}`).join(' ')}`
            : ''),
      );
      if ((s.otherCores ?? 0) > 0.5 && attempt < retries) {
        log(`${label} ${rate} msg/s: disturbed by other work on the machine; repeating once it is quiet`);
        await waitQuiet(120000);
        continue;
      }
      reported.push(raw);
      const target = rate * (p.published > 0 ? p.expected / p.published : 0);
      if (s.p99Ms > 2000 || s.lost > 0.01 * s.expected || s.deliveredPerSec < 0.7 * target) {
        log(`${label}: saturated at ${rate} msg/s, no higher steps`);
        return { reported, attempts };
      }
      break;
    }
  }
  return { reported, attempts };
}

/** Summaries of the phases after a final count (late deliveries included). */
async function finalSummaries(pool: GeneratorPool, raws: StepRaw[]): Promise<PhaseSummary[]> {
  if (raws.length === 0) return [];
  const final = await pool.collect(raws.map((r) => r.k));
  return raws.map((r) => toSummary(final.get(r.k)!, r));
}

/** Final summaries of the reported steps; loss in any attempt, reported or repeated, goes to `problems`. */
async function conclude(
  pool: GeneratorPool,
  run: { reported: StepRaw[]; attempts: StepRaw[] },
  label: string,
  problems: string[],
): Promise<PhaseSummary[]> {
  const all = await finalSummaries(pool, run.attempts);
  all.forEach((s) => lossProblems(`${label} ${s.rate} msg/s`, s, problems));
  const reported = new Set(run.reported.map((r) => r.k));
  return all.filter((_, i) => reported.has(run.attempts[i]!.k));
}

function lossProblems(what: string, s: PhaseSummary | undefined, problems: string[]) {
  // Loss or refused publishes while the system kept up (p99 under a second) mean something broke; beyond that
  // they are the capacity limit the table reports.
  if (!s || s.p99Ms >= 1000) return;
  if (s.lost > 0) problems.push(`${what}: ${s.lost} of ${s.expected} deliveries never arrived`);
  if (s.publishErrors > 0) problems.push(`${what}: ${s.publishErrors} publishes refused`);
}

async function fanout(
  ctx: Ctx,
  system: System,
  nodes: NodeProc[],
  redis: ServerProc | undefined,
  label: string,
  encoding: Encoding = 'json',
) {
  const f = ctx.plan.fanout;
  const total = f.rooms * f.subscribers;
  const pool = GeneratorPool.start({ script: GENERATOR, count: ctx.generators, cpus: ctx.generatorCpus });
  live.add(pool);
  const problems: string[] = [];
  try {
    await pool.init(
      layoutFor(
        ctx,
        system,
        'rooms',
        nodes.map((n) => n.clientUrl),
        total,
        f.subscribers,
        encoding,
      ),
    );
    const c = await pool.connect(0, total, true);
    if (c.failed > 0)
      problems.push(
        `${label}: ${c.failed} of ${total} connections failed to connect or join: ${c.errors.join('; ')}`,
      );
    const quiet = [...nodes, ...(redis ? [redis] : [])].map((p) => p.pid).concat(pool.pids());
    const waited = await settle(quiet);
    log(
      `${label}: ${total} connections in ${(c.elapsedMs / 1000).toFixed(1)} s; settled in ${(waited / 1000).toFixed(1)} s`,
    );
    const warm = nextPhase++;
    await pool.phase(warm, f.rates[0]!, 1000); // warm-up, not reported
    await pool.drain([warm], 0, 500, 3000);
    await settle(quiet);
    const run = await steps(
      pool,
      nodes,
      redis,
      f.rates.map((rate) => ({ rate, durationMs: f.stepMs })),
      label,
      ctx.retries,
    );
    const out = await conclude(pool, run, label, problems);
    if (pool.lost() > 0) problems.push(`${label}: ${pool.lost()} connections closed by the server`);
    if (pool.gapped() > 0)
      problems.push(`${label}: the server announced gaps over ${pool.gapped()} messages`);
    return { steps: out, problems };
  } finally {
    await stopAll([], pool);
  }
}

async function onePhase(
  ctx: Ctx,
  system: System,
  kind: 'rooms' | 'dm',
  nodes: NodeProc[],
  redis: ServerProc | undefined,
  total: number,
  roomSize: number,
  rate: number,
  durationMs: number,
  label: string,
  encoding: Encoding = 'json',
) {
  const pool = GeneratorPool.start({ script: GENERATOR, count: ctx.generators, cpus: ctx.generatorCpus });
  live.add(pool);
  const problems: string[] = [];
  try {
    await pool.init(
      layoutFor(
        ctx,
        system,
        kind,
        nodes.map((n) => n.clientUrl),
        total,
        roomSize,
        encoding,
      ),
    );
    const c = await pool.connect(0, total, kind === 'rooms');
    if (c.failed > 0)
      problems.push(
        `${label}: ${c.failed} of ${total} connections failed to connect or join: ${c.errors.join('; ')}`,
      );
    const quiet = [...nodes, ...(redis ? [redis] : [])].map((p) => p.pid).concat(pool.pids());
    const waited = await settle(quiet);
    log(
      `${label}: ${total} connections in ${(c.elapsedMs / 1000).toFixed(1)} s; settled in ${(waited / 1000).toFixed(1)} s`,
    );
    const run = await steps(pool, nodes, redis, [{ rate, durationMs }], label, ctx.retries);
    const [s] = await conclude(pool, run, label, problems);
    if (pool.lost() > 0) problems.push(`${label}: ${pool.lost()} connections closed by the server`);
    if (pool.gapped() > 0)
      problems.push(`${label}: the server announced gaps over ${pool.gapped()} messages`);
    return { summary: s, problems };
  } finally {
    await stopAll([], pool);
  }
}

/** Connections of the connect storm: the plan's, capped so that one node can hold them all after a reconnect storm. */
function stormSize(ctx: Ctx): number {
  return Math.min(ctx.plan.connect.connections, ctx.perProcessCap);
}

/**
 * Connect + join storm: `stormSize` connections over both nodes, each joining one of the plan's rooms right after its
 * welcome; then, with `storm` in the scenarios, the reconnect storm on the same connections.
 */
async function storms(
  ctx: Ctx,
  system: System,
  nodes: NodeProc[],
  redis: ServerProc,
  label: string,
  result: SystemResult,
) {
  const total = stormSize(ctx);
  const rooms = ctx.plan.connect.rooms;
  const pool = GeneratorPool.start({ script: GENERATOR, count: ctx.generators, cpus: ctx.generatorCpus });
  live.add(pool);
  const problems = result.problems;
  try {
    const urls = nodes.map((n) => n.clientUrl);
    await pool.init({
      ...layoutFor(ctx, system, 'rooms', urls, total, Math.ceil(total / rooms)),
      userPrefix: 'storm-u',
      roomPrefix: 'storm-r',
    });
    const meter = await cpuMeter([...nodes, redis]);
    const c = await pool.connect(0, total, true);
    const used = await meter.stop();
    if (c.failed > 0)
      problems.push(
        `connect storm: ${c.failed} of ${total} connections failed to connect or join: ${c.errors.join('; ')}`,
      );
    const storm: ConnectStorm = {
      connections: total,
      rooms,
      failed: c.failed,
      rate: c.connected / (c.elapsedMs / 1000),
      joinP99Ms: Histogram.from(c.joinLatency).quantile(0.99) / 1000,
      seconds: used.seconds,
      serverCpuMsPerConnection: ((used.cpu[0]! + used.cpu[1]!) * 1000) / Math.max(1, c.connected),
      redisCpuMsPerConnection: (used.cpu[2]! * 1000) / Math.max(1, c.connected),
    };
    result.connect = storm;
    log(
      `${label} connect storm: ${c.connected} joined in ${(c.elapsedMs / 1000).toFixed(1)} s (${num(storm.rate)}/s), ` +
        `join p99 ${storm.joinP99Ms.toFixed(0)} ms, quiet after ${used.seconds.toFixed(1)} s; server CPU ` +
        `${storm.serverCpuMsPerConnection.toFixed(3)} ms/conn, Redis ${storm.redisCpuMsPerConnection.toFixed(3)} ms/conn`,
    );
    if (ctx.scenarios.has('storm'))
      result.reconnect = await reconnectStorm(ctx, system, pool, nodes, redis, label, problems);
    if (pool.lost() > 0) problems.push(`storms: ${pool.lost()} connections closed by the server`);
    if (pool.gapped() > 0) problems.push(`storms: the server announced gaps over ${pool.gapped()} messages`);
  } finally {
    await stopAll([], pool);
  }
}

/**
 * Reconnect storm: SIGKILLs the second node while the first node's clients publish a little into the rooms; the
 * killed node's clients reconnect to the first node and rejoin their rooms (relaychat: from the offset they had, so
 * what was published meanwhile is replayed). Leaves one node running: run it last.
 */
async function reconnectStorm(
  ctx: Ctx,
  system: System,
  pool: GeneratorPool,
  nodes: NodeProc[],
  redis: ServerProc,
  label: string,
  problems: string[],
): Promise<ReconnectStorm> {
  const [survivor, victim] = nodes as [NodeProc, NodeProc];
  const { ratePerSec, durationMs } = ctx.plan.storm;
  await pool.arm(victim.clientUrl);
  const meter = await cpuMeter([survivor, redis]);
  const k = nextPhase++;
  const sending = pool.phase(k, ratePerSec, durationMs);
  const t0 = performance.now();
  await victim.kill();
  const back = await pool.reconnect(survivor.clientUrl);
  const seconds = (performance.now() - t0) / 1000;
  const sent = await sending;
  await pool.drain([k], sent.expected, 2000, 20000);
  const used = await meter.stop();
  const traffic = summarise(
    (await pool.collect([k])).get(k)!,
    ratePerSec,
    used.seconds,
    used.cpu[0]!,
    used.cpu[1]!,
  );
  const clients = back.connected + back.failed;
  const out: ReconnectStorm = {
    clients,
    failed: back.failed,
    unrecovered: back.unrecovered,
    seconds,
    rejoinP99Ms: Histogram.from(back.joinLatency).quantile(0.99) / 1000,
    survivorCpuMsPerReconnect: (used.cpu[0]! * 1000) / Math.max(1, back.connected),
    traffic,
  };
  log(
    `${label} reconnect storm: ${back.connected} of ${clients} back in ${seconds.toFixed(1)} s, ` +
      `survivor CPU ${out.survivorCpuMsPerReconnect.toFixed(3)} ms/reconnect; traffic: ${traffic.published} published, ` +
      `${traffic.lost} lost, ${traffic.duplicates} duplicates, ${traffic.publishErrors} refused` +
      (system === 'relay' ? `, ${back.unrecovered} not recovered` : ''),
  );
  if (back.failed > 0)
    problems.push(
      `reconnect storm: ${back.failed} of ${clients} clients did not get back: ${back.errors.join('; ')}`,
    );
  if (back.unrecovered > 0) problems.push(`reconnect storm: ${back.unrecovered} resumed joins not recovered`);
  if (traffic.duplicates > 0) problems.push(`reconnect storm: ${traffic.duplicates} duplicate deliveries`);
  // Only relaychat recovers: the others' clients miss what was published while they were away, by design.
  if (system === 'relay' && traffic.lost > 0)
    problems.push(`reconnect storm: ${traffic.lost} of ${traffic.expected} deliveries never arrived`);
  return out;
}

async function runSystem(ctx: Ctx, system: System): Promise<SystemResult> {
  const label = { relay: 'relaychat', socketio: 'Socket.IO', floor: 'floor' }[system];
  const result: SystemResult = {
    system,
    label: {
      relay: 'relaychat (2 nodes)',
      socketio: 'Socket.IO 4.8 + redis-adapter (2 nodes)',
      floor: 'floor (2 nodes)',
    }[system],
    idle: [],
    fanout: [],
    problems: [],
  };
  log(`${label}: starting Redis and two nodes`);
  const { redis, nodes } = await startServers(ctx, system, true, 2);
  const procs: ServerProc[] = [...nodes, ...(redis ? [redis] : [])];
  try {
    if (ctx.scenarios.has('idle')) {
      const pool = GeneratorPool.start({ script: GENERATOR, count: ctx.generators, cpus: ctx.generatorCpus });
      live.add(pool);
      try {
        result.idle = await idle(ctx, system, nodes[0]!, pool, result.problems);
        result.idleSlope = idleSlope(result.idle);
        if (pool.lost() > 0) result.problems.push(`idle: ${pool.lost()} connections closed by the server`);
      } finally {
        await stopAll([], pool);
      }
    }

    if (ctx.scenarios.has('fanout')) {
      const f = await fanout(ctx, system, nodes, redis, `${label} fanout`);
      result.fanout = f.steps;
      result.fanoutBest = [...f.steps].reverse().find(sustained);
      result.problems.push(...f.problems);
    }

    const chat = ctx.plan.chat;
    if (ctx.scenarios.has('chat')) {
      const chatTotal = chat.rooms * chat.size;
      const c = await onePhase(
        ctx,
        system,
        'rooms',
        nodes,
        redis,
        chatTotal,
        chat.size,
        chatTotal / (chat.intervalMs / 1000),
        chat.durationMs,
        `${label} chat`,
      );
      result.chat = c.summary;
      result.problems.push(...c.problems);
    }

    // The same fanout and chat with MessagePack clients, for bytes on the wire and CPU per delivery side by side.
    if (system === 'relay' && ctx.scenarios.has('fanout')) {
      const f = await fanout(ctx, system, nodes, redis, `${label} fanout msgpack`, 'msgpack');
      result.msgpack = { fanout: f.steps, fanoutBest: [...f.steps].reverse().find(sustained) };
      result.problems.push(...f.problems);
    }
    if (system === 'relay' && ctx.scenarios.has('chat')) {
      const chatTotal = chat.rooms * chat.size;
      const c = await onePhase(
        ctx,
        system,
        'rooms',
        nodes,
        redis,
        chatTotal,
        chat.size,
        chatTotal / (chat.intervalMs / 1000),
        chat.durationMs,
        `${label} chat msgpack`,
        'msgpack',
      );
      result.msgpack = { fanout: [], ...result.msgpack, chat: c.summary };
      result.problems.push(...c.problems);
    }

    const dm = ctx.plan.dm;
    if (ctx.scenarios.has('dm')) {
      const d = await onePhase(
        ctx,
        system,
        'dm',
        nodes,
        redis,
        dm.pairs * 2,
        1,
        dm.ratePerSec,
        dm.durationMs,
        `${label} dm`,
      );
      result.dm = d.summary;
      result.problems.push(...d.problems);
    }

    // Last: the reconnect storm kills a node.
    if (ctx.scenarios.has('connect') || ctx.scenarios.has('storm'))
      await storms(ctx, system, nodes, redis!, label, result);
  } catch (e) {
    result.problems.push(`${label}: ${(e as Error).message}`);
  } finally {
    for (const p of procs) if (p.crashed) result.problems.push(`crash: ${p.crashed}`);
    await stopAll(procs);
  }
  return result;
}

async function references(ctx: Ctx, out: BenchResult) {
  // redis-benchmark 7.0 has no `-t publish` test: run PUBLISH as an explicit command, without and with pipelining.
  log('reference: redis-benchmark PUBLISH');
  const redis = await startRedis(ctx.generatorCpus);
  live.add(redis);
  try {
    const opsPerSec = async (pipeline: number) => {
      const args = [
        '-p',
        String(redis.port),
        '-n',
        String(ctx.plan.redisBenchmarkRequests),
        '-P',
        String(pipeline),
      ];
      const text = await run(
        'redis-benchmark',
        [...args, '-q', 'publish', 'bench', 'x'.repeat(200)],
        ctx.serverCpus,
      );
      const m = text ? /publish bench x+: ([\d.]+) requests per second/.exec(text) : null;
      return m ? Number(m[1]) : undefined;
    };
    out.references.redisPublishOpsPerSec = await opsPerSec(1);
    out.references.redisPublishPipelinedOpsPerSec = await opsPerSec(16);
    if (out.references.redisPublishOpsPerSec === undefined)
      out.notes.push('redis-benchmark was not available or printed nothing usable; no PUBLISH reference.');
  } finally {
    await stopAll([redis]);
  }

  log('reference: one gateway node, memory engine, local fanout');
  const { nodes } = await startServers(ctx, 'relay', false, 1);
  try {
    const f = await fanout(ctx, 'relay', nodes, undefined, 'local fanout');
    out.references.localFanout = f.steps;
    out.references.localFanoutBest = [...f.steps].reverse().find(sustained);
    for (const p of f.problems) out.notes.push(`local fanout reference: ${p}`);
  } finally {
    for (const n of nodes) if (n.crashed) out.notes.push(`local fanout reference: crash: ${n.crashed}`);
    await stopAll(nodes);
  }
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      pin: { type: 'boolean', default: false },
      'server-cpus': { type: 'string', default: '0' },
      'generator-cpus': { type: 'string', default: '1' },
      generators: { type: 'string', default: '2' },
      addresses: { type: 'string', default: '4' },
      only: { type: 'string' },
      'no-reference': { type: 'boolean', default: false },
      out: { type: 'string', default: 'bench-results' },
      docs: { type: 'boolean', default: false },
      'wait-quiet': { type: 'string' },
      retries: { type: 'string' },
      scenarios: { type: 'string', default: 'idle,fanout,chat,dm,connect,storm' },
      connections: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const base = values.quick ? QUICK : FULL;
  const plan: Plan =
    values.connections === undefined
      ? base
      : { ...base, connect: { ...base.connect, connections: Math.max(2, Number(values.connections)) } };
  const all: System[] = ['relay', 'socketio', 'floor'];
  if (values.only !== undefined && !all.includes(values.only as System)) {
    console.error(`bench: --only takes one of ${all.join(', ')}`);
    return 2;
  }
  const systems: System[] = values.only ? [values.only as System] : all;
  if (systems.includes('relay') && !existsSync(GATEWAY)) {
    console.error(`bench: ${GATEWAY} not found; run \`npm run build\` first (npm run bench does).`);
    return 1;
  }
  const noFile = noFileLimit();
  const addresses = Array.from(
    { length: Math.max(1, Number(values.addresses)) },
    (_, i) => `127.0.0.${i + 2}`,
  );
  const ctx: Ctx = {
    plan,
    generators: Math.max(1, Number(values.generators)),
    addresses,
    serverCpus: values.pin ? values['server-cpus'] : undefined,
    generatorCpus: values.pin ? values['generator-cpus'] : undefined,
    perProcessCap: noFile - 500,
    retries: Number(values.retries ?? (values.quick ? 0 : 2)),
    scenarios: new Set(values.scenarios.split(',').map((x) => x.trim())),
  };
  const result: BenchResult = {
    startedAt: new Date().toISOString(),
    commit: (await run('git', ['describe', '--always', '--dirty']))?.trim(),
    quick: values.quick,
    pinned: values.pin ? { servers: values['server-cpus'], generators: values['generator-cpus'] } : undefined,
    machine: {
      cpus: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      memGiB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      kernel: release(),
      noFile,
    },
    config: { ...plan, generators: ctx.generators, addresses },
    notes: [],
    systems: [],
    references: { localFanout: [] },
  };
  const skipped = plan.idleLevels.filter((l) => l > ctx.perProcessCap);
  if (skipped.length > 0) {
    const msg =
      `idle levels ${skipped.map((l) => num(l)).join(', ')} capped at ${num(ctx.perProcessCap)} connections: ` +
      `\`ulimit -n\` is ${noFile} here and one process (server node or generator) needs one descriptor per ` +
      'connection. Raise it (ulimit -n 1048576; the hard limit needs root or /etc/security/limits.conf).';
    log(msg);
    result.notes.push(msg);
  }
  if (ctx.scenarios.has('connect') || ctx.scenarios.has('storm')) {
    if (stormSize(ctx) < plan.connect.connections) {
      const msg =
        `connect storm capped at ${num(stormSize(ctx))} connections (of ${num(plan.connect.connections)}): after the ` +
        `reconnect storm one node holds them all, and \`ulimit -n\` is ${noFile} here.`;
      log(msg);
      result.notes.push(msg);
    }
  }
  const needed = Math.max(plan.chat.rooms * plan.chat.size, plan.fanout.rooms * plan.fanout.subscribers);
  if (needed / ctx.generators > ctx.perProcessCap || needed / 2 > ctx.perProcessCap) {
    console.error(`bench: ${needed} connections exceed what ulimit -n ${noFile} allows; raise it.`);
    return 1;
  }
  const quietMs = Number(values['wait-quiet'] ?? (values.quick ? 0 : 600)) * 1000;
  if (quietMs > 0) {
    const busy = await waitQuiet(quietMs);
    result.notes.push(`other work on the machine when the run started: ${busy.toFixed(2)} cores busy`);
  }
  if (values.pin)
    log(`pinned: server nodes on CPU ${ctx.serverCpus}, generators and Redis on CPU ${ctx.generatorCpus}`);

  for (const system of systems) result.systems.push(await runSystem(ctx, system));
  if (!values['no-reference'] && ctx.scenarios.has('fanout')) {
    try {
      await references(ctx, result);
    } catch (e) {
      result.notes.push(`references failed: ${(e as Error).message}`);
    }
  }

  const rows = tableRows(result);
  console.log(`\n${textTable(rows)}\n`);
  const encRows = encodingRows(result);
  if (encRows.length > 0) console.log(`relaychat by wire encoding:\n${textTable(encRows)}\n`);
  for (const n of result.notes) console.log(`note: ${n}`);
  const problems = result.systems.flatMap((s) => s.problems.map((p) => `${s.label}: ${p}`));
  for (const p of problems) console.log(`PROBLEM: ${p}`);

  const dir = resolve(values.out);
  mkdirSync(dir, { recursive: true });
  const stamp = result.startedAt.replace(/[:.]/g, '-');
  const json = JSON.stringify(result, null, 2);
  writeFileSync(join(dir, `bench-${stamp}.json`), json);
  writeFileSync(join(dir, 'latest.json'), json);
  writeFileSync(
    join(dir, 'latest.md'),
    `${markdownTable(rows)}\n` + (encRows.length > 0 ? `\n${markdownTable(encRows)}\n` : ''),
  );
  writeFileSync(join(dir, 'latency.svg'), latencyChart(result));
  writeFileSync(join(dir, 'memory.svg'), memoryChart(result));
  if (values.docs) {
    writeFileSync(resolve('docs/bench-latency.svg'), latencyChart(result));
    writeFileSync(resolve('docs/bench-memory.svg'), memoryChart(result));
  }
  log(
    `results in ${dir}/latest.{json,md}, charts ${dir}/{latency,memory}.svg${values.docs ? ' and docs/' : ''}`,
  );
  return problems.length > 0 ? 1 : 0;
}

async function cleanup() {
  await Promise.all([...live].map((p) => p.stop().catch(() => {})));
}

for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: stopping everything`);
    void cleanup().then(() => process.exit(130));
  });
}

// A hung run is a broken run: give up well after the expected duration (quick: about two and a half minutes).
const watchdog = setTimeout(
  () => {
    log('the run did not finish in time: stopping everything');
    void cleanup().then(() => process.exit(1));
  },
  process.argv.includes('--quick') ? 300_000 : 3_600_000,
);
watchdog.unref();

main().then(
  async (code) => {
    await cleanup();
    process.exit(code);
  },
  async (e: Error) => {
    console.error(`bench: ${e.stack ?? e.message}`);
    await cleanup();
    process.exit(1);
  },
);
