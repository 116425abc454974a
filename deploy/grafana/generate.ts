// Regenerates the dashboard JSON and the Kubernetes copies of the dashboards and alert rules:
//   npx esbuild deploy/grafana/generate.ts --bundle --platform=node --format=esm | node --input-type=module
// Run it from the repository root after editing deploy/grafana/src/*.ts or deploy/prometheus/alerts.yml;
// test/deploy/generated.test.ts fails until the output is committed.
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { renderAll } from './src/render';

const root = process.cwd();
const files = renderAll(root);
for (const file of files) {
  mkdirSync(dirname(file.path), { recursive: true });
  writeFileSync(file.path, file.content);
  console.log(`wrote ${file.path}`);
}
// Keep the YAML in the repository's formatting (`npm run format:check` covers it); JSON is prettier-ignored.
const yaml = files.filter((f) => f.path.endsWith('.yaml')).map((f) => f.path);
execFileSync('node_modules/.bin/prettier', ['--log-level', 'warn', '--write', ...yaml], { stdio: 'inherit' });
