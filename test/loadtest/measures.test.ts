// The measuring parts of the load generator, without sockets: the histogram's percentiles and merging, the
// sequence window's distinct/duplicate/missing counts, /proc sampling, and the report's ratios and charts.
import fc from 'fast-check';
import { Histogram } from '../../loadtest/lib/histogram';
import { SeqWindow } from '../../loadtest/lib/seq';
import { roomMembers, type Layout } from '../../loadtest/lib/ipc';
import { sampleProc } from '../../loadtest/lib/proc';
import { ratio, tableRows } from '../../loadtest/lib/report';
import { idleSlope, type BenchResult, type IdleLevel, type SystemResult } from '../../loadtest/lib/results';
import { lineChart } from '../../loadtest/lib/svg';

describe('Histogram', () => {
  test('percentiles are within 1% of the exact order statistic', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 50_000_000 }), { minLength: 1, maxLength: 500 }),
        (values) => {
          const h = new Histogram();
          for (const v of values) h.record(v);
          const sorted = [...values].sort((a, b) => a - b);
          for (const q of [0.5, 0.9, 0.99, 1]) {
            const exact = sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
            const got = h.quantile(q);
            expect(got).toBeGreaterThanOrEqual(exact * 0.99);
            expect(got).toBeLessThanOrEqual(exact * 1.0101);
          }
          expect(h.max).toBe(sorted[sorted.length - 1]);
        },
      ),
    );
  });

  test('merging serialized histograms equals recording everything in one', () => {
    const a = new Histogram();
    const b = new Histogram();
    const all = new Histogram();
    for (let i = 1; i <= 1000; i++) {
      (i % 3 === 0 ? a : b).record(i * 37);
      all.record(i * 37);
    }
    const merged = Histogram.from(JSON.parse(JSON.stringify(a.toJSON())));
    merged.merge(JSON.parse(JSON.stringify(b.toJSON())));
    expect(merged.toJSON()).toEqual(all.toJSON());
    expect(merged.quantile(0.99)).toBe(all.quantile(0.99));
  });
});

describe('SeqWindow', () => {
  test('counts each number once, in any order, and reports what is missing', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 200 }), { maxLength: 400 }), (seqs) => {
        const w = new SeqWindow();
        let fresh = 0;
        for (const s of seqs) if (w.see(s)) fresh += 1;
        const distinct = new Set(seqs);
        expect(fresh).toBe(distinct.size);
        expect(w.missing(200)).toBe(200 - distinct.size);
      }),
    );
  });
});

describe('roomMembers', () => {
  test('counts the members of a room, the last one partial, less the connections that failed', () => {
    const l = { roomSize: 5, total: 12 } as Layout;
    expect(roomMembers(l, 0)).toBe(5);
    expect(roomMembers(l, 7)).toBe(5);
    expect(roomMembers(l, 11)).toBe(2);
    expect(roomMembers(l, 6, new Set([5, 9, 10]))).toBe(3);
    expect(roomMembers(l, 10, new Set([10]))).toBe(1);
  });
});

describe('sampleProc', () => {
  test('reads CPU seconds and RSS of a live process', () => {
    const before = sampleProc(process.pid);
    let x = 0;
    const until = Date.now() + 60;
    while (Date.now() < until) x += Math.sqrt(x + 1);
    const after = sampleProc(process.pid);
    expect(after.rssBytes).toBeGreaterThan(10 * 2 ** 20);
    expect(after.cpuSeconds).toBeGreaterThanOrEqual(before.cpuSeconds);
    expect(after.cpuSeconds - before.cpuSeconds).toBeLessThan(5);
    expect(x).toBeGreaterThan(0);
  });
});

