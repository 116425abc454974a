// Shared by the deploy checks: where the files are, the metric names the gateway exports, and a small PromQL
// reader (metric names in an expression; the operands of comparisons and set operators, for evaluating alert
// expressions without their thresholds).
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { load, loadAll } from 'js-yaml';
import client from 'prom-client';
import type { Dashboard, Panel, RowPanel } from '@grafana/schema';
import { dashboards } from '../../deploy/grafana/src/index';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const read = (rel: string): string => readFileSync(join(ROOT, rel), 'utf8');
export const readYaml = (rel: string): unknown => load(read(rel), { filename: rel });
export const readYamlAll = (rel: string): unknown[] =>
  loadAll(read(rel), null, { filename: rel }).filter((d) => d !== null && d !== undefined);

/** Every file under `dir` (relative to the root) whose name ends with one of `exts`, sorted. */
export function filesUnder(dir: string, exts: string[]): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const entry of readdirSync(join(ROOT, rel), { withFileTypes: true })) {
      const path = `${rel}/${entry.name}`;
      if (entry.isDirectory()) walk(path);
      else if (exts.some((e) => entry.name.endsWith(e))) out.push(path);
    }
  };
  walk(dir);
  return out.sort();
}

/**
 * The gateway's own metrics, as fixed for dashboards and alerts (docs/OPERATIONS.md explains each). Histograms
 * expand to _bucket, _sum and _count.
 */
export const GATEWAY_METRICS: Record<string, 'counter' | 'gauge' | 'histogram'> = {
  gateway_connections: 'gauge',
  gateway_connections_opened_total: 'counter',
  gateway_connections_closed_total: 'counter',
  gateway_upgrades_rejected_total: 'counter',
  gateway_auth_failures_total: 'counter',
  gateway_rooms: 'gauge',
  gateway_messages_in_total: 'counter',
  gateway_messages_out_total: 'counter',
  gateway_bytes_in_total: 'counter',
  gateway_bytes_out_total: 'counter',
  gateway_delivery_latency_seconds: 'histogram',
  gateway_redis_command_duration_seconds: 'histogram',
  gateway_redis_errors_total: 'counter',
  gateway_pubsub_channels: 'gauge',
  gateway_backpressure_events_total: 'counter',
  gateway_slow_consumers: 'gauge',
  gateway_rate_limited_total: 'counter',
  gateway_recoveries_total: 'counter',
  gateway_error_replies_total: 'counter',
  gateway_ready: 'gauge',
  gateway_draining: 'gauge',
  gateway_hook_calls_total: 'counter',
  gateway_hook_errors_total: 'counter',
  gateway_hook_duration_seconds: 'histogram',
  gateway_webhooks_recorded_total: 'counter',
  gateway_webhook_deliveries_total: 'counter',
  gateway_webhook_duration_seconds: 'histogram',
};

function seriesNames(name: string, type: string): string[] {
  return type === 'histogram' ? [`${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
}

/** Series names prom-client's collectDefaultMetrics exports on this Node.js (process_*, nodejs_*). */
export async function defaultMetricNames(): Promise<string[]> {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const metrics = await registry.getMetricsAsJSON();
  registry.clear();
  return metrics.flatMap((m) => seriesNames(m.name, String(m.type)));
}

/** Names an expression may use: the gateway's, prom-client's defaults, Prometheus' own `up`, recorded rules. */
export async function knownSeriesNames(): Promise<Set<string>> {
  const names = new Set<string>(['up']);
  for (const [name, type] of Object.entries(GATEWAY_METRICS))
    for (const s of seriesNames(name, type)) names.add(s);
  for (const s of await defaultMetricNames()) names.add(s);
  for (const rule of alertRules()) if (rule.record) names.add(rule.record);
  return names;
}

// ---------------------------------------------------------------------------------------------------------------
// PromQL

const KEYWORDS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'bool',
  'and',
  'or',
  'unless',
  'offset',
  'atan2',
  'inf',
  'nan',
]);
const LABEL_LIST_KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);

/** Grafana's template variables, replaced by values that make a valid PromQL expression. */
export function substituteGrafanaVariables(expr: string, rangeInterval = '1m'): string {
  return expr
    .replace(/\$__rate_interval|\$\{__rate_interval\}/g, rangeInterval)
    .replace(/\$__interval|\$\{__interval\}/g, rangeInterval)
    .replace(/\$__range|\$\{__range\}/g, rangeInterval)
    .replace(/\$\{?node\}?/g, '.*');
}

interface Token {
  kind: 'ident' | 'number' | 'string' | 'punct' | 'group';
  text: string;
  start: number;
}

/** Tokens at the top level of `expr`; (), {} and [] groups come back whole as one 'group' token. */
function tokenize(expr: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const start = i;
    if (c === '"' || c === "'" || c === '`') {
      i++;
      while (i < expr.length && expr[i] !== c) i += expr[i] === '\\' ? 2 : 1;
      i++;
      out.push({ kind: 'string', text: expr.slice(start, i), start });
    } else if ('({['.includes(c)) {
      const close = { '(': ')', '{': '}', '[': ']' }[c]!;
      let depth = 0;
      for (; i < expr.length; i++) {
        const d = expr[i]!;
        if (d === '"' || d === "'") {
          i++;
          while (i < expr.length && expr[i] !== d) i += expr[i] === '\\' ? 2 : 1;
        } else if (d === c) depth++;
        else if (d === close && --depth === 0) break;
      }
      i++;
      out.push({ kind: 'group', text: expr.slice(start, i), start });
    } else if (/[0-9.]/.test(c)) {
      const m = /^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?([smhdwy]+)?/.exec(expr.slice(i))!;
      i += m[0].length || 1;
      out.push({ kind: 'number', text: expr.slice(start, i), start });
    } else if (/[a-zA-Z_:]/.test(c)) {
      const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i))!;
      i += m[0].length;
      out.push({ kind: 'ident', text: m[0], start });
    } else if (c === '$') {
      const m = /^\$(\{[^}]*\}|\w+)/.exec(expr.slice(i));
      i += m ? m[0].length : 1;
      out.push({ kind: 'string', text: expr.slice(start, i), start });
    } else {
      const m = /^(==|!=|>=|<=|=~|!~|[-+*/%^><,=])/.exec(expr.slice(i));
      i += m ? m[0].length : 1;
      out.push({ kind: 'punct', text: expr.slice(start, i), start });
    }
  }
  return out;
}

