// Turns a BenchResult into the one comparison table, as aligned text for the terminal and as Markdown.
import type { BenchResult, PhaseSummary, SystemResult } from './results';

type Better = 'lower' | 'higher';
type Row = [string, string, string, string];

export function num(n: number | undefined, digits = 0): string {
  if (n === undefined || !Number.isFinite(n)) return '—';
  if (Math.abs(n) >= 1e6) return `${(n / 1e6).toFixed(2)}M`;
  if (Math.abs(n) >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  return n.toFixed(digits);
}

function ms(n: number | undefined): string {
  if (n === undefined) return '—';
  return n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0);
}

/** "6.2× less" / "1.4× more": how relay compares with Socket.IO on a figure. */
export function ratio(relay: number | undefined, sio: number | undefined, better: Better): string {
  if (relay === undefined || sio === undefined || !(relay > 0) || !(sio > 0)) return '—';
  const r = better === 'lower' ? sio / relay : relay / sio;
  if (Math.abs(r - 1) < 0.05) return 'about the same';
  const word = better === 'lower' ? (r >= 1 ? 'less' : 'more') : r >= 1 ? 'more' : 'less';
  const x = r >= 1 ? r : 1 / r;
  return `${x.toFixed(x >= 10 ? 0 : 1)}× ${word}${r >= 1 ? '' : ' (worse)'}`;
}

const withNote = (r: string, note: string) => (r === '—' ? r : `${r} (${note})`);

const cores = (p?: PhaseSummary) =>
  p
    ? [p.serverCores, p.redisCores, p.generatorCores ?? NaN, p.otherCores ?? NaN]
        .map((c) => (Number.isFinite(c) ? c.toFixed(2) : '—'))
        .join(' / ')
    : '—';

function phaseRows(title: string, a: PhaseSummary | undefined, b: PhaseSummary | undefined): Row[] {
  const lat = (p?: PhaseSummary) => (p ? `${ms(p.p50Ms)} / ${ms(p.p99Ms)} / ${ms(p.maxMs)}` : '—');
  const lost = (p?: PhaseSummary) =>
    p
      ? `${num(p.lost)} / ${num(p.duplicates)}${p.publishErrors ? ` (${num(p.publishErrors)} errors)` : ''}`
      : '—';
  return [
    [
      `${title}: delivered/s`,
      num(a?.deliveredPerSec),
      num(b?.deliveredPerSec),
      ratio(a?.deliveredPerSec, b?.deliveredPerSec, 'higher'),
    ],
    ['  latency p50 / p99 / max, ms', lat(a), lat(b), withNote(ratio(a?.p99Ms, b?.p99Ms, 'lower'), 'p99')],
    ['  lost / duplicates', lost(a), lost(b), ''],
    [
      '  server CPU per delivery, µs',
      num(a?.serverCpuUsPerDelivery, 2),
      num(b?.serverCpuUsPerDelivery, 2),
      ratio(a?.serverCpuUsPerDelivery, b?.serverCpuUsPerDelivery, 'lower'),
    ],
    ['  cores used: servers / Redis / generators / others', cores(a), cores(b), ''],
    [
      '  Redis CPU per publish, µs',
      num(a?.redisCpuUsPerPublish, 1),
      num(b?.redisCpuUsPerPublish, 1),
      ratio(a?.redisCpuUsPerPublish, b?.redisCpuUsPerPublish, 'lower'),
    ],
  ];
}

