// The shape of a benchmark run's results (written to bench-results/*.json) and the helpers that summarise a phase.
import type { Histogram } from './histogram';
import type { PhaseResult } from './pool';

export interface IdleLevel {
  connections: number;
  failed: number;
  rssBaseBytes: number;
  rssBytes: number;
  /** (rssBytes - rssBaseBytes) / connections. */
  bytesPerConnection: number;
  /** Connections opened per second while reaching this level. */
  connectRate: number;
  connectP99Ms: number;
}

/** Settled RSS between the first and last idle levels on one node: what one more idle connection costs. */
export interface IdleSlope {
  fromConnections: number;
  toConnections: number;
  /** (RSS at the last level - RSS at the first) / (connections between them). */
  bytesPerConnection: number;
  /** RSS at the first level + the slope × the connections from there to 100,000. */
  projected100kBytes: number;
}

/** N connections over both nodes, each joining one of `rooms` rooms right after its welcome. */
export interface ConnectStorm {
  connections: number;
  rooms: number;
  failed: number;
  /** Connections joined per second, from the first attempt to the last join reply. */
  rate: number;
  /** connect call -> join reply, p99. */
  joinP99Ms: number;
  /** From the first attempt until the nodes were quiet again. */
  seconds: number;
  /** Both nodes' CPU over `seconds`, less their idle rate, per connection, ms. */
  serverCpuMsPerConnection: number;
  /** Redis's likewise. */
  redisCpuMsPerConnection: number;
}

/** One node SIGKILLed: its clients reconnect to the other node and rejoin (relaychat: resume) their rooms. */
export interface ReconnectStorm {
  /** Clients of the killed node. */
  clients: number;
  failed: number;
  /** Resumed joins answered `recovered: false` (relaychat). */
  unrecovered: number;
  /** From the SIGKILL until every client was back and had its join reply (relaychat: recovered). */
  seconds: number;
  /** connect call -> join reply of one reconnect, p99. */
  rejoinP99Ms: number;
  /** The surviving node's CPU from the kill until it was quiet again, less its idle rate, per reconnect, ms. */
  survivorCpuMsPerReconnect: number;
  /** Messages published into the rooms from the surviving node's clients while the storm went on. */
  traffic: PhaseSummary;
}

export interface LatencySummary {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface PhaseSummary extends LatencySummary {
  /** Target publish rate, messages/s. */
  rate: number;
  seconds: number;
  published: number;
  publishErrors: number;
  expected: number;
  delivered: number;
  deliveredPerSec: number;
  /** Expected deliveries that never arrived (by the end of the scenario). */
  lost: number;
  duplicates: number;
  /** Server CPU time per delivered message, µs (sum over the server nodes). */
  serverCpuUsPerDelivery: number;
  /** WebSocket payload bytes per delivery as the clients received them (gateway only; 0: not measured). */
  wireBytesPerDelivery: number;
  /** Redis CPU time per acknowledged publish, µs. */
  redisCpuUsPerPublish: number;
  /** Server CPU seconds per wall second (1.0 = one core), sum over the nodes. */
  serverCores: number;
  redisCores: number;
  /** Cores the load generators used. */
  generatorCores?: number;
  /** Cores busy with processes other than this benchmark's (other work on a shared machine). */
  otherCores?: number;
  /** Seconds of the phase (from its first send) whose worst delivery took over 100 ms: [second, worst ms]. */
  slowSeconds: Array<[number, number]>;
}

export interface SystemResult {
  system: 'relay' | 'socketio' | 'floor';
  label: string;
  idle: IdleLevel[];
  idleSlope?: IdleSlope;
  connect?: ConnectStorm;
  reconnect?: ReconnectStorm;
  fanout: PhaseSummary[];
  /** Highest fanout step with p99 < 100 ms and nothing lost. */
  fanoutBest?: PhaseSummary;
  chat?: PhaseSummary;
  dm?: PhaseSummary;
  /** The same fanout and chat workloads with MessagePack clients (relaychat only); the fields above are JSON. */
  msgpack?: { fanout: PhaseSummary[]; fanoutBest?: PhaseSummary; chat?: PhaseSummary };
  /** Crashed processes, connections closed by the server, failed connects: anything that means "broken". */
  problems: string[];
}

export interface References {
  /** redis-benchmark PUBLISH of a 200-byte message, 50 clients, no pipelining. */
  redisPublishOpsPerSec?: number;
  /** The same with 16 commands pipelined per client. */
  redisPublishPipelinedOpsPerSec?: number;
  /** A single gateway node with the in-process memory engine (no Redis), fanout steps. */
  localFanout: PhaseSummary[];
  localFanoutBest?: PhaseSummary;
}

export interface BenchResult {
  startedAt: string;
  /** `git describe --always --dirty` of the tree the run was built from, when known. */
  commit?: string;
  quick: boolean;
  pinned?: { servers: string; generators: string };
  machine: { cpus: string; cores: number; memGiB: number; node: string; kernel: string; noFile: number };
  config: Record<string, unknown>;
  notes: string[];
  systems: SystemResult[];
  references: References;
}

/** The settled-RSS slope between the first and last idle levels; undefined with fewer than two levels. */
export function idleSlope(levels: readonly IdleLevel[]): IdleSlope | undefined {
  const a = levels[0];
  const b = levels[levels.length - 1];
  if (!a || !b || b.connections <= a.connections) return undefined;
  const slope = (b.rssBytes - a.rssBytes) / (b.connections - a.connections);
  return {
    fromConnections: a.connections,
    toConnections: b.connections,
    bytesPerConnection: slope,
    projected100kBytes: a.rssBytes + slope * (100_000 - a.connections),
  };
}

export function latency(h: Histogram): LatencySummary {
  return { p50Ms: h.quantile(0.5) / 1000, p99Ms: h.quantile(0.99) / 1000, maxMs: h.max / 1000 };
}

export function summarise(
  p: PhaseResult,
  rate: number,
  seconds: number,
  serverCpuSeconds: number,
  redisCpuSeconds: number,
): PhaseSummary {
  return {
    rate,
    seconds,
    published: p.published,
    publishErrors: p.publishErrors,
    expected: p.expected,
    delivered: p.delivered,
    deliveredPerSec: p.delivered / seconds,
    lost: Math.max(0, p.expected - p.delivered),
    duplicates: p.duplicates,
    ...latency(p.latency),
    serverCpuUsPerDelivery: p.delivered > 0 ? (serverCpuSeconds * 1e6) / p.delivered : 0,
    wireBytesPerDelivery: p.delivered > 0 ? p.wireBytes / p.delivered : 0,
    redisCpuUsPerPublish: p.published > 0 ? (redisCpuSeconds * 1e6) / p.published : 0,
    serverCores: serverCpuSeconds / seconds,
    redisCores: redisCpuSeconds / seconds,
    slowSeconds: slowSeconds(p.timeline),
  };
}

function slowSeconds(timeline: Map<number, [number, number]>): Array<[number, number]> {
  const secs = [...timeline.keys()].sort((a, b) => a - b);
  const first = secs[0] ?? 0;
  return secs
    .filter((s) => timeline.get(s)![1] > 100_000)
    .map((s) => [s - first, Math.round(timeline.get(s)![1] / 1000)] as [number, number]);
}

/** Sustained: every expected delivery arrived and p99 stayed under 100 ms. */
export function sustained(s: PhaseSummary): boolean {
  return s.expected > 0 && s.lost === 0 && s.publishErrors === 0 && s.p99Ms < 100;
}
