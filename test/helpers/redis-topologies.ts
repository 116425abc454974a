// Real multi-process Redis topologies for tests: a Redis Cluster (primaries with replicas, formed by
// `redis-cli --cluster create`) and a Sentinel setup (a primary, replicas and redis-server --sentinel processes).
// Every process runs in the foreground as a child of the test process; the test kills exactly these, and any
// left over are SIGKILLed when the test process exits. Nothing is written to disk but config files in a temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, requireTool, until } from './harness';

const owned = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of owned) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
});

/** Runs redis-cli with args; resolves with its trimmed stdout, rejects on a non-zero exit. */
export function redisCli(port: number, ...args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    // 'close', not 'exit': stdout may still hold unread output when the process exits.
    c.on('close', (code) =>
      code === 0 ? resolve(out.trim()) : reject(new Error(`redis-cli ${args.join(' ')}: ${code} ${err}`)),
    );
  });
}

/** A field of an INFO-style "name:value" text. */
export function infoField(text: string, name: string): string | undefined {
  const m = new RegExp(`^${name}:(.*)$`, 'm').exec(text);
  return m?.[1]?.trim();
}

export interface RedisNode {
  port: number;
  /** "127.0.0.1:<port>" */
  addr: string;
  pid: number;
  running: boolean;
  cli(...args: string[]): Promise<string>;
  /** SIGKILL and wait for the exit. */
  kill(): Promise<void>;
  /** SIGSTOP / SIGCONT. */
  pause(): void;
  resume(): void;
  /** Starts the process again with the same arguments (a cluster node keeps its identity: its nodes.conf). */
  restart(): Promise<void>;
}

async function launch(args: string[], readyLine: string, what: string): Promise<ChildProcess> {
  const proc = spawn('redis-server', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  owned.add(proc);
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  proc.stderr!.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  proc.on('exit', () => owned.delete(proc));
  await until(`${what} to start`, () => proc.exitCode !== null || out.includes(readyLine), 15_000, 10);
  if (proc.exitCode !== null) {
    if (out.includes('Address already in use')) throw new PortTaken(`${what}: ${out}`);
    throw new Error(`${what} exited ${proc.exitCode}: ${out}`);
  }
  return proc;
}

/** The port chosen by freePort() was taken by another test process before redis-server bound it. */
class PortTaken extends Error {}

/** Runs `start` with fresh ports until none of them was taken meanwhile (at most 5 tries). */
async function withFreePorts<T>(start: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (!(err instanceof PortTaken) || attempt >= 5) throw err;
    }
  }
}

async function startNode(args: string[], readyLine: string, what: string, port: number): Promise<RedisNode> {
  let proc = await launch(args, readyLine, what);
  const exited = () => proc.exitCode !== null || proc.signalCode !== null;
  const n: RedisNode = {
    port,
    addr: `127.0.0.1:${port}`,
    get pid() {
      return proc.pid!;
    },
    get running() {
      return !exited();
    },
    cli: (...a) => redisCli(port, ...a),
    kill: async () => {
      if (exited()) return;
      proc.kill('SIGCONT');
      proc.kill('SIGKILL');
      await once(proc, 'exit');
    },
    pause: () => proc.kill('SIGSTOP'),
    resume: () => proc.kill('SIGCONT'),
    restart: async () => {
      await n.kill();
      proc = await launch(args, readyLine, what);
    },
  };
  return n;
}

const BASE = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'];

// ---------------------------------------------------------------------------------------------------------------
// Redis Cluster

export interface ClusterNodeInfo {
  id: string;
  addr: string;
  role: 'master' | 'slave';
  masterId?: string;
  failed: boolean;
  slots: [number, number][];
}

