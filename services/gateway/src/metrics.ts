// One prom-client registry per gateway instance, node_id on every series. Hot-path figures (frames and bytes
// out, deliveries) are plain counters in Stats and copied into the registry when Prometheus scrapes.
import client from 'prom-client';
import type { AuthFailure } from './auth/tokens';
import { CLOSE_BUCKETS, ERROR_CODES, type CommandType } from '../../../protocol';
import { WEBHOOK_EVENTS } from './config';
import type { HookName, HookOutcome } from './hooks/hooks';

// Records over a union type: the compiler fails until every member is listed (and only members are).
const AUTH_FAILURES: Record<AuthFailure, true> = {
  missing_token: true,
  malformed: true,
  bad_signature: true,
  bad_algorithm: true,
  expired: true,
  not_yet_valid: true,
  bad_issuer: true,
  bad_audience: true,
  no_subject: true,
  bad_subject: true,
  no_expiry: true,
  lifetime_too_long: true,
  too_many_room_patterns: true,
  room_pattern_too_long: true,
  revoked: true,
};
const COMMAND_TYPES: Record<CommandType, true> = {
  join: true,
  leave: true,
  publish: true,
  dm: true,
  presence: true,
  history: true,
  inbox: true,
  refresh: true,
  ping: true,
};
const HOOKS: Record<HookName, true> = { connect: true, join: true, publish: true };
const HOOK_OUTCOMES: Record<HookOutcome, true> = { allow: true, deny: true, error: true, cached: true };
const keys = (o: object) => Object.keys(o);
const REDIS_COMMANDS = [
  'ping',
  'append',
  'dm',
  'read',
  'presence',
  'index',
  'connections',
  'publish',
  'rate',
  'nodes',
  'subscribe',
  'ssubscribe',
];

/**
 * Label values known in advance, per labelled metric: each of these series exists from the start at 0, so a
 * dashboard panel shows 0 rather than "No data" and `rate()`/`increase()` see the first increment. Add a value
 * here when code starts using a new one (test/gateway/metrics-zero.test.ts checks that every series the
 * dashboards and alert rules query exists on a fresh node).
 */
export const KNOWN_LABEL_VALUES: Record<string, Record<string, readonly string[]>> = {
  gateway_connections_closed_total: {
    // Close codes are counted by group (protocol/errors.ts closeBucket), so a client cannot create series.
    code: CLOSE_BUCKETS,
  },
  gateway_upgrades_rejected_total: {
    reason: ['draining', 'not_ready', 'origin', 'rate_limited', ...keys(AUTH_FAILURES)],
  },
  gateway_auth_failures_total: { reason: keys(AUTH_FAILURES) },
  gateway_messages_in_total: { type: [...keys(COMMAND_TYPES), 'invalid'] },
  gateway_messages_out_total: {
    type: ['welcome', 'reply', 'message', 'dm', 'presence', 'gap', 'reconnect', 'left', 'joined'],
  },
  gateway_error_replies_total: { code: keys(ERROR_CODES) },
  gateway_rate_limited_total: {
    scope: ['connection', 'user', 'ip', 'user_connections', 'inflight', 'reply_bytes', 'send_buffer'],
  },
  gateway_recoveries_total: { result: ['recovered', 'gap'] },
  // The engine's timed Redis calls (RedisEngine.timed), and the (sharded) subscriptions it reports.
  gateway_redis_errors_total: { command: REDIS_COMMANDS },
  gateway_redis_command_duration_seconds: { command: REDIS_COMMANDS },
  gateway_hook_calls_total: { hook: keys(HOOKS), outcome: keys(HOOK_OUTCOMES) },
  gateway_hook_errors_total: {
    hook: keys(HOOKS),
    kind: ['timeout', 'network', 'status', 'bad_response', 'overload'],
  },
  gateway_hook_duration_seconds: { hook: keys(HOOKS) },
  gateway_webhooks_recorded_total: { type: [...WEBHOOK_EVENTS, 'message'] },
  gateway_webhook_deliveries_total: { result: ['delivered', 'failed', 'expired'] },
};

