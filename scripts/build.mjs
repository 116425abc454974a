// Bundles the gateway, the load generator entry points and the web page into dist/.
// Dependencies stay external (node_modules is shipped beside dist/), so the output is small and debuggable.
import { build } from 'esbuild';
import { cpSync, existsSync, readdirSync } from 'node:fs';

const node = {
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
};

await build({ ...node, entryPoints: ['services/gateway/src/main.ts'], outdir: 'dist/gateway' });

const loadtest = existsSync('loadtest')
  ? readdirSync('loadtest')
      .filter((f) => f.endsWith('.ts'))
      .map((f) => `loadtest/${f}`)
  : [];
if (loadtest.length > 0) await build({ ...node, entryPoints: loadtest, outdir: 'dist/loadtest' });

if (existsSync('web/src/main.ts')) {
  await build({
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2020',
    minify: true,
    sourcemap: true,
    entryPoints: ['web/src/main.ts'],
    outfile: 'dist/web/app.js',
    logLevel: 'warning',
  });
}
if (existsSync('web/public')) cpSync('web/public', 'dist/web', { recursive: true });
