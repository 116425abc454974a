// scripts/chat.mjs, the chat CLI of the README's cluster walk-through, run as the README runs it: alice on one
// gateway and bob on another (same Redis), each typing lines on stdin. They follow the README's order and each
// sees the other's messages; bob's DM reaches alice. Bad lines get a usage message and the session goes on; a
// refused token and the end of input end the process with the documented exit codes.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import {
  startGateway,
  startRedis,
  token,
  until,
  type Frame,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';

interface Cli {
  proc: ChildProcess;
  exit: Promise<number | null>;
  frames: Frame[];
  stderr: () => string;
  type(line: string): void;
}

const running: ChildProcess[] = [];

function chat(url: string, tok: string): Cli {
  const proc = spawn(process.execPath, ['scripts/chat.mjs', url, tok], { stdio: ['pipe', 'pipe', 'pipe'] });
  running.push(proc);
  const frames: Frame[] = [];
  let err = '';
  createInterface({ input: proc.stdout! }).on('line', (l) => frames.push(JSON.parse(l) as Frame));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exit = once(proc, 'exit').then(([code]) => code as number | null);
  return { proc, exit, frames, stderr: () => err, type: (line) => proc.stdin!.write(`${line}\n`) };
}

const seen = (cli: Cli, pred: (f: Frame) => boolean, what: string) =>
  until(what, () => cli.frames.find(pred), 10_000);

let redis: RedisProc;
let gw1: GatewayProc;
let gw2: GatewayProc;

beforeAll(async () => {
  redis = await startRedis();
  [gw1, gw2] = await Promise.all([
    startGateway({ REDIS_URL: redis.url }),
    startGateway({ REDIS_URL: redis.url }),
  ]);
});
afterAll(async () => {
  for (const p of running) if (p.exitCode === null) p.kill('SIGKILL');
  await Promise.all([gw1?.stop(), gw2?.stop()]);
  await redis?.stop();
});

test('alice and bob on two gateways see each other’s messages, in the README’s order', async () => {
  const alice = chat(gw1.wsUrl, token('alice'));
  const bob = chat(gw2.wsUrl, token('bob'));
  await seen(alice, (f) => f.type === 'welcome', 'alice welcomed');
  await seen(bob, (f) => f.type === 'welcome', 'bob welcomed');

  // 1. both join the lobby (alice with a JSON command, bob with the short form)
  alice.type('{"id":1,"type":"join","room":"lobby"}');
  await seen(alice, (f) => f.re === 1 && f.ok === true, 'alice joined');
  bob.type('/join lobby');
  await seen(bob, (f) => f.re === 1 && f.ok === true, 'bob joined');
  await seen(
    alice,
    (f) => f.type === 'presence' && Array.isArray(f.joined) && f.joined.includes('bob'),
    'alice sees bob arrive',
  );

  // 2. alice says hello; both see it
  alice.type('{"id":2,"type":"publish","room":"lobby","body":"hello from gw-1"}');
  await seen(bob, (f) => f.type === 'message' && f.body === 'hello from gw-1', 'bob sees alice');
  await seen(alice, (f) => f.type === 'message' && f.body === 'hello from gw-1', 'alice sees herself');

  // 3. bob answers in the room and DMs alice
  bob.type('/say lobby hi alice, bob on gw-2 here');
  await seen(alice, (f) => f.type === 'message' && f.from === 'bob', 'alice sees bob');
  bob.type('/dm alice psst');
  alice.type('{"type":"ping"}'); // a JSON command without an id gets one
  const dm = await seen(alice, (f) => f.type === 'dm' && f.body === 'psst', 'alice gets the DM');
  expect(dm!.from).toBe('bob');
  await seen(alice, (f) => f.pong === true && typeof f.re === 'number', 'alice’s ping answered');
  await seen(bob, (f) => f.type === undefined && f.ok === true && f.stored === true, 'bob’s DM stored');

  // A line that is no command gets a usage message; the session goes on.
  bob.type('/dance');
  bob.type('{not json');
  await until('usage messages', () => /commands: /.test(bob.stderr()) && /not JSON/.test(bob.stderr()));
  bob.type('/ping');
  await seen(bob, (f) => f.pong === true, 'bob still connected');

  // End of input closes the socket and exits 0.
  alice.proc.stdin!.end();
  bob.proc.stdin!.end();
  expect(await alice.exit).toBe(0);
  expect(await bob.exit).toBe(0);
}, 30_000);

test('a refused token exits 1 and says why', async () => {
  const cli = chat(gw1.wsUrl, 'not-a-token');
  expect(await cli.exit).toBe(1);
  expect(cli.stderr()).toMatch(/handshake refused: HTTP 401/);
});