export interface RedisClusterProc {
  nodes: RedisNode[];
  /** "host:port,host:port,..." of every node, for REDIS_CLUSTER_NODES. */
  seeds: string;
  /** CLUSTER NODES as seen by a running node. */
  topology(): Promise<ClusterNodeInfo[]>;
  /** The running node that is primary for the hash slot of `key`. */
  primaryOf(key: string): Promise<RedisNode>;
  /** Running primaries. */
  primaries(): Promise<RedisNode[]>;
  /** A live replica of the given primary. */
  replicaOf(primary: RedisNode): Promise<RedisNode>;
  /** Moves a hash slot, keys and all (MIGRATE), to another primary, as `redis-cli --cluster reshard` does. */
  migrateSlot(slot: number, to: RedisNode): Promise<void>;
  /** Resolves once every running node reports cluster_state:ok and agrees on who owns every slot. */
  waitHealthy(timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export function parseClusterNodes(text: string): ClusterNodeInfo[] {
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((line) => {
      const [id, addr, flags, master, , , , , ...slots] = line.trim().split(' ');
      const f = flags!.split(',');
      return {
        id: id!,
        addr: addr!.split('@')[0]!,
        role: f.includes('master') ? 'master' : 'slave',
        masterId: master === '-' ? undefined : master,
        failed: f.includes('fail') || f.includes('fail?'),
        slots: slots
          .filter((s) => !s.startsWith('['))
          .map((s) => {
            const [a, b] = s.split('-');
            return [Number(a), Number(b ?? a)] as [number, number];
          }),
      };
    });
}

export async function startCluster(
  opts: { primaries?: number; replicas?: number; nodeTimeoutMs?: number } = {},
): Promise<RedisClusterProc> {
  requireTool('redis-server', 'install Redis 7 (Debian: apt-get install redis-server redis-tools)');
  const primaries = opts.primaries ?? 3;
  const replicas = opts.replicas ?? 1;
  const total = primaries * (1 + replicas);
  const dir = mkdtempSync(join(tmpdir(), 'rc-cluster-'));
  const nodes = await Promise.all(
    Array.from({ length: total }, (_, i) =>
      withFreePorts(async () => {
        const port = await freePort();
        const busPort = await freePort();
        return startNode(
          [
            '--port',
            String(port),
            ...BASE,
            '--dir',
            dir,
            '--cluster-enabled',
            'yes',
            '--cluster-port',
            String(busPort),
            '--cluster-config-file',
            join(dir, `nodes-${i}.conf`),
            '--cluster-node-timeout',
            String(opts.nodeTimeoutMs ?? 1000),
            // A replica may fail over however long it was cut off: the tests kill primaries on purpose.
            '--cluster-replica-validity-factor',
            '0',
          ],
          'Ready to accept connections',
          `cluster node ${port}`,
          port,
        );
      }),
    ),
  );
  const addrs = nodes.map((n) => n.addr);
  await new Promise<void>((resolve, reject) => {
    const c = spawn(
      'redis-cli',
      ['--cluster', 'create', ...addrs, '--cluster-replicas', String(replicas), '--cluster-yes'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`cluster create: ${code} ${out}`))));
  });

  const running = () => nodes.filter((n) => n.running);
  const topology = async () => parseClusterNodes(await running()[0]!.cli('CLUSTER', 'NODES'));
  const byAddr = (addr: string) => nodes.find((n) => n.addr === addr)!;