/** Every combination of the known values of `metric`'s labels (one label each today; any number works). */
function knownLabelSets(metric: string): Array<Record<string, string>> {
  let sets: Array<Record<string, string>> = [{}];
  for (const [label, values] of Object.entries(KNOWN_LABEL_VALUES[metric] ?? {}))
    sets = sets.flatMap((set) => values.map((v) => ({ ...set, [label]: v })));
  return sets;
}

/** Creates the known series of every labelled counter and histogram in `registry` at 0. */
function zeroKnownSeries(registry: client.Registry): void {
  for (const metric of Object.keys(KNOWN_LABEL_VALUES)) {
    const m = registry.getSingleMetric(metric);
    if (!m) throw new Error(`KNOWN_LABEL_VALUES names ${metric}, which is not registered`);
    for (const labels of knownLabelSets(metric)) {
      if (m instanceof client.Counter) m.inc(labels, 0);
      else if (m instanceof client.Histogram) m.zero(labels);
    }
  }
}

/** Counters bumped on the hot path without touching prom-client. */
export class Stats {
  framesOut = new Map<string, number>();
  bytesOut = 0;
  bytesIn = 0;
  /** `count` frames of `bytes` each. */
  countOut(type: string, bytes: number, count = 1): void {
    if (count === 0) return;
    this.framesOut.set(type, (this.framesOut.get(type) ?? 0) + count);
    this.bytesOut += bytes * count;
  }
}

