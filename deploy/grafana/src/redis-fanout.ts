// "RelayChat / Redis and fanout": how published messages travel (Redis pub/sub, delivery to sockets, recovery
// from history) and how Redis itself is answering.
import type { Dashboard } from '@grafana/schema';
import {
  dashboardDefaults,
  datasourceVariable,
  heatmap,
  layout,
  nodeVariable,
  stat,
  timeseries,
} from './kit';

const sel = 'node_id=~"$node"';
const rate = (metric: string, by: string) => `sum by (${by}) (rate(${metric}{${sel}}[$__rate_interval]))`;

export const redisFanout = {
  ...dashboardDefaults,
  uid: 'relaychat-redis-fanout',
  title: 'RelayChat / Redis and fanout',
  description:
    'Publish-to-deliver fanout across nodes, history recovery, and Redis command latency and errors.',
  tags: ['relaychat'],
  templating: { list: [datasourceVariable, nodeVariable] },
  panels: layout([
    {
      title: 'Fanout',
      panels: [
        stat({
          title: 'Fanout ratio',
          description:
            'Message frames delivered per publish command received (gateway_messages_out_total{type="message"} / gateway_messages_in_total{type="publish"}): the average number of receiving sockets per message. Publishes through POST /api/publish are delivered but not counted as commands, so they raise the ratio.',
          w: 6,
          h: 8,
          decimals: 1,
          queries: [
            {
              expr: `sum(rate(gateway_messages_out_total{type="message",${sel}}[$__rate_interval])) / sum(rate(gateway_messages_in_total{type="publish",${sel}}[$__rate_interval]))`,
              legend: 'frames per publish',
            },
          ],
        }),
        heatmap({
          title: 'Delivery latency distribution',
          description:
            'Deliveries by publish-to-socket latency (gateway_delivery_latency_seconds buckets) on the selected receiving nodes.',
          w: 18,
          queries: [
            {
              expr: `sum by (le) (increase(gateway_delivery_latency_seconds_bucket{${sel}}[$__rate_interval]))`,
              legend: '{{le}}',
            },
          ],
        }),
        timeseries({
          title: 'Deliveries per second by node',
          description:
            'Message frames written to sockets per second, by receiving node (gateway_messages_out_total{type="message"}).',
          unit: 'reqps',
          queries: [
            {
              expr: `sum by (node_id) (rate(gateway_messages_out_total{type="message",${sel}}[$__rate_interval]))`,
              legend: '{{node_id}}',
            },
          ],
          stack: true,
        }),
        timeseries({
          title: 'Delivery latency p99 by node',
          description:
            'Publish to socket, 99th percentile by receiving node (gateway_delivery_latency_seconds).',
          unit: 's',
          min: 0,
          warnAbove: 0.25,
          queries: [
            {
              expr: `histogram_quantile(0.99, ${rate('gateway_delivery_latency_seconds_bucket', 'node_id, le')})`,
              legend: '{{node_id}}',
            },
          ],
        }),
        timeseries({
          title: 'Rooms and pub/sub channels',
          description:
            'Rooms with local members (gateway_rooms) and the Redis channels subscribed for them (gateway_pubsub_channels), per node. Channels track rooms: a node subscribes when a room gets its first local member and unsubscribes when the last leaves.',
          min: 0,
          queries: [
            { expr: `gateway_rooms{${sel}}`, legend: '{{node_id}} rooms' },
            { expr: `gateway_pubsub_channels{${sel}}`, legend: '{{node_id}} channels' },
          ],
        }),
        timeseries({
          title: 'History recoveries',
          description:
            'Reconnecting clients replayed from history (join or inbox with since), by result (gateway_recoveries_total): recovered (every missed message replayed) or gap (history no longer reached back; the client got a gap event).',
          unit: 'reqps',
          queries: [{ expr: rate('gateway_recoveries_total', 'result'), legend: '{{result}}' }],
        }),
        timeseries({
          title: 'Backpressure and slow consumers',
          description:
            'Sends that met a full socket buffer per second (gateway_backpressure_events_total) and connections over the buffer limit now (gateway_slow_consumers). Slow consumers are what fanout latency is made of when Redis is fine.',
          queries: [
            {
              expr: rate('gateway_backpressure_events_total', 'node_id'),
              legend: '{{node_id}} backpressure/s',
            },
            { expr: `gateway_slow_consumers{${sel}}`, legend: '{{node_id}} slow consumers' },
          ],
        }),
      ],
    },
    {
      title: 'Redis',
      panels: [
        timeseries({
          title: 'Redis commands per second',
          description:
            'Redis commands issued per second, by command (gateway_redis_command_duration_seconds_count).',
          unit: 'reqps',
          queries: [
            { expr: rate('gateway_redis_command_duration_seconds_count', 'command'), legend: '{{command}}' },
          ],
          stack: true,
        }),
        timeseries({
          title: 'Redis command latency p99',
          description:
            'Round trip of each Redis command as the gateway sees it, 99th percentile by command (gateway_redis_command_duration_seconds).',
          unit: 's',
          min: 0,
          queries: [
            {
              expr: `histogram_quantile(0.99, ${rate('gateway_redis_command_duration_seconds_bucket', 'command, le')})`,
              legend: '{{command}}',
            },
          ],
        }),
        timeseries({
          title: 'Redis command latency p50',
          description: 'Median round trip by command (gateway_redis_command_duration_seconds).',
          unit: 's',
          min: 0,
          queries: [
            {
              expr: `histogram_quantile(0.5, ${rate('gateway_redis_command_duration_seconds_bucket', 'command, le')})`,
              legend: '{{command}}',
            },
          ],
        }),
        timeseries({
          title: 'Redis errors',
          description:
            'Failed Redis commands per second by node and command (gateway_redis_errors_total): timeouts, connection loss, OOM. Each one becomes an `unavailable` reply or a retried delivery.',
          unit: 'reqps',
          queries: [
            {
              expr: rate('gateway_redis_errors_total', 'node_id, command'),
              legend: '{{node_id}} {{command}}',
            },
          ],
        }),
      ],
    },
  ]),
} satisfies Dashboard;
