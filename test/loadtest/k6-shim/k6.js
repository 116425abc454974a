import { metric } from './runtime.js';

// As in k6: every condition of a check adds one sample to the built-in `checks` rate.
export function check(value, sets) {
  let ok = true;
  for (const name of Object.keys(sets)) {
    const passed = Boolean(sets[name](value));
    metric('rate', 'checks', passed, { check: name });
    if (!passed) ok = false;
  }
  return ok;
}

export function sleep(seconds) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, seconds * 1000);
}
