// Per-shard Redis figures for docs/SCALING.md, measured with redis-benchmark against servers this script starts
// (a single redis-server and a 3-primary Redis Cluster, no persistence) and kills. Not a test: run it with
//   npx esbuild test/cluster/bench-redis.ts --bundle --platform=node --format=esm --packages=external \
//     --outfile=.tmp/bench/redis.mjs && node .tmp/bench/redis.mjs
// Every figure is requests per second from one redis-benchmark run (50 clients, pipeline 16), with `subs`
// subscriber connections on the channel reading every message.
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { APPEND, CONNECTIONS, PRESENCE } from '../../services/gateway/src/engine/scripts';
import { startCluster, startSentinel, type RedisNode } from '../helpers/redis-topologies';

const N = Number(process.env.BENCH_N ?? 200_000);
const PAYLOAD = `e|42|f3a9c1|1767225600000||${JSON.stringify({
  type: 'message',
  room: 'bench',
  offset: 42,
  epoch: 'f3a9c1',
  id: 'lq2x7a-1',
  from: 'alice',
  ts: 1767225600000,
  body: { text: 'x'.repeat(160) },
})}`;

function benchmark(port: number, args: string[], extra: string[] = []): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = spawn(
      'redis-benchmark',
      [
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        '-c',
        '50',
        '-n',
        String(N),
        '-P',
        '16',
        '--csv',
        ...extra,
        ...args,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) => {
      // The test name column holds the command with its JSON payload: count columns from the end.
      const row = out
        .split('\n')
        .map((l) => l.split('","'))
        .find((cols) => cols.length >= 8 && !cols[0]!.startsWith('"test'));
      if (code !== 0 || !row) return reject(new Error(`redis-benchmark ${args[0]}: ${code} ${out}`));
      resolve(Number(row[row.length - 7]!.replace(/"/g, '')));
    });
  });
}

/** `count` connections subscribed (or s-subscribed) to channel, counting what they receive. */
async function subscribers(port: number, channel: string, count: number, sharded: boolean) {
  const subs = await Promise.all(
    Array.from({ length: count }, async () => {
      const r = new Redis({ port, host: '127.0.0.1' });
      if (sharded) await r.ssubscribe(channel);
      else await r.subscribe(channel);
      return r;
    }),
  );
  let received = 0;
  for (const s of subs) s.on(sharded ? 'smessageBuffer' : 'messageBuffer', () => received++);
  return {
    received: () => received,
    close: () => Promise.all(subs.map((s) => s.quit())),
  };
}

/** Benchmarks measure the server, not a slow reader: no output-buffer disconnects for subscribers. */
async function unlimited(node: RedisNode) {
  await node.cli('CONFIG', 'SET', 'client-output-buffer-limit', 'pubsub 0 0 0');
}

async function row(
  what: string,
  node: RedisNode,
  channel: string,
  subs: number,
  sharded: boolean,
  cmd: string[],
) {
  const s = await subscribers(node.port, channel, subs, sharded);
  const rps = await benchmark(node.port, cmd);
  // Let the subscribers drain what the server already sent them.
  for (let last = -1; s.received() !== last;) {
    last = s.received();
    await new Promise((r) => setTimeout(r, 500));
  }
  const got = s.received();
  await s.close();
  const line = { what, subs, rps: Math.round(rps), deliveriesPerS: Math.round(rps * subs), received: got };
  console.log(JSON.stringify(line));
  return line;
}

async function main() {
  const results: unknown[] = [];
  // A single Redis (a primary with one replica attached, as in Sentinel mode; the sentinel itself is idle).
  const single = await startSentinel({ replicas: 1, sentinels: 1 });
  const primary = single.data[0]!;
  await unlimited(primary);
  const ch = 'rc:{r:bench}';
  for (const subs of [0, 4])
    results.push(await row('PUBLISH (single)', primary, ch, subs, false, ['PUBLISH', ch, PAYLOAD]));
  await single.stop();

  const cluster = await startCluster({ primaries: 3, replicas: 0 });
  const owner = await cluster.primaryOf(ch);
  for (const n of cluster.nodes) await unlimited(n);
  for (const subs of [0, 4])
    results.push(await row('SPUBLISH (one shard)', owner, ch, subs, true, ['SPUBLISH', ch, PAYLOAD]));

  // The append script, as the gateway runs it: store in the room's stream (bounded) and SPUBLISH.
  const loader = new Redis({ port: owner.port, host: '127.0.0.1' });
  const sha = (await loader.script('LOAD', APPEND)) as string;
  await loader.quit();
  const tail = PAYLOAD.slice(PAYLOAD.indexOf('"id"'));
  const appendArgs = [
    'EVALSHA',
    sha,
    '3',
    `${ch}:m`,
    `${ch}:h`,
    `${ch}:d:-:-`,
    'message',
    tail,
    '1767225600000',
    '',
    '1000',
    '86400',
    '300',
    'f3a9c1',
    ch,
    '0',
    'spublish',
    'lq2x7a-1',
    '1',
  ];
  for (const subs of [0, 4])
    results.push(await row('APPEND script (one shard)', owner, ch, subs, true, appendArgs));

  // What joins and connects write (the heartbeat is one ZADD per node, whatever the connection count): 1000
  // users in a room, 1000 connections of a user (__rand_int__ with -r 1000; keys on the owner's slot).
  const loader2 = new Redis({ port: owner.port, host: '127.0.0.1' });
  const presenceSha = (await loader2.script('LOAD', PRESENCE)) as string;
  const connectionsSha = (await loader2.script('LOAD', CONNECTIONS)) as string;
  await loader2.quit();
  for (const [what, args] of [
    [
      'presence add (join, per room and user)',
      [
        'EVALSHA',
        presenceSha,
        '2',
        `${ch}:p`,
        `${ch}:pu`,
        'add',
        'bench',
        'u__rand_int__',
        'gw-1',
        '1',
        ch,
        'spublish',
      ],
    ],
    [
      'connections add (connect, per connection)',
      ['EVALSHA', connectionsSha, '2', `${ch}:c`, `${ch}:s`, 'add', 'gw-1', 'c__rand_int__', '1', '{}'],
    ],
  ] as const) {
    const rps = Math.round(await benchmark(owner.port, [...args], ['-r', '1000']));
    console.log(JSON.stringify({ what, rps }));
    results.push({ what, rps });
  }

  // All three shards at once, each on a channel it owns: what one 2-core machine gives in aggregate.
  const primaries = await cluster.primaries();
  const channels: string[] = [];
  for (const p of primaries)
    for (let i = 0; ; i++) {
      const c = `rc:{r:bench-${i}}`;
      if ((await cluster.primaryOf(c)) === p && !channels.includes(c)) {
        channels.push(c);
        break;
      }
    }
  const all = await Promise.all(
    primaries.map((p, i) => benchmark(p.port, ['SPUBLISH', channels[i]!, PAYLOAD])),
  );
  const aggregate = {
    what: 'SPUBLISH (3 shards at once, 2 cores)',
    perShard: all.map(Math.round),
    total: Math.round(all.reduce((x, y) => x + y, 0)),
  };
  console.log(JSON.stringify(aggregate));
  results.push(aggregate);
  await cluster.stop();
  console.log(JSON.stringify({ payloadBytes: PAYLOAD.length, n: N, results }));
}

void main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(err);
    process.exit(1);
  },
);
