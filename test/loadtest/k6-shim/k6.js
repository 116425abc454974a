export function check(value, sets) {
  let ok = true;
  for (const name of Object.keys(sets)) if (!sets[name](value)) ok = false;
  return ok;
}

export function sleep(seconds) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, seconds * 1000);
}
