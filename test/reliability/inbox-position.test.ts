// The inbox position given at connect (`?inbox=<offset>:<epoch>`): the connection's inbox starts exactly there,
// after its welcome, so DMs sent while a client reconnects again and again each arrive once, in order. Old clients
// that send `inbox {since}` after the welcome get each DM once too. Bad positions get 400.
import {
  startRedis,
  token,
  TestClient,
  until,
  upgradeStatus,
  type Frame,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';
import { faultEnv, startNodes } from './nodes';

let redis: RedisProc;
let nodes: GatewayProc[] = [];

beforeAll(async () => {
  redis = await startRedis();
  ({ nodes } = await startNodes(2, faultEnv(redis.url)));
});
afterAll(async () => {
  await Promise.all(nodes.map((n) => n.kill()));
  await redis?.stop();
});

/** Sends numbered DMs to `to`, `window` at a time, until stopped; records every acknowledged one. */
class DmSender {
  readonly acks: Frame[] = [];
  private stopped = false;
  private done?: Promise<void>;

  constructor(
    private readonly client: TestClient,
    private readonly to: string,
    private readonly window = 4,
  ) {}

  start(): this {
    this.done = this.run();
    return this;
  }

  private async run(): Promise<void> {
    for (let seq = 0; !this.stopped; seq += this.window) {
      const batch = Array.from({ length: this.window }, (_, i) =>
        this.client.ok({ type: 'dm', to: this.to, body: { seq: seq + i }, key: `k${seq + i}` }),
      );
      this.acks.push(...(await Promise.all(batch)));
    }
  }

  async stop(): Promise<Frame[]> {
    this.stopped = true;
    await this.done;
    return this.acks;
  }
}

const dms = (c: TestClient) => c.events('dm');

test('DMs sent while a client reconnects again and again with its inbox position: each arrives once, in order, after the welcome', async () => {
  const sender = await TestClient.connect(nodes[0]!.wsUrl, token('sid'));
  const stream = new DmSender(sender, 'rhea').start();
  const received: Frame[] = [];
  // The first connection asks for everything stored (DMs may have been sent before it).
  let position = '0';
  const connections: TestClient[] = [];
  for (let i = 0; i < 25; i++) {
    const c = await TestClient.connect(nodes[i % 2]!.wsUrl, token('rhea'), { query: `inbox=${position}` });
    connections.push(c);
    // Nothing of the inbox before the welcome, and the welcome says where the inbox starts.
    expect(c.frames[0]!.type).toBe('welcome');
    const start = c.welcome.inbox as { offset: number; epoch: string; recovered?: boolean };
    expect(i === 0 ? String(start.offset) : `${start.offset}:${start.epoch}`).toBe(position);
    expect(start.recovered).toBe(true);
    const before = stream.acks.length;
    await until('a few DMs on this connection', () => dms(c).length >= 3 && stream.acks.length > before);
    await c.close();
    received.push(...dms(c));
    const last = received.at(-1)!;
    position = `${String(last.offset)}:${String(last.epoch)}`;
  }
  const acks = await stream.stop();
  const final = await TestClient.connect(nodes[0]!.wsUrl, token('rhea'), { query: `inbox=${position}` });
  const lastId = acks.at(-1)!.id;
  // The last DMs may have reached the last connection already; the rest come to this one.
  await until('the last DM', () => [...received, ...dms(final)].some((d) => d.id === lastId));
  received.push(...dms(final));

  const counts = new Map<unknown, number>();
  for (const d of received) counts.set(d.id, (counts.get(d.id) ?? 0) + 1);
  const lost = acks.filter((a) => !counts.has(a.id)).length;
  const duplicated = [...counts.values()].filter((n) => n > 1).length;
  console.log(
    `inbox position: ${JSON.stringify({ acked: acks.length, received: received.length, lost, duplicated, connections: connections.length + 1 })}`,
  );
  expect({ lost, duplicated }).toEqual({ lost: 0, duplicated: 0 });
  // In order, none skipped: rhea's inbox holds exactly these DMs, offsets 1..n.
  expect(received.map((d) => d.offset)).toEqual(Array.from({ length: acks.length }, (_, i) => i + 1));
  for (const c of [...connections, final]) expect(c.events('gap')).toEqual([]);
  await Promise.all([final.close(), sender.close()]);
});

test('an old client sending inbox {since} after DMs already arrived live gets each DM once', async () => {
  const sender = await TestClient.connect(nodes[0]!.wsUrl, token('otto'));
  const offline: Frame[] = [];
  for (let i = 0; i < 20; i++)
    offline.push(await sender.ok({ type: 'dm', to: 'olga', body: `offline-${i}` }));
  const olga = await TestClient.connect(nodes[1]!.wsUrl, token('olga'));
  expect(olga.welcome.inbox).toMatchObject({ offset: 20 });
  const stream = new DmSender(sender, 'olga').start();
  await until('live DMs before the inbox command', () => dms(olga).length >= 5);
  const reply = await olga.ok({ type: 'inbox', since: { offset: 0 } });
  expect(reply.recovered).toBe(true);
  // A second inbox {since} from the start replays nothing again.
  await olga.ok({ type: 'inbox', since: { offset: 0 } });
  const more = stream.acks.length + 8;
  await until('more live DMs after the replay', () => stream.acks.length >= more);
  const acks = await stream.stop();
  const all = [...offline, ...acks];
  await until('every DM', () => all.every((a) => dms(olga).some((d) => d.id === a.id)));
  await olga.ok({ type: 'ping' });

  const ids = dms(olga).map((d) => d.id);
  expect(new Set(ids).size).toBe(ids.length); // none twice
  expect(ids.length).toBe(all.length); // none lost
  // The stored ones come back in order among themselves, as do the live ones.
  const offsets = dms(olga).map((d) => d.offset as number);
  const backfill = offsets.filter((o) => o <= 20);
  const live = offsets.filter((o) => o > 20);
  expect(backfill).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  expect(live).toEqual([...live].sort((x, y) => x - y));
  expect(olga.events('gap')).toEqual([]);
  await Promise.all([olga.close(), sender.close()]);
});

test('a position ahead of the store starts at the latest offset and says recovered: false; DMs then arrive', async () => {
  const sender = await TestClient.connect(nodes[0]!.wsUrl, token('abe'));
  await sender.ok({ type: 'dm', to: 'ada', body: 'one' });
  const ada = await TestClient.connect(nodes[1]!.wsUrl, token('ada'), {
    query: `inbox=${Number.MAX_SAFE_INTEGER}`,
  });
  expect(ada.welcome.inbox).toMatchObject({ offset: 1, recovered: false });
  const r = await sender.ok({ type: 'dm', to: 'ada', body: 'two' });
  expect(await ada.waitFor((f) => f.type === 'dm' && f.id === r.id)).toMatchObject({ offset: 2 });
  expect(dms(ada)).toHaveLength(1);
  await Promise.all([ada.close(), sender.close()]);
});

test('a malformed inbox position is refused with 400 before a socket exists, and the node keeps serving', async () => {
  const gw = nodes[0]!;
  const bad = [
    'abc',
    '-1',
    '1.5',
    '12345678901234567',
    '9999999999999999',
    '5:',
    `5:${'e'.repeat(65)}`,
    '5:ab/c',
    '5:a:b',
    ' 5',
    '',
  ];
  for (const value of bad) {
    const res = await upgradeStatus(gw.wsUrl, `?token=${token('mal')}&inbox=${encodeURIComponent(value)}`);
    expect([value, res]).toEqual([
      value,
      { status: 400, body: { error: 'bad_request', reason: 'bad_inbox' } },
    ]);
  }
  // A well-formed position does not get a bad token through.
  expect((await upgradeStatus(gw.wsUrl, '?token=nope&inbox=3')).status).toBe(401);
  const ok = await TestClient.connect(gw.wsUrl, token('mal'), { query: 'inbox=0' });
  expect(ok.welcome.inbox).toMatchObject({ offset: 0, recovered: true });
  expect((await ok.ok({ type: 'ping' })).pong).toBe(true);
  await ok.close();
});
