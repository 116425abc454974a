// Builds one gateway node from a config: engine, hub, gateway, metrics, HTTP routes and the transport, plus the
// heartbeat and the drain. main.ts is the process around it.
import { randomBytes } from 'node:crypto';
import type { Config } from './config';
import type { Engine } from './engine/engine';
import { MemoryEngine } from './engine/memory-engine';
import { RedisEngine } from './engine/redis-engine';
import { Gateway } from './session/gateway';
import { AddressLimiter } from './session/limits';
import { Hub, type HubEvents, type HubOptions } from './hub/hub';
import type { Logger } from './logger';
import { createMetrics, Stats, type Metrics } from './metrics';
import { mintDevToken, TokenVerifier } from './auth/tokens';
import { createHooks } from './hooks/hooks';
import { WebhookRecorder, WebhookSender, type WebhookObserver } from './hooks/webhooks';
import { createAdmission } from './auth/admission';
import { createRoutes } from './http/routes';
import { createApiHandlers } from './http/api-handlers';
import { createProfilingRoutes } from './http/profiling';
import { UwsTransport } from './transport/uws-server';

const catchUpPage = 100;

/** The hub's options from the config (shared with the in-process tests' node, so the two cannot drift). */
export function hubOptions(config: Readonly<Config>): HubOptions {
  return {
    slowConsumerBytes: config.limits.slowConsumerBytes,
    catchUpPage,
    presenceBatchMs: config.presenceBatchMs,
    maxBufferedBytes: config.limits.maxBufferedBytes,
    historyReadConcurrency: config.limits.historyReadConcurrency,
    nativeTopics: config.nativeTopics,
    // A member of a native topic is checked at least once per this many published bytes: it then passes
    // SLOW_CONSUMER_BYTES by at most one catch-up page, and never MAX_BUFFERED_BYTES (see hub.ts, "Native topics").
    nativeCheckBytes: Math.min(
      catchUpPage * (config.limits.maxMessageBytes + 512),
      config.limits.maxBufferedBytes - config.limits.slowConsumerBytes,
    ),
  };
}

/**
 * What the hub tells the node, wired to the metrics and to the gateway (built after the hub, hence a getter);
 * shared with the in-process tests' node.
 */
export function hubEvents(metrics: Metrics, gateway: () => Gateway): HubEvents {
  return {
    backpressure: () => metrics.backpressure.inc(),
    delivered: (seconds) => metrics.deliveryLatency.observe(seconds),
    disconnectUser: (user) => gateway().disconnectUser(user),
    roomForUser: (user, kind, room) => gateway().roomForUser(user, kind, room),
    overBuffered: (client) => gateway().overBuffered(client),
    replayed: (client, bytes) => gateway().replayed(client, bytes),
  };
}

/**
 * uWS's own backpressure limit. Past MAX_BUFFERED_BYTES the gateway closes the socket (4008); uWS must still take
 * the frame that crossed the bound (at most a full history page) and the close frame after it, so its limit sits
 * above both. Members of native topics stay under MAX_BUFFERED_BYTES (hub.ts, "Native topics"); this margin is what
 * keeps uWS from ever skipping one of them silently.
 */
export function uwsMaxBackpressure(config: Readonly<Config>): number {
  return (
    config.limits.maxBufferedBytes +
    catchUpPage * (config.limits.maxMessageBytes + 512) +
    2 * config.limits.maxFrameBytes
  );
}

export interface Server {
  port: number;
  /** Graceful shutdown: not ready, reconnect + 1001 to every client, Redis entries removed. */
  drain(): Promise<void>;
  /** A rejection nothing handled (a bug): logged and counted; the node goes on. */
  unhandledRejection(err: unknown): void;
}