describe('report', () => {
  test('ratio says which way relay compares and by how much', () => {
    expect(ratio(2, 12, 'lower')).toBe('6.0× less');
    expect(ratio(500, 100, 'higher')).toBe('5.0× more');
    expect(ratio(10, 5, 'lower')).toBe('2.0× more (worse)');
    expect(ratio(undefined, 5, 'lower')).toBe('—');
    expect(ratio(0, 5, 'lower')).toBe('—');
    expect(ratio(993, 990, 'higher')).toBe('about the same');
  });

  test('the idle slope is settled RSS between the first and last levels, projected from the first to 100k', () => {
    const MiB = 2 ** 20;
    const level = (connections: number, rssBytes: number): IdleLevel => ({
      connections,
      failed: 0,
      rssBaseBytes: 70 * MiB,
      rssBytes,
      bytesPerConnection: 0,
      connectRate: 0,
      connectP99Ms: 0,
    });
    // 2 KiB more per connection from 5k to 19k (the level between does not count); 100 MiB + 2 KiB × 95k at 100k.
    const s = idleSlope([
      level(5000, 100 * MiB),
      level(10000, 130 * MiB),
      level(19000, 100 * MiB + 14000 * 2048),
    ])!;
    expect(s.fromConnections).toBe(5000);
    expect(s.toConnections).toBe(19000);
    expect(s.bytesPerConnection).toBeCloseTo(2048, 6);
    expect(s.projected100kBytes).toBeCloseTo(100 * MiB + 2048 * 95000, 3);
    expect(idleSlope([level(2000, 100 * MiB)])).toBeUndefined();
  });

  test('the table has the storms with relaychat ratios to Socket.IO and the floor', () => {
    const sys = (system: SystemResult['system'], serverMs: number, seconds: number): SystemResult => ({
      system,
      label: system,
      idle: [],
      fanout: [],
      problems: [],
      connect: {
        connections: 1000,
        rooms: 100,
        failed: 0,
        rate: 1 / serverMs,
        joinP99Ms: 10,
        seconds: 1,
        serverCpuMsPerConnection: serverMs,
        redisCpuMsPerConnection: 0.1,
      },
      reconnect: {
        clients: 500,
        failed: 0,
        unrecovered: 0,
        seconds,
        rejoinP99Ms: 10,
        survivorCpuMsPerReconnect: serverMs,
        traffic: {
          expected: 200,
          lost: system === 'relay' ? 0 : 5,
          duplicates: 0,
          publishErrors: 0,
        } as never,
      },
    });
    const result = {
      config: {},
      references: { localFanout: [] },
      systems: [sys('relay', 0.6, 1), sys('socketio', 1.2, 2), sys('floor', 0.2, 0.5)],
    } as unknown as BenchResult;
    const rows = tableRows(result);
    const row = (start: string) => rows.find((r) => r[0].startsWith(start))!;
    expect(row('  server CPU per connect + join').slice(1)).toEqual([
      '0.600',
      '1.200',
      '0.200',
      '2.0× less',
      '3.0× more (worse)',
    ]);
    expect(row('reconnect storm, 500 clients').slice(4)).toEqual(['2.0× less', '2.0× more (worse)']);
    expect(row('  messages sent meanwhile').slice(1, 4)).toEqual([
      '0 / 0 of 200',
      '5 / 0 of 200',
      '5 / 0 of 200',
    ]);
    expect(rows.some((r) => r[0].startsWith('fanout'))).toBe(false);
  });

  test('charts are SVG with one path per non-empty series', () => {
    const svg = lineChart({
      title: 'a <b>',
      xLabel: 'x',
      yLabel: 'y',
      yLog: true,
      series: [
        {
          name: 'one',
          color: '#000',
          points: [
            [1000, 2],
            [5000, 40],
          ],
        },
        { name: 'two', color: '#f00', dashed: true, points: [[1000, 5]] },
        { name: 'none', color: '#0f0', points: [] },
      ],
    });
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    expect(svg.match(/<path /g)).toHaveLength(2);
    expect(svg).toContain('a &lt;b&gt;');
    expect(svg).not.toContain('NaN');
  });
});
