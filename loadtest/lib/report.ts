// Turns a BenchResult into the one comparison table, as aligned text for the terminal and as Markdown: one column
// per system (relaychat, Socket.IO, the floor) and relaychat's ratio to Socket.IO and to the floor on each figure.
import type { BenchResult, PhaseSummary, SystemResult } from './results';

type Better = 'lower' | 'higher';
/** Figure, relaychat, Socket.IO, floor, relaychat vs Socket.IO, relaychat vs floor. */
type Row = [string, string, string, string, string, string];
/** A row of the JSON vs MessagePack table: figure, JSON, MessagePack, comparison. */
type EncodingRow = [string, string, string, string];

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

/** "lost / duplicates" of a phase, optionally "of" the deliveries expected, and the refused publishes. */
const lostText = (p?: PhaseSummary, ofExpected = false) =>
  p
    ? `${num(p.lost)} / ${num(p.duplicates)}${ofExpected ? ` of ${num(p.expected)}` : ''}` +
      (p.publishErrors ? ` (${num(p.publishErrors)} errors)` : '')
    : '—';

/** A row of one figure: the three systems' values and relaychat's ratio to the other two. */
function figure(
  title: string,
  v: [number | undefined, number | undefined, number | undefined],
  fmt: (n: number | undefined) => string,
  better?: Better,
  note?: string,
): Row {
  const r = (x: number | undefined) => {
    if (!better) return '';
    const out = ratio(v[0], x, better);
    return note ? withNote(out, note) : out;
  };
  return [title, fmt(v[0]), fmt(v[1]), fmt(v[2]), r(v[1]), r(v[2])];
}

function phaseRows(
  title: string,
  a: PhaseSummary | undefined,
  b: PhaseSummary | undefined,
  f: PhaseSummary | undefined,
): Row[] {
  const lat = (p?: PhaseSummary) => (p ? `${ms(p.p50Ms)} / ${ms(p.p99Ms)} / ${ms(p.maxMs)}` : '—');
  const p99 = (x?: PhaseSummary, y?: PhaseSummary) => withNote(ratio(x?.p99Ms, y?.p99Ms, 'lower'), 'p99');
  return [
    figure(
      `${title}: delivered/s`,
      [a?.deliveredPerSec, b?.deliveredPerSec, f?.deliveredPerSec],
      num,
      'higher',
    ),
    ['  latency p50 / p99 / max, ms', lat(a), lat(b), lat(f), p99(a, b), p99(a, f)],
    ['  lost / duplicates', lostText(a), lostText(b), lostText(f), '', ''],
    figure(
      '  server CPU per delivery, µs',
      [a?.serverCpuUsPerDelivery, b?.serverCpuUsPerDelivery, f?.serverCpuUsPerDelivery],
      (n) => num(n, 2),
      'lower',
    ),
    ['  cores used: servers / Redis / generators / others', cores(a), cores(b), cores(f), '', ''],
    figure(
      '  Redis CPU per publish, µs',
      [a?.redisCpuUsPerPublish, b?.redisCpuUsPerPublish, f?.redisCpuUsPerPublish],
      (n) => num(n, 1),
      'lower',
    ),
  ];
}

/** The connect + join storm and the reconnect storm (one node killed) of the three systems. */
function stormRows(
  all: readonly [SystemResult | undefined, SystemResult | undefined, SystemResult | undefined],
): Row[] {
  const each = <T>(pick: (s: SystemResult) => T | undefined) =>
    all.map((s) => (s ? pick(s) : undefined)) as [T | undefined, T | undefined, T | undefined];
  const rows: Row[] = [];
  const c = all.find((s) => s?.connect)?.connect;
  if (c)
    rows.push(
      figure(
        `connect + join storm, ${num(c.connections)} conns into ${num(c.rooms)} rooms (2 nodes): conns/s`,
        each((s) => s.connect?.rate),
        (x) => num(x),
        'higher',
      ),
      figure(
        '  connect → join reply p99, ms',
        each((s) => s.connect?.joinP99Ms),
        ms,
        'lower',
      ),
      figure(
        '  server CPU per connect + join (both nodes), ms',
        each((s) => s.connect?.serverCpuMsPerConnection),
        (x) => num(x, 3),
        'lower',
      ),
      figure(
        '  Redis CPU per connection, ms',
        each((s) => s.connect?.redisCpuMsPerConnection),
        (x) => num(x, 3),
        'lower',
      ),
    );
  const rc = all.find((s) => s?.reconnect)?.reconnect;
  if (rc)
    rows.push(
      figure(
        `reconnect storm, ${num(rc.clients)} clients of a killed node: s until all back and joined (relaychat: recovered)`,
        each((s) => s.reconnect?.seconds),
        (x) => num(x, 2),
        'lower',
      ),
      figure(
        '  reconnect → join reply p99, ms',
        each((s) => s.reconnect?.rejoinP99Ms),
        ms,
        'lower',
      ),
      figure(
        '  surviving node CPU per reconnect, ms',
        each((s) => s.reconnect?.survivorCpuMsPerReconnect),
        (x) => num(x, 3),
        'lower',
      ),
      [
        '  messages sent meanwhile: lost / duplicates',
        ...all.map((s) => lostText(s?.reconnect?.traffic, true)),
        '',
        '',
      ] as Row,
    );
  return rows;
}

