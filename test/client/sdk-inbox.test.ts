// DMs at a high rate to a user whose node drains every few seconds, received through the SDK: it reconnects
// with its inbox position (`?inbox=`) each time, and every acknowledged DM arrives once, in order. The frames
// on the wire are counted too, so a duplicate the SDK would hide (it also dedupes by id) still fails the test.
import WebSocket from 'ws';
import {
  freePort,
  startGateway,
  startRedis,
  token,
  TestClient,
  until,
  type Frame,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';
import { closeAll, sdk } from './util';

const DRAINS = 4;
const DMS_BETWEEN_DRAINS = 150;

let redis: RedisProc;
const running = new Map<string, GatewayProc>();

const env = (redisUrl: string) => ({
  REDIS_URL: redisUrl,
  CMD_RATE: '100000',
  CMD_BURST: '100000',
  USER_MSG_RATE: '0',
  CONN_RATE_PER_IP: '0',
  SHUTDOWN_GRACE_MS: '2000',
});

async function node(port: number, id: string): Promise<GatewayProc> {
  const g = await startGateway({ ...env(redis.url), PORT: String(port), NODE_ID: id });
  running.set(id, g);
  return g;
}

beforeAll(async () => {
  redis = await startRedis();
});

afterAll(async () => {
  closeAll();
  await Promise.all([...running.values()].map((g) => g.kill()));
  await redis?.stop();
});

/** Counts every `dm` frame that reaches a socket, by id, before the SDK sees it. */
const wireDms = new Map<string, number>();
class CountingWebSocket extends WebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols); // the SDK offers its encoding (and token) as subprotocols
    this.on('message', (data: WebSocket.RawData) => {
      const f = JSON.parse(String(data)) as Frame;
      if (f.type === 'dm') wireDms.set(f.id as string, (wireDms.get(f.id as string) ?? 0) + 1);
    });
  }
}

test(`DMs at a high rate while the recipient's node drains ${DRAINS} times: 0 lost, 0 duplicated, in order`, async () => {
  const [senderNode, n1, n2] = await Promise.all([
    startGateway(env(redis.url)),
    node(await freePort(), 'sdk-inbox-1'),
    node(await freePort(), 'sdk-inbox-2'),
  ]);
  running.set('sender', senderNode);
  const dana = sdk('dana', { url: [n1.wsUrl, n2.wsUrl], WebSocket: CountingWebSocket });
  await dana.client.connect();

  const sender = await TestClient.connect(senderNode.wsUrl, token('sam'));
  const acks: Frame[] = [];
  let stop = false;
  const sending = (async () => {
    for (let seq = 0; !stop; seq += 4) {
      const batch = [0, 1, 2, 3].map((i) =>
        sender.ok({ type: 'dm', to: 'dana', body: { seq: seq + i }, key: `d${seq + i}` }),
      );
      acks.push(...(await Promise.all(batch)));
    }
  })();

  const ports = new Map([
    [n1.nodeId, n1.port],
    [n2.nodeId, n2.port],
  ]);
  for (let d = 0; d < DRAINS; d++) {
    const next = acks.length + DMS_BETWEEN_DRAINS;
    await until(`${DMS_BETWEEN_DRAINS} more DMs`, () => acks.length >= next);
    await until('dana connected', () => dana.client.state === 'connected');
    const on = dana.client.node!;
    const resumed = dana.seen.connected.length;
    await running.get(on)!.stop(); // SIGTERM: reconnect event, 1001, drain
    await until('dana reconnected elsewhere', () => dana.seen.connected.length > resumed);
    await node(ports.get(on)!, on); // back on its port for a later reconnect
  }
  await until(
    `${DMS_BETWEEN_DRAINS} DMs after the last drain`,
    () => acks.length >= DRAINS * DMS_BETWEEN_DRAINS + 100,
  );
  stop = true;
  await sending;

  const lastId = acks.at(-1)!.id as string;
  await until('the last DM through the SDK', () => dana.seen.dm.some((d) => d.id === lastId), 15_000);
  const got = new Set(dana.seen.dm.map((d) => d.id));
  const lost = acks.filter((a) => !got.has(a.id as string)).length;
  const duplicatedInSdk = dana.seen.dm.length - got.size;
  const duplicatedOnWire = [...wireDms.values()].filter((n) => n > 1).length;
  const disconnects = dana.seen.disconnected.map((e) => e.code);
  console.log(
    `sdk inbox drains: ${JSON.stringify({ acked: acks.length, received: dana.seen.dm.length, lost, duplicatedInSdk, duplicatedOnWire, disconnects })}`,
  );
  expect({ lost, duplicatedInSdk, duplicatedOnWire }).toEqual({
    lost: 0,
    duplicatedInSdk: 0,
    duplicatedOnWire: 0,
  });
  expect(disconnects.filter((c) => c === 1001).length).toBe(DRAINS);
  expect(dana.seen.dm.map((d) => d.offset)).toEqual(Array.from({ length: acks.length }, (_, i) => i + 1));
  expect(dana.seen.gap).toEqual([]);
  await sender.close();
}, 90_000);
