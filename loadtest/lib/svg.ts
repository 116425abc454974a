// A small dependency-free SVG line chart, enough for the two benchmark charts (latency vs delivered/s, memory vs
// connections).
import type { BenchResult } from './results';

export interface Series {
  name: string;
  color: string;
  dashed?: boolean;
  points: Array<[number, number]>;
}

export interface ChartSpec {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  yLog?: boolean;
  width?: number;
  height?: number;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceTicks(min: number, max: number, count = 5): number[] {
  const span = max - min || 1;
  const step0 = span / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? 10 * mag;
  const ticks: number[] = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step)
    ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

function label(n: number): string {
  if (n >= 1e6) return `${n / 1e6}M`;
  if (n >= 1e3) return `${n / 1e3}k`;
  return String(n);
}

export function lineChart(spec: ChartSpec): string {
  // Legend: two entries a row when the names are short, one a row otherwise.
  const perRow = spec.series.every((s) => s.name.length <= 34) ? 2 : 1;
  const legendRows = Math.ceil(spec.series.length / perRow);
  const W = spec.width ?? 720;
  const H = (spec.height ?? 420) + Math.max(0, legendRows - 2) * 16;
  const m = { l: 70, r: 20, t: 40, b: 56 + legendRows * 16 };
  const pts = spec.series
    .flatMap((s) => s.points)
    .filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
  const xMax = Math.max(1, ...pts.map(([x]) => x)) * 1.05;
  const xTicks = niceTicks(0, xMax);
  const xHi = Math.max(xMax, xTicks[xTicks.length - 1] ?? xMax);
  let yTicks: number[];
  let yOf: (y: number) => number;
  const plotH = H - m.t - m.b;
  const plotW = W - m.l - m.r;
  if (spec.yLog) {
    const ys = pts.map(([, y]) => Math.max(y, 0.01));
    const lo = Math.floor(Math.log10(Math.min(1, ...ys)));
    const hi = Math.ceil(Math.log10(Math.max(10, ...ys)));
    yTicks = [];
    for (let e = lo; e <= hi; e++) yTicks.push(10 ** e);
    yOf = (y) => m.t + plotH - ((Math.log10(Math.max(y, 10 ** lo)) - lo) / (hi - lo)) * plotH;
  } else {
    const yMax = Math.max(1, ...pts.map(([, y]) => y)) * 1.1;
    yTicks = niceTicks(0, yMax);
    const yHi = Math.max(yMax, yTicks[yTicks.length - 1] ?? yMax);
    yOf = (y) => m.t + plotH - (y / yHi) * plotH;
  }
  const xOf = (x: number) => m.l + (x / xHi) * plotW;

  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(spec.title)}</text>`,
  );
  for (const t of yTicks) {
    const y = yOf(t).toFixed(1);
    out.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${y}" y2="${y}" stroke="#e4e4e4"/>`);
    out.push(`<text x="${m.l - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${label(t)}</text>`);
  }
  for (const t of xTicks) {
    const x = xOf(t).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${m.t}" y2="${H - m.b}" stroke="#f0f0f0"/>`);
    out.push(`<text x="${x}" y="${H - m.b + 16}" text-anchor="middle">${label(t)}</text>`);
  }
  out.push(`<rect x="${m.l}" y="${m.t}" width="${plotW}" height="${plotH}" fill="none" stroke="#888"/>`);
  out.push(
    `<text x="${m.l + plotW / 2}" y="${H - m.b + 36}" text-anchor="middle">${esc(spec.xLabel)}</text>`,
  );
  out.push(
    `<text transform="translate(16 ${m.t + plotH / 2}) rotate(-90)" text-anchor="middle">${esc(spec.yLabel)}</text>`,
  );
  spec.series.forEach((s, i) => {
    const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    if (p.length > 0) {
      const d = p
        .map(([x, y], j) => `${j === 0 ? 'M' : 'L'}${xOf(x).toFixed(1)},${yOf(y).toFixed(1)}`)
        .join(' ');
      const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
      out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"${dash}/>`);
      for (const [x, y] of p)
        out.push(`<circle cx="${xOf(x).toFixed(1)}" cy="${yOf(y).toFixed(1)}" r="3" fill="${s.color}"/>`);
    }
    const lx = m.l + (i % perRow) * (plotW / 2);
    const ly = H - m.b + 56 + Math.floor(i / perRow) * 16;
    const dash = s.dashed ? ' stroke-dasharray="6 4"' : '';
    out.push(
      `<line x1="${lx}" x2="${lx + 24}" y1="${ly}" y2="${ly}" stroke="${s.color}" stroke-width="2"${dash}/>`,
    );
    out.push(`<text x="${lx + 30}" y="${ly}" dominant-baseline="middle">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

const COLORS = { relay: '#1f77b4', socketio: '#d62728', floor: '#7f7f7f', local: '#2ca02c' };

/** p50 and p99 latency against delivered messages per second, per fanout step. */
export function latencyChart(r: BenchResult): string {
  const series: Series[] = [];
  for (const s of r.systems) {
    const pts = s.fanout.map((p) => [p.deliveredPerSec, p] as const);
    series.push({
      name: `${s.label} p99`,
      color: COLORS[s.system],
      points: pts.map(([x, p]) => [x, p.p99Ms]),
    });
    series.push({
      name: `${s.label} p50`,
      color: COLORS[s.system],
      dashed: true,
      points: pts.map(([x, p]) => [x, p.p50Ms]),
    });
  }
  return lineChart({
    title: `Fanout latency vs deliveries/s${r.quick ? ' (quick run)' : ''}`,
    xLabel: 'deliveries per second (all receivers)',
    yLabel: 'end-to-end latency, ms (log)',
    yLog: true,
    series,
  });
}

/** Server node RSS against idle connections on one node (the first point is the node before any connection). */
export function memoryChart(r: BenchResult): string {
  const series: Series[] = r.systems.map((s) => ({
    name: `${s.label}, one node`,
    color: COLORS[s.system],
    points: [
      [0, (s.idle[0]?.rssBaseBytes ?? 0) / 2 ** 20] as [number, number],
      ...s.idle.map((l) => [l.connections, l.rssBytes / 2 ** 20] as [number, number]),
    ],
  }));
  return lineChart({
    title: `Server memory vs idle connections${r.quick ? ' (quick run)' : ''}`,
    xLabel: 'idle authenticated connections on the node',
    yLabel: 'RSS, MiB',
    series,
  });
}