  const cluster: RedisClusterProc = {
    nodes,
    seeds: addrs.join(','),
    topology,
    primaries: async () =>
      (await topology())
        .filter((n) => n.role === 'master' && !n.failed && n.slots.length > 0)
        .map((n) => byAddr(n.addr))
        .filter((n) => n.running),
    primaryOf: async (key: string) => {
      const slot = Number(await running()[0]!.cli('CLUSTER', 'KEYSLOT', key));
      const owner = (await topology()).find(
        (n) => n.role === 'master' && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b),
      );
      if (!owner) throw new Error(`no primary for slot ${slot}`);
      return byAddr(owner.addr);
    },
    replicaOf: async (primary: RedisNode) => {
      const topo = await topology();
      const p = topo.find((n) => n.addr === primary.addr)!;
      const r = topo.find((n) => n.masterId === p.id && !n.failed && byAddr(n.addr).running);
      if (!r) throw new Error(`no live replica of ${primary.addr}`);
      return byAddr(r.addr);
    },
    migrateSlot: async (slot: number, to: RedisNode) => {
      const topo = await topology();
      const fromInfo = topo.find(
        (n) => n.role === 'master' && !n.failed && n.slots.some(([a, b]) => slot >= a && slot <= b),
      )!;
      const toInfo = topo.find((n) => n.addr === to.addr)!;
      const from = byAddr(fromInfo.addr);
      await to.cli('CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromInfo.id);
      await from.cli('CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toInfo.id);
      for (;;) {
        const keys = (await from.cli('CLUSTER', 'GETKEYSINSLOT', String(slot), '100'))
          .split('\n')
          .filter(Boolean);
        if (keys.length === 0) break;
        await from.cli('MIGRATE', '127.0.0.1', String(to.port), '', '0', '5000', 'KEYS', ...keys);
      }
      // The new owner first, then the old one, then the rest (the order redis-cli uses).
      const others = topo.filter((t) => t.role === 'master' && !t.failed && t !== toInfo && t !== fromInfo);
      for (const n of [toInfo, fromInfo, ...others])
        await byAddr(n.addr).cli('CLUSTER', 'SETSLOT', String(slot), 'NODE', toInfo.id);
    },
    waitHealthy: async (timeoutMs = 20_000) => {
      await until(
        'cluster healthy',
        async () => {
          const live = running();
          const views = await Promise.all(
            live.map(async (n) => ({
              info: await n.cli('CLUSTER', 'INFO'),
              nodes: parseClusterNodes(await n.cli('CLUSTER', 'NODES')),
              repl: await n.cli('INFO', 'replication'),
            })),
          );
          const owners = (v: (typeof views)[number]) =>
            JSON.stringify(
              v.nodes
                .filter((n) => n.role === 'master' && n.slots.length > 0 && !n.failed)
                .map((n) => `${n.addr}=${JSON.stringify(n.slots)}`)
                .sort(),
            );
          const first = owners(views[0]!);
          return views.every(
            (v) =>
              infoField(v.info, 'cluster_state') === 'ok' &&
              infoField(v.info, 'cluster_slots_ok') === '16384' &&
              owners(v) === first &&
              (infoField(v.repl, 'role') === 'master' || infoField(v.repl, 'master_link_status') === 'up'),
          );
        },
        timeoutMs,
        100,
      );
    },
    stop: async () => {
      await Promise.all(nodes.map((n) => n.kill()));
    },
  };
  await cluster.waitHealthy();
  return cluster;
}

// ---------------------------------------------------------------------------------------------------------------
// Sentinel

export interface SentinelProc {
  name: string;
  /** The data nodes: [0] starts as the primary, the rest as its replicas. */
  data: RedisNode[];
  sentinels: RedisNode[];
  /** "host:port,..." of the sentinels, for REDIS_SENTINELS. */
  seeds: string;
  /** The data node the sentinels name as primary now. */
  primary(): Promise<RedisNode>;
  /** Resolves once every sentinel names `expected` (or any one) primary, knows the replicas and each other. */
  waitSettled(expected?: RedisNode, timeoutMs?: number): Promise<RedisNode>;
  stop(): Promise<void>;
}

export async function startSentinel(
  opts: { replicas?: number; sentinels?: number; name?: string; downAfterMs?: number } = {},
): Promise<SentinelProc> {
  requireTool('redis-server', 'install Redis 7 (Debian: apt-get install redis-server redis-tools)');
  const name = opts.name ?? 'rcmaster';
  const dir = mkdtempSync(join(tmpdir(), 'rc-sentinel-'));
  const primaryPort = await freePort();
  const primary = await startNode(
    ['--port', String(primaryPort), ...BASE, '--dir', dir],
    'Ready to accept connections',
    `primary ${primaryPort}`,
    primaryPort,
  );
  const replicas = await Promise.all(
    Array.from({ length: opts.replicas ?? 1 }, async () => {
      const port = await freePort();
      return startNode(
        ['--port', String(port), ...BASE, '--dir', dir, '--replicaof', '127.0.0.1', String(primaryPort)],
        'Ready to accept connections',
        `replica ${port}`,
        port,
      );
    }),
  );
  const data = [primary, ...replicas];
  await until(
    'replicas in sync',
    async () => {
      for (const r of replicas)
        if (infoField(await r.cli('INFO', 'replication'), 'master_link_status') !== 'up') return false;
      return true;
    },
    15_000,
    50,
  );
  const count = opts.sentinels ?? 3;
  const quorum = Math.floor(count / 2) + 1;
  const sentinels = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const port = await freePort();
      const conf = join(dir, `sentinel-${i}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${name} 127.0.0.1 ${primaryPort} ${quorum}`,
          `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${name} 10000`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      return startNode([conf, '--sentinel'], '+monitor master', `sentinel ${port}`, port);
    }),
  );
  const byPort = (port: number) => data.find((n) => n.port === port)!;

  const setup: SentinelProc = {
    name,
    data,
    sentinels,
    seeds: sentinels.map((s) => s.addr).join(','),
    primary: async () => {
      const live = sentinels.find((s) => s.running)!;
      const [, port] = (await live.cli('SENTINEL', 'get-master-addr-by-name', name)).split('\n');
      return byPort(Number(port));
    },
    waitSettled: async (expected, timeoutMs = 20_000) => {
      let found: RedisNode | undefined;
      await until(
        'sentinels settled',
        async () => {
          const live = sentinels.filter((s) => s.running);
          const ports = new Set<string>();
          for (const s of live) {
            ports.add((await s.cli('SENTINEL', 'get-master-addr-by-name', name)).split('\n')[1]!);
            const peers = (await s.cli('SENTINEL', 'sentinels', name)).split('\n').filter((l) => l === 'ip');
            if (peers.length < count - 1) return false;
          }
          if (ports.size !== 1) return false;
          found = byPort(Number([...ports][0]));
          if (expected && found !== expected) return false;
          if (!found.running) return false;
          const repl = await found.cli('INFO', 'replication');
          if (infoField(repl, 'role') !== 'master') return false;
          const liveReplicas = data.filter((n) => n !== found && n.running).length;
          return Number(infoField(repl, 'connected_slaves')) >= liveReplicas;
        },
        timeoutMs,
        100,
      );
      return found!;
    },
    stop: async () => {
      await Promise.all([...sentinels, ...data].map((n) => n.kill()));
    },
  };
  await setup.waitSettled(primary);
  return setup;
}
