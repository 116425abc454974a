// The Node version the project declares is one the uWebSockets.js build supports: package.json `engines`, the
// Dockerfile's base images and the README agree on one major version, the package declares it too, and it ships
// a native binary for that version's ABI (and for the Node running this test, which CI uses).
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

const read = (p: string) => readFileSync(p, 'utf8');
const pkg = JSON.parse(read('package.json')) as { engines: { node: string } };
const uws = JSON.parse(read('node_modules/uWebSockets.js/package.json')) as { engines?: { node?: string } };
// Node major -> the ABI (process.versions.modules) its native addons are built for.
const ABI: Record<number, number> = { 18: 108, 20: 115, 21: 120, 22: 127, 23: 131, 24: 137 };

const declared = Number(/^\^(\d+)\.0\.0$/.exec(pkg.engines.node)?.[1]);
const binaries = readdirSync('node_modules/uWebSockets.js/dist/bin');

test('engines names one major version', () => {
  expect(declared).toBeGreaterThanOrEqual(20);
});

test('the uWebSockets.js package declares that version', () => {
  const min = Number(/^>=\s*(\d+)/.exec(uws.engines?.node ?? '')?.[1] ?? 0);
  expect(declared).toBeGreaterThanOrEqual(min);
});

test.each(['linux_x64', 'linux_arm64'])('it ships a %s binary for that version (ABI)', (platform) => {
  expect(binaries).toContain(`uws_${platform}_${ABI[declared]}.node`);
});

test('it ships a binary for the Node running the tests', () => {
  expect(binaries).toContain(`uws_${process.platform}_${process.arch}_${process.versions.modules}.node`);
});

test('the Dockerfile builds and runs on that version', () => {
  const froms = [...read('Dockerfile').matchAll(/^FROM node:(\d+)-slim/gm)].map((m) => Number(m[1]));
  expect(froms).toEqual([declared, declared]);
});

test('the README states it', () => {
  expect(read(join('README.md'))).toContain(`**Node ${declared}**`);
});