export function createMetrics(
  nodeId: string,
  stats: Stats,
  gauges: () => {
    connections: number;
    rooms: number;
    channels: number;
    slow: number;
    /** Connections receiving at least one stream through a native topic. */
    native: number;
    historyReadsRunning: number;
    historyReadsWaiting: number;
    ready: boolean;
    draining: boolean;
    sameNodeIdPeers: number;
  },
) {
  const registry = new client.Registry();
  registry.setDefaultLabels({ node_id: nodeId });
  client.collectDefaultMetrics({ register: registry });

  const gauge = (name: string, help: string, pick: (g: ReturnType<typeof gauges>) => number) =>
    new client.Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(pick(gauges()));
      },
    });
  gauge('gateway_connections', 'Open WebSocket connections on this node.', (g) => g.connections);
  gauge('gateway_rooms', 'Rooms with at least one local member.', (g) => g.rooms);
  gauge('gateway_pubsub_channels', 'Bus channels this node is subscribed to.', (g) => g.channels);
  gauge('gateway_slow_consumers', 'Connections currently held back by backpressure.', (g) => g.slow);
  gauge(
    'gateway_native_topic_members',
    'Connections receiving at least one stream through a uWS native topic (in sync, one publish per event).',
    (g) => g.native,
  );
  gauge(
    'gateway_history_reads_running',
    'Reads of stored history (history pages, replays, catch-ups) running now (at most HISTORY_READ_CONCURRENCY).',
    (g) => g.historyReadsRunning,
  );
  gauge(
    'gateway_history_reads_waiting',
    'Reads of stored history waiting for a turn because HISTORY_READ_CONCURRENCY are running.',
    (g) => g.historyReadsWaiting,
  );
  gauge('gateway_ready', '1 when the node accepts traffic (engine reachable, not draining).', (g) =>
    g.ready ? 1 : 0,
  );
  gauge('gateway_draining', '1 while the node drains for shutdown.', (g) => (g.draining ? 1 : 0));
  gauge(
    'gateway_node_id_conflicts',
    'Other live gateway processes with this NODE_ID (should be 0: every process needs its own NODE_ID).',
    (g) => g.sameNodeIdPeers,
  );

  let flushedBytesOut = 0;
  let flushedBytesIn = 0;
  const flushedFrames = new Map<string, number>();
  const messagesOut = new client.Counter({
    name: 'gateway_messages_out_total',
    help: 'Frames sent to clients, by type.',
    labelNames: ['type'],
    registers: [registry],
    collect() {
      for (const [type, n] of stats.framesOut) {
        this.inc({ type }, n - (flushedFrames.get(type) ?? 0));
        flushedFrames.set(type, n);
      }
    },
  });
  const bytesOut = new client.Counter({
    name: 'gateway_bytes_out_total',
    help: 'Bytes of frames sent to clients.',
    registers: [registry],
    collect() {
      this.inc(stats.bytesOut - flushedBytesOut);
      flushedBytesOut = stats.bytesOut;
    },
  });
  const bytesIn = new client.Counter({
    name: 'gateway_bytes_in_total',
    help: 'Bytes of frames received from clients.',
    registers: [registry],
    collect() {
      this.inc(stats.bytesIn - flushedBytesIn);
      flushedBytesIn = stats.bytesIn;
    },
  });

  const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
    new client.Counter<L>({ name, help, labelNames, registers: [registry] });

  const metrics = {
    registry,
    messagesOut,
    bytesOut,
    bytesIn,
    connectionsOpened: counter('gateway_connections_opened_total', 'WebSocket connections opened.'),
    connectionsClosed: counter(
      'gateway_connections_closed_total',
      'WebSocket connections closed, by close-code group (normal, going_away, policy, expired, kicked, revoked, slow, error, other).',
      ['code'],
    ),
    upgradesRejected: counter('gateway_upgrades_rejected_total', 'Upgrades refused, by reason.', ['reason']),
    authFailures: counter('gateway_auth_failures_total', 'Token checks that failed, by reason.', ['reason']),
    messagesIn: counter('gateway_messages_in_total', 'Client commands received, by type.', ['type']),
    errorReplies: counter('gateway_error_replies_total', 'Error replies sent, by error code.', ['code']),
    rateLimited: counter(
      'gateway_rate_limited_total',
      'Commands or connections over a rate limit, by scope.',
      ['scope'],
    ),
    backpressure: counter(
      'gateway_backpressure_events_total',
      'Times a connection passed SLOW_CONSUMER_BYTES and live pushes to it paused.',
    ),
    presenceTruncated: counter(
      'gateway_presence_truncated_total',
      'presence and join replies that listed PRESENCE_REPLY_MAX users of more.',
    ),
    unhandledRejections: counter(
      'gateway_unhandled_rejections_total',
      'Promise rejections nothing handled (each a bug, logged; the node goes on).',
    ),
    recoveries: counter('gateway_recoveries_total', 'join/inbox with since, by result.', ['result']),
    redisErrors: counter(
      'gateway_redis_errors_total',
      'Redis commands that failed or timed out, by command.',
      ['command'],
    ),
    redisDuration: new client.Histogram({
      name: 'gateway_redis_command_duration_seconds',
      help: 'Redis command latency, by command.',
      labelNames: ['command'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
    hookCalls: counter('gateway_hook_calls_total', 'Backend hook calls, by hook and outcome.', [
      'hook',
      'outcome',
    ]),
    hookErrors: counter(
      'gateway_hook_errors_total',
      'Backend hook calls that failed, by hook and kind (timeout, network, status, bad_response, overload).',
      ['hook', 'kind'],
    ),
    hookDuration: new client.Histogram({
      name: 'gateway_hook_duration_seconds',
      help: 'Backend hook call latency, by hook (cached answers not included).',
      labelNames: ['hook'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
    webhooksRecorded: counter('gateway_webhooks_recorded_total', 'Webhook events recorded, by type.', [
      'type',
    ]),
    webhookDeliveries: counter(
      'gateway_webhook_deliveries_total',
      'Webhook delivery attempts, by result (delivered, failed, expired).',
      ['result'],
    ),
    webhookDuration: new client.Histogram({
      name: 'gateway_webhook_duration_seconds',
      help: 'Webhook delivery attempt latency.',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    deliveryLatency: new client.Histogram({
      name: 'gateway_delivery_latency_seconds',
      help: 'From publish on the sender node to the frame written to the local receiving sockets (one observation per message per node).',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    }),
  };
  zeroKnownSeries(registry);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
