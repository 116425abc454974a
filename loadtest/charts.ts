// Re-renders the benchmark charts from a results file, without running anything:
//   node dist/loadtest/charts.js [bench-results/latest.json] [--docs]
// writes latency.svg and memory.svg beside the results file (and into docs/ with --docs).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { BenchResult } from './lib/results';
import { latencyChart, memoryChart } from './lib/svg';

const args = process.argv.slice(2);
const file = resolve(args.find((a) => !a.startsWith('--')) ?? 'bench-results/latest.json');
const result = JSON.parse(readFileSync(file, 'utf8')) as BenchResult;
const targets = [
  { dir: dirname(file), prefix: '' },
  ...(args.includes('--docs') ? [{ dir: resolve('docs'), prefix: 'bench-' }] : []),
];
for (const { dir, prefix } of targets) {
  writeFileSync(join(dir, `${prefix}latency.svg`), latencyChart(result));
  writeFileSync(join(dir, `${prefix}memory.svg`), memoryChart(result));
  console.log(`charts written to ${dir}`);
}