export async function startServer(config: Readonly<Config>, log: Logger): Promise<Server> {
  const stats = new Stats();
  let draining = false;
  // This process's identity in Redis: a restart under the same NODE_ID is a new instance (see RedisEngine).
  const instanceId = `${config.nodeId}#${randomBytes(4).toString('hex')}`;
  const engine: Engine = config.redis
    ? new RedisEngine(
        {
          url: config.redis.url,
          cluster: config.redis.cluster,
          sentinels: config.redis.sentinels,
          sentinelName: config.redis.sentinelName,
          waitReplicas: config.redis.waitReplicas,
          waitTimeoutMs: config.redis.waitTimeoutMs,
          nodeId: config.nodeId,
          instanceId,
          probeTimeoutMs: config.redis.probeTimeoutMs,
          keyPrefix: config.redis.keyPrefix,
          commandTimeoutMs: config.redis.commandTimeoutMs,
          historySize: config.history.size,
          historyTtlS: config.history.ttlS,
          inboxSize: config.history.inboxSize,
          inboxTtlS: config.history.inboxTtlS,
          dedupWindowS: config.history.dedupWindowS,
          presenceTtlMs: config.presenceTtlMs,
        },
        log,
        (command, seconds, ok) => {
          if (seconds !== undefined) metrics.redisDuration.observe({ command }, seconds);
          if (!ok) metrics.redisErrors.inc({ command });
        },
      )
    : new MemoryEngine({
        historySize: config.history.size,
        historyTtlS: config.history.ttlS,
        inboxSize: config.history.inboxSize,
        inboxTtlS: config.history.inboxTtlS,
        dedupWindowS: config.history.dedupWindowS,
      });

  const ready = () => !draining && engine.ready();
  const metrics = createMetrics(config.nodeId, stats, () => ({
    connections: gateway.sessions.size,
    rooms: hub.roomCount,
    channels: hub.channelCount,
    slow: hub.slowConsumers,
    native: hub.nativeMembers,
    historyReadsRunning: hub.historyReads.running,
    historyReadsWaiting: hub.historyReads.waiting,
    ready: ready(),
    draining,
    sameNodeIdPeers: engine.sameNodeIdPeers(),
  }));
  const hub: Hub = new Hub(
    engine,
    hubOptions(config),
    stats,
    hubEvents(metrics, (): Gateway => gateway),
    log,
  );
  const verifier = new TokenVerifier(config.jwt, (identity) => engine.isRevoked(identity));
  const hooks = createHooks(
    config.hooks,
    config.nodeId,
    config.limits.maxMessageBytes,
    {
      call: (hook, seconds, outcome) => {
        metrics.hookCalls.inc({ hook, outcome });
        if (outcome !== 'cached') metrics.hookDuration.observe({ hook }, seconds);
      },
      error: (hook, kind) => metrics.hookErrors.inc({ hook, kind }),
    },
    log,
  );
  /** No JWT key and a connect hook: the backend authenticates every connection. */
  const backendAuth = !config.jwt.secret && !config.jwt.publicKey && hooks.connect !== undefined;
  let webhooks: { recorder: WebhookRecorder; sender: WebhookSender } | undefined;
  if (config.webhooks) {
    const queue = engine.webhookQueue(config.webhooks.retention);
    const observer: WebhookObserver = {
      recorded: (type) => metrics.webhooksRecorded.inc({ type }),
      attempt: (result, seconds) => {
        metrics.webhookDeliveries.inc({ result });
        if (result !== 'expired') metrics.webhookDuration.observe(seconds);
      },
    };
    webhooks = {
      recorder: new WebhookRecorder(config.webhooks, queue, config.nodeId, observer, log),
      sender: new WebhookSender(config.webhooks, queue, config.nodeId, observer, log),
    };
    const recorder = webhooks.recorder;
    engine.onActivity((activity) => recorder.activity(activity));
  }
  const onRoomMessage =
    webhooks &&
    ((room: string, message: Record<string, unknown>) => webhooks!.recorder.message(room, message));
  const gateway = new Gateway(config, engine, hub, verifier, metrics, stats, log, hooks, onRoomMessage);
  engine.onRevoked((r) => gateway.closeRevoked(r));
  const ipLimiter = new AddressLimiter(config.limits.connRatePerIp);

  const routes = createRoutes({
    ready,
    metrics: async () => ({ body: await metrics.registry.metrics(), type: metrics.registry.contentType }),
    mintToken: config.jwt.devTokens
      ? (user, rooms, ttl) => mintDevToken(config.jwt.secret!, user, rooms, ttl)
      : undefined,
    roomPatternCaps: { count: config.jwt.maxRoomPatterns, length: config.jwt.maxRoomPatternLength },
    apiKey: config.apiKey,
    api: {
      ...createApiHandlers({ config, engine, onRoomMessage }),
      presence: (room) => engine.presence(room),
      connections: (user) => engine.connections(user),
      disconnect: (user) => engine.disconnectUser(user),
      roomForUser: (user, kind, room) => engine.roomForUser(user, kind, room),
      batchMax: config.apiBatchMax,
      revocationTtlS: config.revocationTtlS,
      revoke: (r) => engine.revoke(r),
    },
    staticDir: config.staticDir,
  });
  const profiling = createProfilingRoutes({
    ...config.profiling,
    apiKey: config.apiKey,
    nodeId: config.nodeId,
  });

  const admission = createAdmission({
    config,
    verifier,
    hooks,
    metrics,
    log,
    ipLimiter,
    ready,
    draining: () => draining,
    backendAuth,
  });

  const transport = new UwsTransport(
    {
      host: config.host,
      port: config.port,
      maxFrameBytes: config.limits.maxFrameBytes,
      idleTimeoutS: config.limits.idleTimeoutS,
      maxBackpressure: uwsMaxBackpressure(config),
      maxHttpBodyBytes: config.limits.maxFrameBytes,
      trustProxy: config.trustProxy,
      tokenCookie: config.tokenCookie,
    },
    {
      upgrade: admission,
      open: (conn, { identity, inbox }) => {
        const client = gateway.open(conn, identity, inbox);
        log.info({ conn: client.id, user: client.user }, 'connected');
        return client;
      },
      message: (client, text, bytes) => gateway.message(client, text, bytes),
      binary: (client, data, bytes) => gateway.message(client, data, bytes),
      drain: (client) => hub.drained(client),
      pinged: (client) => hub.checkBuffer(client),
      close: (client, code) => {
        log.info({ conn: client.id, user: client.user, code }, 'disconnected');
        gateway.closed(client, code);
      },
      http: (req) => profiling(req) ?? routes(req),
    },
  );

  hub.useTopics(transport);

  await engine.start();
  if (!engine.ready()) log.warn('engine not reachable yet; /readyz answers 503 until it is');
  const port = await transport.listen();
  webhooks?.sender.start();

  const heartbeatMs = Math.max(250, Math.floor(config.presenceTtlMs / 4));
  const local = () => hub.localState(gateway.clients);
  const heartbeat = setInterval(() => {
    if (draining) return;
    engine.heartbeat(local).catch((err: Error) => log.warn({ err: err.message }, 'heartbeat failed'));
  }, heartbeatMs);
  heartbeat.unref();
  void engine.heartbeat(local).catch(() => undefined);

  log.info(
    { port, engine: engine.kind, devMode: config.jwt.dev, nodeId: config.nodeId, instance: instanceId },
    `gateway listening on ${config.host}:${port}`,
  );

  const drain = async () => {
    if (draining) return;
    draining = true;
    log.info({ connections: gateway.sessions.size }, 'draining');
    clearInterval(heartbeat);
    gateway.goAway();
    const deadline = Date.now() + config.shutdownGraceMs;
    while (gateway.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    transport.stopListening();
    transport.closeAll();
    await engine
      .removeNode()
      .catch((err: Error) => log.warn({ err: err.message }, 'removing node entries failed'));
    // After removeNode: the offline and vacated events it recorded may still go out from here.
    await webhooks?.sender.stop();
    await engine.stop();
    await hooks.close();
    log.info('drained');
  };

  const unhandledRejection = (err: unknown) => {
    metrics.unhandledRejections.inc();
    log.error({ err }, 'unhandled promise rejection (a bug); the node goes on');
  };

  return { port, drain, unhandledRejection };
}

/** A cookie-carried token is accepted from the gateway's own origin (same host) or an ALLOWED_ORIGINS entry. */
