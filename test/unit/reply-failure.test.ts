// A reply that cannot be built (or a handler that throws something unexpected) costs that command one `internal`
// reply, and nothing rejects unhandled. Real parts except the fault: the causes were removed from the code, so a
// failure is injected into the memory engine's answer (a BigInt, which JSON.stringify refuses).
import { pino } from 'pino';
import { loadConfig } from '../../services/gateway/src/config';
import { MemoryEngine } from '../../services/gateway/src/engine/memory-engine';
import { Gateway } from '../../services/gateway/src/session/gateway';
import { Hub } from '../../services/gateway/src/hub/hub';
import { SendStatus, type Connection } from '../../services/gateway/src/hub/client';
import { createMetrics, Stats } from '../../services/gateway/src/metrics';
import { TokenVerifier, type Identity } from '../../services/gateway/src/auth/tokens';
import { until } from '../helpers/harness';

test('a reply that cannot be serialized is answered internal; the connection and the process go on', async () => {
  const config = loadConfig({ JWT_SECRET: 'unit-secret-0123456789' }, () => 'unused');
  const log = pino({ level: 'silent' });
  const engine = new MemoryEngine({
    historySize: 10,
    historyTtlS: 60,
    inboxSize: 10,
    inboxTtlS: 60,
    dedupWindowS: 60,
  });
  const stats = new Stats();
  const hub = new Hub(
    engine,
    {
      slowConsumerBytes: 1 << 20,
      catchUpPage: 100,
      maxBufferedBytes: 4 << 20,
      historyReadConcurrency: 4,
      presenceBatchMs: 0,
      nativeTopics: false,
      nativeCheckBytes: 1 << 20,
    },
    stats,
    {
      backpressure() {},
      delivered() {},
      disconnectUser() {},
      roomForUser() {},
      overBuffered() {},
      replayed() {},
    },
    log,
  );
  const metrics = createMetrics('unit', stats, () => ({
    connections: 0,
    rooms: 0,
    channels: 0,
    slow: 0,
    native: 0,
    historyReadsRunning: 0,
    historyReadsWaiting: 0,
    ready: true,
    draining: false,
    sameNodeIdPeers: 0,
  }));
  const gateway = new Gateway(config, engine, hub, new TokenVerifier(config.jwt), metrics, stats, log);
  const frames: Record<string, unknown>[] = [];
  const conn: Connection = {
    id: 'c1',
    encoding: 'json',
    send: (frame) => {
      frames.push(JSON.parse(String(frame)) as Record<string, unknown>);
      return SendStatus.SENT;
    },
    bufferedAmount: () => 0,
    subscribe: () => undefined,
    unsubscribe: () => undefined,
    close: () => undefined,
  };
  const unhandled: unknown[] = [];
  const onUnhandled = (err: unknown) => unhandled.push(err);
  process.on('unhandledRejection', onUnhandled);
  try {
    const client = gateway.open(conn, { user: 'u1', expiresAt: null } as Identity);
    await until('welcome', () => frames.some((f) => f.type === 'welcome'));
    engine.presence = async () => [1n as unknown as string];
    gateway.message(client, '{"id":1,"type":"presence","room":"r"}', 40);
    await until('a reply', () => frames.some((f) => f.re === 1));
    expect(frames.find((f) => f.re === 1)).toMatchObject({ ok: false, error: { code: 'internal' } });
    // The connection still serves.
    gateway.message(client, '{"id":2,"type":"ping"}', 20);
    await until('the ping reply', () => frames.some((f) => f.re === 2));
    expect(frames.find((f) => f.re === 2)).toMatchObject({ ok: true, pong: true });
    // Rejections are reported once the microtask queue drains, which it has by the next macrotask.
    await new Promise((r) => setImmediate(r));
    expect(unhandled).toEqual([]);
    gateway.closed(client, 1000);
  } finally {
    process.off('unhandledRejection', onUnhandled);
    await engine.stop();
  }
});
