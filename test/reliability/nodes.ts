import { readFileSync } from 'node:fs';
import { freePort, startGateway, type GatewayProc } from '../helpers/harness';

/** Gateway settings for fault tests: limits out of the way of a steady stream, fast drains. */
export function faultEnv(redisUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    REDIS_URL: redisUrl,
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
