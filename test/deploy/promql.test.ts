// Every PromQL expression in the dashboards and the alert rules names only metrics that exist: the gateway's
// (the fixed list in lib.ts), prom-client's defaults, Prometheus' `up`, or a series recorded by our own rules.
// prometheus-live.test.ts then proves each one returns data from real gateways.
import {
  GATEWAY_METRICS,
  alertRules,
  dashboardQueries,
  knownSeriesNames,
  metricNames,
  operands,
  substituteGrafanaVariables,
} from './lib';

describe('the PromQL reader used by the deploy checks', () => {
  it('finds metric names and skips functions, aggregations, label lists, durations and strings', () => {
    expect(
      metricNames(
        'histogram_quantile(0.99, sum by (node_id, le) (rate(gateway_delivery_latency_seconds_bucket{job="gateway",le!="x"}[5m] offset 1m)))',
      ),
    ).toEqual(['gateway_delivery_latency_seconds_bucket']);
    expect(
      metricNames('gateway:connections:sum < 0.7 * max_over_time(gateway:connections:sum[30m]) and on() up'),
    ).toEqual(['gateway:connections:sum', 'up']);
    expect(metricNames('(sum(a) or vector(0)) == 0 unless ignoring(x) group_left(y) b')).toEqual(['a', 'b']);
    expect(metricNames('time() - process_start_time_seconds{node_id=~"$node"}')).toEqual([
      'process_start_time_seconds',
    ]);
    expect(metricNames('{__name__="gateway_ready"}')).toEqual(['gateway_ready']);
    expect(metricNames('label_replace(x, "dst", "$1", "src", "(.*)")')).toEqual(['x']);
    expect(metricNames('1e3 * 2')).toEqual([]);
  });

  it('splits comparisons and set operators into the operands that select metrics', () => {
    expect(operands('up{job="gateway"} == 0')).toEqual(['up{job="gateway"}']);
    expect(operands('(sum(gateway_ready) or vector(0)) == 0')).toEqual(['sum(gateway_ready)']);
    expect(operands('a > 10 and b > 0.05 * c')).toEqual(['a', 'b', '0.05 * c']);
    expect(operands('a < 0.7 * max_over_time(a[30m]) and on() max_over_time(a[30m]) > 100')).toEqual([
      'a',
      '0.7 * max_over_time(a[30m])',
      'max_over_time(a[30m])',
    ]);
    expect(operands('absent(up{job="x"})')).toEqual(['up{job="x"}']);
    expect(operands('(a == 0) and (b{l=~"x|y"} == 0)')).toEqual(['a', 'b{l=~"x|y"}']);
    expect(operands('sum by (le) (rate(x_bucket[1m]))')).toEqual(['sum by (le) (rate(x_bucket[1m]))']);
  });

  it('replaces Grafana variables with valid PromQL', () => {
    expect(substituteGrafanaVariables('rate(x{node_id=~"$node"}[$__rate_interval])')).toBe(
      'rate(x{node_id=~".*"}[1m])',
    );
  });
});

describe('metric names in dashboards and alert rules', () => {
  it('dashboards only query metrics the gateway, prom-client or Prometheus export', async () => {
    const known = await knownSeriesNames();
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThan(40);
    const unknown = queries.flatMap((q) =>
      metricNames(q.expr)
        .filter((n) => !known.has(n))
        .map((n) => `${q.dashboard} / ${q.panel}: ${n}`),
    );
    expect(unknown).toEqual([]);
  });

  it('alert and recording rules only use metrics the gateway, prom-client, Prometheus or our rules export', async () => {
    const known = await knownSeriesNames();
    const rules = alertRules();
    expect(rules.filter((r) => r.alert).length).toBeGreaterThanOrEqual(6);
    const unknown = rules.flatMap((r) =>
      metricNames(r.expr)
        .filter((n) => !known.has(n))
        .map((n) => `${r.alert ?? r.record}: ${n}`),
    );
    expect(unknown).toEqual([]);
  });

  it('every gateway metric appears on at least one dashboard', () => {
    const used = new Set(dashboardQueries().flatMap((q) => metricNames(q.expr)));
    const base = (n: string) => n.replace(/_(bucket|sum|count)$/, '');
    const usedBase = new Set([...used].map(base));
    const missing = Object.keys(GATEWAY_METRICS).filter((m) => !usedBase.has(m));
    expect(missing).toEqual([]);
  });
});