/** Metric names an expression selects (by bare name or by {__name__="..."}). */
export function metricNames(expr: string): string[] {
  const names = new Set<string>();
  const visit = (text: string) => {
    const tokens = tokenize(text);
    for (let k = 0; k < tokens.length; k++) {
      const t = tokens[k]!;
      const next = tokens[k + 1];
      if (t.kind === 'group') {
        if (t.text.startsWith('(')) visit(t.text.slice(1, -1));
        else if (t.text.startsWith('{')) {
          const m = /__name__\s*=\s*"([^"]+)"/.exec(t.text);
          if (m) names.add(m[1]!);
        }
        continue;
      }
      if (t.kind !== 'ident') continue;
      const word = t.text;
      if (LABEL_LIST_KEYWORDS.has(word)) {
        if (next?.kind === 'group' && next.text.startsWith('(')) k++; // the label list
        continue;
      }
      if (word === 'offset') {
        k++;
        continue;
      }
      if (KEYWORDS.has(word.toLowerCase())) continue;
      if (next?.kind === 'group' && next.text.startsWith('(')) continue; // a function call; its group is visited next
      names.add(word);
    }
  };
  visit(expr);
  return [...names];
}

const COMPARISON = new Set(['==', '!=', '>', '<', '>=', '<=']);
const SET_OPERATORS = new Set(['and', 'or', 'unless']);

/**
 * The parts of an expression worth evaluating on their own: the operands of top-level comparisons and set
 * operators (recursively through parentheses), absent(x) replaced by x, and only those that select a metric.
 * `up == 0` gives [`up`]; `a > 1 and on() (b < 2)` gives [`a`, `b`]; an expression without either gives itself.
 */
export function operands(expr: string): string[] {
  const tokens = tokenize(expr);
  const parts: string[] = [];
  let from = 0;
  let k = 0;
  while (k < tokens.length) {
    const t = tokens[k]!;
    const isOp =
      (t.kind === 'punct' && COMPARISON.has(t.text)) || (t.kind === 'ident' && SET_OPERATORS.has(t.text));
    if (!isOp) {
      k++;
      continue;
    }
    parts.push(expr.slice(from, t.start));
    k++;
    // Modifiers: bool, on(...)/ignoring(...), group_left(...)/group_right(...).
    while (k < tokens.length) {
      const m = tokens[k]!;
      if (m.kind === 'ident' && m.text === 'bool') k++;
      else if (m.kind === 'ident' && LABEL_LIST_KEYWORDS.has(m.text)) {
        k++;
        if (tokens[k]?.kind === 'group' && tokens[k]!.text.startsWith('(')) k++;
      } else break;
    }
    from = k < tokens.length ? tokens[k]!.start : expr.length;
  }
  parts.push(expr.slice(from));
  const out: string[] = [];
  for (const raw of parts) {
    const part = raw.trim();
    const toks = tokenize(part);
    const whole = toks.length === 1 && toks[0]!.kind === 'group' && part.startsWith('(');
    const absent =
      toks.length === 2 &&
      toks[0]!.kind === 'ident' &&
      /^absent(_over_time)?$/.test(toks[0]!.text) &&
      toks[1]!.kind === 'group';
    if (whole) out.push(...operands(part.slice(1, -1)));
    else if (absent) out.push(...operands(toks[1]!.text.slice(1, -1).replace(/\[[^\]]*\]\s*$/, '')));
    else if (metricNames(part).length > 0) out.push(part);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Where the expressions are

export interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function alertRules(): Rule[] {
  const doc = readYaml('deploy/prometheus/alerts.yml') as { groups: Array<{ name: string; rules: Rule[] }> };
  return doc.groups.flatMap((g) => g.rules);
}

export interface DashboardQuery {
  dashboard: string;
  panel: string;
  expr: string;
}

function panelsOf(d: Dashboard): Panel[] {
  const out: Panel[] = [];
  for (const p of d.panels ?? []) {
    if (p.type === 'row') out.push(...((p as RowPanel).panels ?? []));
    else out.push(p as Panel);
  }
  return out;
}

/** Every PromQL expression in the dashboards: panel targets and query variables (label_values(selector, l)). */
export function dashboardQueries(): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  for (const [file, d] of Object.entries(dashboards)) {
    for (const p of panelsOf(d)) {
      for (const t of p.targets ?? []) {
        if (typeof t.expr === 'string') out.push({ dashboard: file, panel: p.title ?? '?', expr: t.expr });
      }
    }
    for (const v of d.templating?.list ?? []) {
      if (v.type !== 'query') continue;
      const q = typeof v.query === 'string' ? v.query : String((v.query as { query?: unknown })?.query ?? '');
      const lv = /^label_values\(\s*(.+?)\s*,\s*\w+\s*\)$/.exec(q);
      out.push({ dashboard: file, panel: `variable ${v.name}`, expr: lv ? lv[1]! : q });
    }
  }
  return out;
}