export function tableRows(r: BenchResult): Row[] {
  const relay: SystemResult | undefined = r.systems.find((s) => s.system === 'relay');
  const sio: SystemResult | undefined = r.systems.find((s) => s.system === 'socketio');
  const floor: SystemResult | undefined = r.systems.find((s) => s.system === 'floor');
  const all = [relay, sio, floor] as const;
  const rows: Row[] = [
    [
      'Figure',
      relay?.label ?? 'relaychat',
      sio?.label ?? 'Socket.IO',
      floor?.label ?? 'floor',
      'relaychat vs Socket.IO',
      'relaychat vs floor',
    ],
  ];
  const each = <T>(pick: (s: SystemResult | undefined) => T) => all.map(pick) as [T, T, T];

  const levels = [...new Set(all.flatMap((s) => s?.idle ?? []).map((l) => l.connections))].sort(
    (x, y) => x - y,
  );
  for (const n of levels) {
    const at = (s?: SystemResult) => s?.idle.find((l) => l.connections === n);
    rows.push(
      figure(
        `idle ${num(n)} conns (1 node): memory per conn, KB`,
        each((s) => {
          const l = at(s);
          return l ? l.bytesPerConnection / 1024 : undefined;
        }),
        (x) => num(x, 2),
        'lower',
      ),
    );
    rows.push(
      figure(
        '  node RSS, MB',
        each((s) => {
          const l = at(s);
          return l ? l.rssBytes / 2 ** 20 : undefined;
        }),
        (x) => num(x, 0),
      ),
    );
  }
  const slope = all.find((s) => s?.idleSlope)?.idleSlope;
  if (slope) {
    rows.push(
      figure(
        `idle RSS slope ${num(slope.fromConnections)} → ${num(slope.toConnections)} conns, KB per conn`,
        each((s) => (s?.idleSlope ? s.idleSlope.bytesPerConnection / 1024 : undefined)),
        (x) => num(x, 2),
        'lower',
      ),
      figure(
        '  projected RSS at 100k conns, MB',
        each((s) => (s?.idleSlope ? s.idleSlope.projected100kBytes / 2 ** 20 : undefined)),
        (x) => num(x, 0),
        'lower',
      ),
    );
  }
  const first = (s?: SystemResult) => s?.idle[0];
  const firstN = all.map((s) => first(s)?.connections).find((x) => x !== undefined);
  if (firstN !== undefined) {
    rows.push(
      figure(
        `connect rate, conns/s (first ${num(firstN)})`,
        each((s) => first(s)?.connectRate),
        (x) => num(x),
        'higher',
      ),
    );
    rows.push(
      figure(
        '  connect p99, ms',
        each((s) => first(s)?.connectP99Ms),
        ms,
        'lower',
      ),
    );
  }

  rows.push(...stormRows(all));

  const rates = [...new Set(all.flatMap((s) => s?.fanout ?? []).map((p) => p.rate))].sort((x, y) => x - y);
  const fanoutSize = (r.config.fanout as { rooms: number; subscribers: number } | undefined) ?? {
    rooms: 0,
    subscribers: 0,
  };
  for (const rate of rates) {
    const [a, b, f] = each((s) => s?.fanout.find((p) => p.rate === rate));
    rows.push(
      ...phaseRows(`fanout ${num(rate)} msg/s → ${num(rate * fanoutSize.subscribers)} deliveries/s`, a, b, f),
    );
  }
  if (rates.length > 0) {
    const best = (s?: SystemResult) =>
      s?.fanoutBest
        ? `${num(s.fanoutBest.deliveredPerSec)}/s (p99 ${ms(s.fanoutBest.p99Ms)} ms)`
        : s
          ? 'none'
          : '—';
    const bestRate = each((s) => s?.fanoutBest?.deliveredPerSec);
    rows.push([
      'fanout: highest step with p99 < 100 ms, no loss',
      best(relay),
      best(sio),
      best(floor),
      ratio(bestRate[0], bestRate[1], 'higher'),
      ratio(bestRate[0], bestRate[2], 'higher'),
    ]);
    const perCore = (s?: SystemResult) =>
      s?.fanoutBest ? s.fanoutBest.deliveredPerSec / s.fanoutBest.serverCores : undefined;
    rows.push(figure('  deliveries/s per server core at that step', each(perCore), (x) => num(x), 'higher'));
  }
  if (all.some((s) => s?.chat)) rows.push(...phaseRows('chat', relay?.chat, sio?.chat, floor?.chat));
  if (all.some((s) => s?.dm)) rows.push(...phaseRows('dm', relay?.dm, sio?.dm, floor?.dm));
  if (r.references.redisPublishOpsPerSec !== undefined || r.references.localFanout.length > 0) {
    rows.push([
      'reference: redis-benchmark PUBLISH, ops/s (-P 1 / -P 16)',
      `${num(r.references.redisPublishOpsPerSec)} / ${num(r.references.redisPublishPipelinedOpsPerSec)}`,
      '',
      '',
      '',
      '',
    ]);
    const lf = r.references.localFanoutBest;
    rows.push([
      'reference: 1 node, memory engine, best fanout step',
      lf ? `${num(lf.deliveredPerSec)}/s (p99 ${ms(lf.p99Ms)} ms)` : 'none',
      '',
      '',
      '',
      '',
    ]);
  }
  return rows;
}

