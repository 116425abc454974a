import { readFileSync } from 'node:fs';
import { freePort, startGateway, startRedis, type GatewayProc } from '../helpers/harness';
import { startCluster } from '../helpers/redis-topologies';

/** The Redis topologies the fault suite runs on: one Redis, and a real Redis Cluster (sharded pub/sub). */
export const TOPOLOGIES = ['single', 'cluster'] as const;
export type Topology = (typeof TOPOLOGIES)[number];

export interface Backend {
  topology: Topology;
  /** The gateway's Redis settings: REDIS_URL, or REDIS_CLUSTER_NODES. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * A Redis of the given topology, owned by the test. The cluster has three primaries and no replicas: the fault
 * suite kills gateways, not Redis nodes (test/cluster covers those), so replicas would only cost start-up time.
 */
export async function startBackend(topology: Topology): Promise<Backend> {
  if (topology === 'single') {
    const redis = await startRedis();
    return { topology, env: { REDIS_URL: redis.url }, stop: () => redis.stop() };
  }
  const cluster = await startCluster({ primaries: 3, replicas: 0 });
  return { topology, env: { REDIS_CLUSTER_NODES: cluster.seeds }, stop: () => cluster.stop() };
}

/**
 * Gateway settings for fault tests: limits out of the way of a steady stream, fast drains. `redis` is a
 * REDIS_URL or a Backend's env.
 */
export function faultEnv(
  redis: string | Record<string, string>,
  extra: Record<string, string> = {},
): Record<string, string> {
  return {
    ...(typeof redis === 'string' ? { REDIS_URL: redis } : redis),
    CMD_RATE: '100000',
    CMD_BURST: '100000',
    USER_MSG_RATE: '0',
    CONN_RATE_PER_IP: '0',
    SHUTDOWN_GRACE_MS: '3000',
    PRESENCE_TTL_MS: '5000',
    ...extra,
  };
}

/** n gateways on fixed ports (so a restarted node comes back at the same address). */
export async function startNodes(
  n: number,
  env: Record<string, string>,
): Promise<{ nodes: GatewayProc[]; urls: string[] }> {
  const ports = await Promise.all(Array.from({ length: n }, () => freePort()));
  const nodes = await Promise.all(
    ports.map((p, i) => startGateway({ ...env, PORT: String(p), NODE_ID: `node-${i}` })),
  );
  return { nodes, urls: nodes.map((g) => g.wsUrl) };
}

/** Reads a gateway's RSS (kB) from /proc. */
export function rssKb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
}
