// "RelayChat / Cluster overview": is the cluster healthy, how busy is it, what is going wrong. One line per node
// where it helps to see an outlier; everything else summed over the cluster.
import type { Dashboard } from '@grafana/schema';
import { dashboardDefaults, datasourceVariable, layout, stat, timeseries } from './kit';

const p99 = (q: number) =>
  `histogram_quantile(${q}, sum by (le) (rate(gateway_delivery_latency_seconds_bucket[$__rate_interval])))`;

export const clusterOverview = {
  ...dashboardDefaults,
  uid: 'relaychat-cluster',
  title: 'RelayChat / Cluster overview',
  description: 'Health, load and errors of all gateway nodes together.',
  tags: ['relaychat'],
  templating: { list: [datasourceVariable] },
  panels: layout([
    {
      title: 'Health',
      panels: [
        stat({
          title: 'Ready nodes',
          description:
            'Nodes answering 200 on /readyz (gateway_ready). The load balancer only sends clients to these.',
          queries: [{ expr: 'sum(gateway_ready)', legend: 'ready' }],
          base: 'red',
          steps: [{ color: 'green', value: 1 }],
        }),
        stat({
          title: 'Draining nodes',
          description: 'Nodes that received SIGTERM and are moving their clients away (gateway_draining).',
          queries: [{ expr: 'sum(gateway_draining)', legend: 'draining' }],
          steps: [{ color: 'orange', value: 1 }],
        }),
        stat({
          title: 'Connections',
          description: 'Open WebSocket connections on all nodes (gateway_connections).',
          queries: [{ expr: 'sum(gateway_connections)', legend: 'connections' }],
        }),
        stat({
          title: 'Room memberships',
          description:
            'Rooms with at least one local member, summed over nodes (gateway_rooms): a room with members on three nodes counts three times.',
          queries: [{ expr: 'sum(gateway_rooms)', legend: 'rooms' }],
        }),
        stat({
          title: 'Publishes / s',
          description:
            'publish commands received from clients per second (gateway_messages_in_total{type="publish"}).',
          unit: 'reqps',
          queries: [
            {
              expr: 'sum(rate(gateway_messages_in_total{type="publish"}[$__rate_interval]))',
              legend: 'publish',
            },
          ],
        }),
        stat({
          title: 'Delivery p99',
          description:
            'Time from a publish on the sender’s node to the frame being written to a receiving socket, 99th percentile over all nodes (gateway_delivery_latency_seconds).',
          unit: 's',
          queries: [{ expr: p99(0.99), legend: 'p99' }],
          steps: [
            { color: 'orange', value: 0.1 },
            { color: 'red', value: 0.25 },
          ],
        }),
      ],
    },
    {
      title: 'Connections',
      panels: [
        timeseries({
          title: 'Connections by node',
          description:
            'Open connections per node (gateway_connections). leastconn balancing keeps these close; a node far below the others just restarted.',
          queries: [{ expr: 'sum by (node_id) (gateway_connections)', legend: '{{node_id}}' }],
          stack: true,
          min: 0,
        }),
        timeseries({
          title: 'Connections opened and closed',
          description:
            'Connections opened per second (gateway_connections_opened_total) and closed per second by close-code group (gateway_connections_closed_total): going_away is a drain, error mostly dropped TCP connections, expired an expired token, slow a client that did not read (4008).',
          unit: 'cps',
          queries: [
            { expr: 'sum(rate(gateway_connections_opened_total[$__rate_interval]))', legend: 'opened' },
            {
              expr: 'sum by (code) (rate(gateway_connections_closed_total[$__rate_interval]))',
              legend: 'closed {{code}}',
            },
          ],
        }),
        timeseries({
          title: 'Rejected upgrades',
          description:
            'WebSocket upgrades refused before a socket existed, by reason (gateway_upgrades_rejected_total): bad token, origin, draining, per-IP rate.',
          unit: 'reqps',
          queries: [
            {
              expr: 'sum by (reason) (rate(gateway_upgrades_rejected_total[$__rate_interval]))',
              legend: '{{reason}}',
            },
          ],
        }),
        timeseries({
          title: 'Authentication failures',
          description:
            'Tokens refused, by reason (gateway_auth_failures_total): expired, bad_signature, malformed, ... A jump in bad_signature after a deploy means a secret mismatch.',
          unit: 'reqps',
          queries: [
            {
              expr: 'sum by (reason) (rate(gateway_auth_failures_total[$__rate_interval]))',
              legend: '{{reason}}',
            },
          ],
        }),
      ],
    },
    {
      title: 'Traffic',
      panels: [
        timeseries({
          title: 'Commands in by type',
          description: 'Client commands received per second, by type (gateway_messages_in_total).',
          unit: 'reqps',
          queries: [
            { expr: 'sum by (type) (rate(gateway_messages_in_total[$__rate_interval]))', legend: '{{type}}' },
          ],
          stack: true,
        }),
        timeseries({
          title: 'Frames out by type',
          description:
            'Frames sent to clients per second, by type (gateway_messages_out_total): message, dm, presence, reply, gap, ...',
          unit: 'reqps',
          queries: [
            {
              expr: 'sum by (type) (rate(gateway_messages_out_total[$__rate_interval]))',
              legend: '{{type}}',
            },
          ],
          stack: true,
        }),
        timeseries({
          title: 'Bandwidth',
          description:
            'WebSocket payload bytes received and sent per second, all nodes (gateway_bytes_in_total, gateway_bytes_out_total).',
          unit: 'Bps',
          queries: [
            { expr: 'sum(rate(gateway_bytes_in_total[$__rate_interval]))', legend: 'in' },
            { expr: 'sum(rate(gateway_bytes_out_total[$__rate_interval]))', legend: 'out' },
          ],
        }),
        timeseries({
          title: 'Delivery latency',
          description:
            'Publish on the sender’s node to the frame written on the receiving socket, quantiles over all nodes (gateway_delivery_latency_seconds).',
          unit: 's',
          min: 0,
          warnAbove: 0.25,
          queries: [
            { expr: p99(0.5), legend: 'p50' },
            { expr: p99(0.9), legend: 'p90' },
            { expr: p99(0.99), legend: 'p99' },
          ],
        }),
      ],
    },
    {
      title: 'Errors and limits',
      panels: [
        timeseries({
          title: 'Error replies by code',
          description:
            'Commands answered with ok:false, by error code (gateway_error_replies_total); see the error table in docs/PROTOCOL.md.',
          unit: 'reqps',
          queries: [
            {
              expr: 'sum by (code) (rate(gateway_error_replies_total[$__rate_interval]))',
              legend: '{{code}}',
            },
          ],
        }),
        timeseries({
          title: 'Rate limited',
          description:
            'Commands or connections refused by a rate limit, by scope (gateway_rate_limited_total): per connection, per user, per IP.',
          unit: 'reqps',
          queries: [
            {
              expr: 'sum by (scope) (rate(gateway_rate_limited_total[$__rate_interval]))',
              legend: '{{scope}}',
            },
          ],
        }),
        timeseries({
          title: 'Redis errors',
          description: 'Failed Redis commands per second, by command (gateway_redis_errors_total).',
          unit: 'reqps',
          queries: [
            {
              expr: 'sum by (command) (rate(gateway_redis_errors_total[$__rate_interval]))',
              legend: '{{command}}',
            },
          ],
        }),
        timeseries({
          title: 'Slow consumers and backpressure',
          description:
            'Connections whose send buffer is over the limit right now (gateway_slow_consumers) and sends that met backpressure per second (gateway_backpressure_events_total).',
          queries: [
            { expr: 'sum(gateway_slow_consumers)', legend: 'slow consumers' },
            {
              expr: 'sum(rate(gateway_backpressure_events_total[$__rate_interval]))',
              legend: 'backpressure events/s',
            },
          ],
        }),
      ],
    },
    {
      title: 'Canary vs stable',
      panels: [
        timeseries({
          title: 'Error replies per command, by track',
          description:
            'Error replies over commands received, per release track (the `track` pod label, canary or stable, that the ServiceMonitor copies onto the series; see Canary releases in docs/OPERATIONS.md). A canary above stable is the signal to roll back.',
          unit: 'percentunit',
          queries: [
            {
              expr: 'sum by (track) (rate(gateway_error_replies_total[$__rate_interval])) / sum by (track) (rate(gateway_messages_in_total[$__rate_interval]))',
              legend: '{{track}}',
            },
          ],
        }),
        timeseries({
          title: 'Delivery p99, by track',
          description:
            'Publish to frame written, 99th percentile, per release track (gateway_delivery_latency_seconds).',
          unit: 's',
          queries: [
            {
              expr: 'histogram_quantile(0.99, sum by (track, le) (rate(gateway_delivery_latency_seconds_bucket[$__rate_interval])))',
              legend: '{{track}}',
            },
          ],
        }),
        timeseries({
          title: 'Connections, by track',
          description:
            'Open connections per release track (gateway_connections): the canary share of new connections shows here.',
          queries: [{ expr: 'sum by (track) (gateway_connections)', legend: '{{track}}' }],
        }),
        timeseries({
          title: 'Dropped and failed connections, by track',
          description:
            'Connections closed abnormally (the `error` group: 1006 dropped, 1011 internal error, protocol errors) per second, per release track (gateway_connections_closed_total).',
          unit: 'cps',
          queries: [
            {
              expr: 'sum by (track) (rate(gateway_connections_closed_total{code="error"}[$__rate_interval]))',
              legend: '{{track}}',
            },
          ],
        }),
      ],
    },
  ]),
} satisfies Dashboard;