export function tableRows(r: BenchResult): Row[] {
  const relay: SystemResult | undefined = r.systems.find((s) => s.system === 'relay');
  const sio: SystemResult | undefined = r.systems.find((s) => s.system === 'socketio');
  const rows: Row[] = [
    ['Figure', relay?.label ?? 'relaychat', sio?.label ?? 'Socket.IO', 'relaychat vs Socket.IO'],
  ];

  const levels = [...new Set([...(relay?.idle ?? []), ...(sio?.idle ?? [])].map((l) => l.connections))].sort(
    (x, y) => x - y,
  );
  for (const n of levels) {
    const a = relay?.idle.find((l) => l.connections === n);
    const b = sio?.idle.find((l) => l.connections === n);
    const kb = (l?: typeof a) => (l ? l.bytesPerConnection / 1024 : undefined);
    rows.push([
      `idle ${num(n)} conns (1 node): memory per conn, KB`,
      num(kb(a), 2),
      num(kb(b), 2),
      ratio(kb(a), kb(b), 'lower'),
    ]);
    const mb = (l?: typeof a) => (l ? l.rssBytes / 2 ** 20 : undefined);
    rows.push([`  node RSS, MB`, num(mb(a), 0), num(mb(b), 0), '']);
  }
  const first = (s?: SystemResult) => s?.idle[0];
  if (first(relay) || first(sio)) {
    rows.push([
      `connect rate, conns/s (first ${num(first(relay)?.connections ?? first(sio)?.connections)})`,
      num(first(relay)?.connectRate),
      num(first(sio)?.connectRate),
      ratio(first(relay)?.connectRate, first(sio)?.connectRate, 'higher'),
    ]);
    rows.push([
      '  connect p99, ms',
      ms(first(relay)?.connectP99Ms),
      ms(first(sio)?.connectP99Ms),
      ratio(first(relay)?.connectP99Ms, first(sio)?.connectP99Ms, 'lower'),
    ]);
  }

  const rates = [...new Set([...(relay?.fanout ?? []), ...(sio?.fanout ?? [])].map((p) => p.rate))].sort(
    (x, y) => x - y,
  );
  const fanoutSize = (r.config.fanout as { rooms: number; subscribers: number } | undefined) ?? {
    rooms: 0,
    subscribers: 0,
  };
  for (const rate of rates) {
    const a = relay?.fanout.find((p) => p.rate === rate);
    const b = sio?.fanout.find((p) => p.rate === rate);
    rows.push(
      ...phaseRows(`fanout ${num(rate)} msg/s → ${num(rate * fanoutSize.subscribers)} deliveries/s`, a, b),
    );
  }
  const best = (s?: SystemResult) =>
    s?.fanoutBest
      ? `${num(s.fanoutBest.deliveredPerSec)}/s (p99 ${ms(s.fanoutBest.p99Ms)} ms)`
      : s
        ? 'none'
        : '—';
  rows.push([
    'fanout: highest step with p99 < 100 ms, no loss',
    best(relay),
    best(sio),
    ratio(relay?.fanoutBest?.deliveredPerSec, sio?.fanoutBest?.deliveredPerSec, 'higher'),
  ]);
  const perCore = (s?: SystemResult) =>
    s?.fanoutBest ? s.fanoutBest.deliveredPerSec / s.fanoutBest.serverCores : undefined;
  rows.push([
    '  deliveries/s per server core at that step',
    num(perCore(relay)),
    num(perCore(sio)),
    ratio(perCore(relay), perCore(sio), 'higher'),
  ]);
  if (relay?.chat || sio?.chat) rows.push(...phaseRows('chat', relay?.chat, sio?.chat));
  if (relay?.dm || sio?.dm) rows.push(...phaseRows('dm', relay?.dm, sio?.dm));
  if (r.references.redisPublishOpsPerSec !== undefined || r.references.localFanout.length > 0) {
    rows.push([
      'reference: redis-benchmark PUBLISH, ops/s (-P 1 / -P 16)',
      `${num(r.references.redisPublishOpsPerSec)} / ${num(r.references.redisPublishPipelinedOpsPerSec)}`,
      '',
      '',
    ]);
    const lf = r.references.localFanoutBest;
    rows.push([
      'reference: 1 node, memory engine, best fanout step',
      lf ? `${num(lf.deliveredPerSec)}/s (p99 ${ms(lf.p99Ms)} ms)` : 'none',
      '',
      '',
    ]);
  }
  return rows;
}

export function textTable(rows: Row[]): string {
  const widths = [0, 1, 2, 3].map((c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: Row) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(rows[0]!), sep, ...rows.slice(1).map(line)].join('\n');
}

export function markdownTable(rows: Row[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/^ +/, (m) => '&nbsp;'.repeat(m.length));
  const line = (r: Row) => `| ${r.map(esc).join(' | ')} |`;
  return [line(rows[0]!), '| --- | ---: | ---: | --- |', ...rows.slice(1).map(line)].join('\n');
}
