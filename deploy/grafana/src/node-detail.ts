// "RelayChat / Node detail": one or more nodes ($node) up close: their state, their traffic, their delivery
// latency and the Node.js runtime underneath.
import type { Dashboard } from '@grafana/schema';
import {
  dashboardDefaults,
  datasourceVariable,
  layout,
  nodeVariable,
  stat,
  timeseries,
  valueText,
} from './kit';

const sel = 'node_id=~"$node"';

export const nodeDetail = {
  ...dashboardDefaults,
  uid: 'relaychat-node',
  title: 'RelayChat / Node detail',
  description: 'State, traffic, delivery and runtime of the selected gateway nodes.',
  tags: ['relaychat'],
  templating: { list: [datasourceVariable, nodeVariable] },
  panels: layout([
    {
      title: 'State',
      panels: [
        stat({
          title: 'Ready',
          description: '1 while the node answers 200 on /readyz (gateway_ready).',
          queries: [{ expr: `gateway_ready{${sel}}`, legend: '{{node_id}}' }],
          base: 'red',
          steps: [{ color: 'green', value: 1 }],
          mappings: valueText({ 0: 'not ready', 1: 'ready' }),
        }),
        stat({
          title: 'Draining',
          description: '1 while the node drains after SIGTERM (gateway_draining).',
          queries: [{ expr: `gateway_draining{${sel}}`, legend: '{{node_id}}' }],
          steps: [{ color: 'orange', value: 1 }],
          mappings: valueText({ 0: 'no', 1: 'draining' }),
        }),
        stat({
          title: 'Connections',
          description: 'Open connections on the selected nodes (gateway_connections).',
          queries: [{ expr: `sum(gateway_connections{${sel}})`, legend: 'connections' }],
        }),
        stat({
          title: 'Rooms',
          description: 'Rooms with at least one member on the selected nodes (gateway_rooms).',
          queries: [{ expr: `sum(gateway_rooms{${sel}})`, legend: 'rooms' }],
        }),
        stat({
          title: 'Pub/sub channels',
          description:
            'Redis channels the nodes are subscribed to (gateway_pubsub_channels): one per room with local members, plus the node’s own.',
          queries: [{ expr: `sum(gateway_pubsub_channels{${sel}})`, legend: 'channels' }],
        }),
        stat({
          title: 'Uptime',
          description: 'Time since the process started (process_start_time_seconds).',
          unit: 's',
          queries: [{ expr: `time() - process_start_time_seconds{${sel}}`, legend: '{{node_id}}' }],
        }),
      ],
    },
    {
      title: 'Connections and traffic',
      panels: [
        timeseries({
          title: 'Connections',
          description: 'Open connections per node (gateway_connections).',
          queries: [{ expr: `gateway_connections{${sel}}`, legend: '{{node_id}}' }],
          min: 0,
        }),
        timeseries({
          title: 'Connections opened and closed',
          description:
            'Opened per second, and closed per second by close-code group (gateway_connections_opened_total, gateway_connections_closed_total).',
          unit: 'cps',
          queries: [
            {
              expr: `sum by (node_id) (rate(gateway_connections_opened_total{${sel}}[$__rate_interval]))`,
              legend: '{{node_id}} opened',
            },
            {
              expr: `sum by (node_id, code) (rate(gateway_connections_closed_total{${sel}}[$__rate_interval]))`,
              legend: '{{node_id}} closed {{code}}',
            },
          ],
        }),
        timeseries({
          title: 'Commands in by type',
          description: 'Client commands received per second by type (gateway_messages_in_total).',
          unit: 'reqps',
          queries: [
            {
              expr: `sum by (node_id, type) (rate(gateway_messages_in_total{${sel}}[$__rate_interval]))`,
              legend: '{{node_id}} {{type}}',
            },
          ],
        }),
        timeseries({
          title: 'Frames out by type',
          description: 'Frames sent per second by type (gateway_messages_out_total).',
          unit: 'reqps',
          queries: [
            {
              expr: `sum by (node_id, type) (rate(gateway_messages_out_total{${sel}}[$__rate_interval]))`,
              legend: '{{node_id}} {{type}}',
            },
          ],
        }),
        timeseries({
          title: 'Bandwidth',
          description:
            'Payload bytes in and out per second (gateway_bytes_in_total, gateway_bytes_out_total).',
          unit: 'Bps',
          queries: [
            { expr: `rate(gateway_bytes_in_total{${sel}}[$__rate_interval])`, legend: '{{node_id}} in' },
            { expr: `rate(gateway_bytes_out_total{${sel}}[$__rate_interval])`, legend: '{{node_id}} out' },
          ],
        }),
        timeseries({
          title: 'Error replies and rate limits',
          description:
            'Error replies by code (gateway_error_replies_total) and rate-limited commands by scope (gateway_rate_limited_total).',
          unit: 'reqps',
          queries: [
            {
              expr: `sum by (node_id, code) (rate(gateway_error_replies_total{${sel}}[$__rate_interval]))`,
              legend: '{{node_id}} {{code}}',
            },
            {
              expr: `sum by (node_id, scope) (rate(gateway_rate_limited_total{${sel}}[$__rate_interval]))`,
              legend: '{{node_id}} limited {{scope}}',
            },
          ],
        }),
      ],
    },
    {
      title: 'Delivery',
      panels: [
        timeseries({
          title: 'Delivery latency p99 by receiving node',
          description:
            'Publish on the sender’s node to the frame written here, 99th and 50th percentile (gateway_delivery_latency_seconds).',
          unit: 's',
          min: 0,
          warnAbove: 0.25,
          queries: [
            {
              expr: `histogram_quantile(0.99, sum by (node_id, le) (rate(gateway_delivery_latency_seconds_bucket{${sel}}[$__rate_interval])))`,
              legend: '{{node_id}} p99',
            },
            {
              expr: `histogram_quantile(0.5, sum by (node_id, le) (rate(gateway_delivery_latency_seconds_bucket{${sel}}[$__rate_interval])))`,
              legend: '{{node_id}} p50',
            },
          ],
        }),
        timeseries({
          title: 'Backpressure and slow consumers',
          description:
            'Sends that met a full socket buffer per second (gateway_backpressure_events_total) and connections over the buffer limit now (gateway_slow_consumers).',
          queries: [
            {
              expr: `rate(gateway_backpressure_events_total{${sel}}[$__rate_interval])`,
              legend: '{{node_id}} backpressure/s',
            },
            { expr: `gateway_slow_consumers{${sel}}`, legend: '{{node_id}} slow consumers' },
          ],
        }),
      ],
    },
    {
      title: 'Backend hooks and webhooks',
      panels: [
        timeseries({
          title: 'Hook calls by outcome',
          description:
            'Calls to the backend per second by hook and outcome: allow, deny, error, cached (gateway_hook_calls_total); failures by kind: timeout, network, status, bad_response, overload (gateway_hook_errors_total). Under fail-closed, each error is an `unavailable` for a client.',
          unit: 'reqps',
          w: 8,
          queries: [
            {
              expr: `sum by (node_id, hook, outcome) (rate(gateway_hook_calls_total{${sel}}[$__rate_interval]))`,
              legend: '{{node_id}} {{hook}} {{outcome}}',
            },
            {
              expr: `sum by (node_id, hook, kind) (rate(gateway_hook_errors_total{${sel}}[$__rate_interval]))`,
              legend: '{{node_id}} {{hook}} failed: {{kind}}',
            },
          ],
        }),
        timeseries({
          title: 'Hook and webhook latency p99',
          description:
            'Backend answer time per hook, 99th and 50th percentile (gateway_hook_duration_seconds): it adds to every connect, join or publish that calls the hook. And the 99th percentile of webhook delivery attempts (gateway_webhook_duration_seconds).',
          unit: 's',
          min: 0,
          w: 8,
          queries: [
            {
              expr: `histogram_quantile(0.99, sum by (node_id, hook, le) (rate(gateway_hook_duration_seconds_bucket{${sel}}[$__rate_interval])))`,
              legend: '{{node_id}} {{hook}} p99',
            },
            {
              expr: `histogram_quantile(0.5, sum by (node_id, hook, le) (rate(gateway_hook_duration_seconds_bucket{${sel}}[$__rate_interval])))`,
              legend: '{{node_id}} {{hook}} p50',
            },
            {
              expr: `histogram_quantile(0.99, sum by (node_id, le) (rate(gateway_webhook_duration_seconds_bucket{${sel}}[$__rate_interval])))`,
              legend: '{{node_id}} webhook p99',
            },
          ],
        }),
        timeseries({
          title: 'Webhooks',
          description:
            'Events recorded per second by type (gateway_webhooks_recorded_total) and delivery attempts by result (gateway_webhook_deliveries_total). Failed attempts are retried with backoff.',
          unit: 'reqps',
          w: 8,
          queries: [
            {
              expr: `sum by (node_id, type) (rate(gateway_webhooks_recorded_total{${sel}}[$__rate_interval]))`,
              legend: '{{node_id}} recorded {{type}}',
            },
            {
              expr: `sum by (node_id, result) (rate(gateway_webhook_deliveries_total{${sel}}[$__rate_interval]))`,
              legend: '{{node_id}} {{result}}',
            },
          ],
        }),
      ],
    },
    {
      title: 'Runtime',
      panels: [
        timeseries({
          title: 'Event loop lag',
          description:
            'How late timers fire on the JavaScript thread, p99 and p50 (nodejs_eventloop_lag_p99_seconds, nodejs_eventloop_lag_p50_seconds). Everything on the node waits this long.',
          unit: 's',
          min: 0,
          warnAbove: 0.1,
          w: 8,
          queries: [
            { expr: `nodejs_eventloop_lag_p99_seconds{${sel}}`, legend: '{{node_id}} p99' },
            { expr: `nodejs_eventloop_lag_p50_seconds{${sel}}`, legend: '{{node_id}} p50' },
          ],
        }),
        timeseries({
          title: 'CPU',
          description:
            'CPU time used per second (process_cpu_seconds_total); 1.0 is one core, and the JavaScript thread cannot use more than one.',
          unit: 'percentunit',
          min: 0,
          w: 8,
          queries: [
            { expr: `rate(process_cpu_seconds_total{${sel}}[$__rate_interval])`, legend: '{{node_id}}' },
          ],
        }),
        timeseries({
          title: 'Memory',
          description:
            'Resident set size (process_resident_memory_bytes) and V8 heap used (nodejs_heap_size_used_bytes).',
          unit: 'bytes',
          min: 0,
          w: 8,
          queries: [
            { expr: `process_resident_memory_bytes{${sel}}`, legend: '{{node_id}} rss' },
            { expr: `nodejs_heap_size_used_bytes{${sel}}`, legend: '{{node_id}} heap used' },
          ],
        }),
        timeseries({
          title: 'Open file descriptors',
          description:
            'Open file descriptors, one per socket and more (process_open_fds), against the limit (process_max_fds).',
          min: 0,
          queries: [
            { expr: `process_open_fds{${sel}}`, legend: '{{node_id}} open' },
            { expr: `process_max_fds{${sel}}`, legend: '{{node_id}} max' },
          ],
        }),
        timeseries({
          title: 'Active handles',
          description:
            'libuv handles keeping the process alive (nodejs_active_handles_total): timers, sockets, ...',
          min: 0,
          queries: [{ expr: `nodejs_active_handles_total{${sel}}`, legend: '{{node_id}}' }],
        }),
      ],
    },
  ]),
} satisfies Dashboard;