/**
 * relaychat's own clients side by side: JSON and MessagePack on the same fanout and chat workloads, for the
 * bytes each delivery takes on the wire and the server CPU it costs. Empty when no MessagePack run was made.
 */
export function encodingRows(r: BenchResult): EncodingRow[] {
  const relay = r.systems.find((s) => s.system === 'relay');
  if (!relay?.msgpack) return [];
  const rows: EncodingRow[] = [['Figure', 'JSON clients', 'MessagePack clients', 'MessagePack vs JSON']];
  const pair = (title: string, a: PhaseSummary | undefined, b: PhaseSummary | undefined) => {
    if (!a && !b) return;
    rows.push(
      [
        `${title}: delivered/s`,
        num(a?.deliveredPerSec),
        num(b?.deliveredPerSec),
        ratio(b?.deliveredPerSec, a?.deliveredPerSec, 'higher'),
      ],
      [
        '  bytes on the wire per delivery',
        num(a?.wireBytesPerDelivery, 1),
        num(b?.wireBytesPerDelivery, 1),
        ratio(b?.wireBytesPerDelivery, a?.wireBytesPerDelivery, 'lower'),
      ],
      [
        '  server CPU per delivery, µs',
        num(a?.serverCpuUsPerDelivery, 2),
        num(b?.serverCpuUsPerDelivery, 2),
        ratio(b?.serverCpuUsPerDelivery, a?.serverCpuUsPerDelivery, 'lower'),
      ],
      [
        '  latency p50 / p99, ms',
        a ? `${ms(a.p50Ms)} / ${ms(a.p99Ms)}` : '—',
        b ? `${ms(b.p50Ms)} / ${ms(b.p99Ms)}` : '—',
        '',
      ],
    );
  };
  const rates = [...new Set(relay.fanout.map((p) => p.rate))].sort((x, y) => x - y);
  for (const rate of rates)
    pair(
      `fanout ${num(rate)} msg/s`,
      relay.fanout.find((p) => p.rate === rate),
      relay.msgpack.fanout.find((p) => p.rate === rate),
    );
  pair('chat', relay.chat, relay.msgpack.chat);
  return rows;
}

export function textTable(rows: readonly string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const line = (r: readonly string[]) =>
    r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  const sep = widths.map((w) => '-'.repeat(w)).join('  ');
  return [line(rows[0]!), sep, ...rows.slice(1).map(line)].join('\n');
}

export function markdownTable(rows: readonly string[][]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|').replace(/^ +/, (m) => '&nbsp;'.repeat(m.length));
  const line = (r: readonly string[]) => `| ${r.map(esc).join(' | ')} |`;
  const sep =
    rows[0]!.length === 6
      ? '| --- | ---: | ---: | ---: | --- | --- |'
      : `| --- | ${rows[0]!
          .slice(1, -1)
          .map(() => '---:')
          .join(' | ')} | --- |`;
  return [line(rows[0]!), sep, ...rows.slice(1).map(line)].join('\n');
}
