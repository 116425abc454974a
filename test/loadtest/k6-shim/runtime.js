// Worker-side runtime of the k6 shim (see ../k6-scripts.test.ts): one worker thread is one k6 VU. The globals
// k6 provides in the init context are set here, before any script module body runs.
import { readFileSync } from 'node:fs';
import { workerData } from 'node:worker_threads';

export const { port, signal, slot, vu, env, scenario } = workerData;

globalThis.__ENV = env;
globalThis.__VU = vu;
globalThis.__ITER = 0;
globalThis.open = (path) => readFileSync(path, 'utf8');

export function metric(type, name, value, tags) {
  port.postMessage({
    op: 'metric',
    type,
    name,
    value: typeof value === 'boolean' ? (value ? 1 : 0) : Number(value),
    tags,
  });
}
