// Metrics from zero: on a node that has served nothing, every series the Grafana dashboards (deploy/grafana) and
// the alert rules (deploy/prometheus/alerts.yml) select already exists, so a panel shows 0 instead of "No data"
// and rate()/increase() see the first increment an alert should catch. Selectors are read from the PromQL itself:
// the metric name and its label matchers (job and instance are added by Prometheus and ignored here).
import { alertRules, dashboardQueries, metricNames, substituteGrafanaVariables } from '../deploy/lib';
import { KNOWN_LABEL_VALUES } from '../../services/gateway/src/metrics';
import { startGateway, startRedis, type GatewayProc, type RedisProc } from '../helpers/harness';

interface Series {
  name: string;
  labels: Record<string, string>;
}

/** Parses the Prometheus text exposition into series (name and labels). */
function parseExposition(text: string): Series[] {
  const out: Series[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$/.exec(line);
    if (!m) throw new Error(`unparsed exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels });
  }
  return out;
}

interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

/** Each metric selector in `expr`: its name and label matchers. */
function selectors(expr: string): Array<{ name: string; matchers: Matcher[]; text: string }> {
  const out: Array<{ name: string; matchers: Matcher[]; text: string }> = [];
  for (const name of new Set(metricNames(expr))) {
    const re = new RegExp(
      `(?<![\\w:])${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}(?![\\w:])(\\{[^}]*\\})?`,
      'g',
    );
    for (const m of expr.matchAll(re)) {
      const matchers = [...(m[1] ?? '').matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)].map((x) => ({
        label: x[1]!,
        op: x[2] as Matcher['op'],
        value: x[3]!,
      }));
      out.push({ name, matchers, text: m[0] });
    }
  }
  return out;
}

function matches(s: Series, m: Matcher): boolean {
  const v = s.labels[m.label] ?? '';
  if (m.op === '=') return v === m.value;
  if (m.op === '!=') return v !== m.value;
  const re = new RegExp(`^(?:${m.value})$`);
  return m.op === '=~' ? re.test(v) : !re.test(v);
}

const PROMETHEUS_LABELS = new Set(['job', 'instance']);

describe('a fresh node exports every series the dashboards and alerts query', () => {
  let redis: RedisProc;
  let gw: GatewayProc;
  let series: Series[];

  beforeAll(async () => {
    redis = await startRedis();
    gw = await startGateway({ REDIS_URL: redis.url });
    series = parseExposition(await (await fetch(`${gw.url}/metrics`)).text());
  });
  afterAll(async () => {
    await gw?.stop();
    await redis?.stop();
  });

  const queries = [
    ...dashboardQueries().map((q) => ({ where: `${q.dashboard} / ${q.panel}`, expr: q.expr })),
    ...alertRules().map((r) => ({ where: `alert ${r.alert ?? r.record}`, expr: r.expr })),
  ];

  test('there are queries to check', () => {
    expect(queries.length).toBeGreaterThan(40);
  });

  test('every selector of every query finds a series', () => {
    const missing: string[] = [];
    for (const q of queries) {
      for (const sel of selectors(substituteGrafanaVariables(q.expr))) {
        // Recorded by our own rules (name with a colon) or made by Prometheus (`up`): not the node's.
        if (sel.name.includes(':') || sel.name === 'up') continue;
        const wanted = sel.matchers.filter((m) => !PROMETHEUS_LABELS.has(m.label));
        if (!series.some((s) => s.name === sel.name && wanted.every((m) => matches(s, m))))
          missing.push(`${q.where}: ${sel.text}`);
      }
    }
    expect(missing).toEqual([]);
  });

  test.each(Object.entries(KNOWN_LABEL_VALUES))(
    '%s starts at 0 for each known label value',
    (metric, labels) => {
      const name = series.some((s) => s.name === metric) ? metric : `${metric}_count`;
      for (const [label, values] of Object.entries(labels)) {
        for (const v of values) {
          const found = series.filter((s) => s.name === name && s.labels[label] === v);
          // One series per combination with the other labels' values.
          const others = Object.entries(labels)
            .filter(([l]) => l !== label)
            .reduce((n, [, vs]) => n * vs.length, 1);
          expect([label, v, found.length]).toEqual([label, v, others]);
        }
      }
    },
  );

  test('the selector reader finds names and matchers', () => {
    expect(selectors('sum(rate(a_total{type="publish",job="gateway"}[1m])) / sum(b)')).toEqual([
      {
        name: 'a_total',
        matchers: [
          { label: 'type', op: '=', value: 'publish' },
          { label: 'job', op: '=', value: 'gateway' },
        ],
        text: 'a_total{type="publish",job="gateway"}',
      },
      { name: 'b', matchers: [], text: 'b' },
    ]);
  });
});
