// k6/ws on a worker thread: ws.connect blocks, as in k6, while the main thread does the networking. Events arrive
// through the worker's MessagePort; the main thread bumps signal[slot] after each so this loop can sleep in
// Atomics.wait until an event or its next timer is due.
import { receiveMessageOnPort } from 'node:worker_threads';
import { port, signal, slot } from './runtime.js';

let nextId = 1;

function connect(url, params, callback) {
  const id = nextId++;
  const handlers = {};
  const timers = [];
  let open = false;
  let closed = false;
  let status = 0;
  const emit = (event, arg) => (handlers[event] || []).forEach((h) => h(arg));
  const socket = {
    on(event, handler) {
      (handlers[event] = handlers[event] || []).push(handler);
    },
    send(data) {
      port.postMessage({ op: 'send', id, data: String(data) });
    },
    close() {
      port.postMessage({ op: 'close', id });
    },
    ping() {},
    setTimeout(fn, ms) {
      timers.push({ at: Date.now() + ms, fn });
    },
    setInterval(fn, ms) {
      timers.push({ at: Date.now() + ms, fn, every: Math.max(1, ms) });
    },
  };
  callback(socket);
  port.postMessage({ op: 'connect', id, url, headers: (params && params.headers) || {} });
  while (!closed) {
    const seen = Atomics.load(signal, slot);
    let m;
    while ((m = receiveMessageOnPort(port))) {
      const ev = m.message;
      if (ev.id !== id) continue;
      if (ev.kind === 'open') {
        open = true;
        status = 101;
        emit('open');
      } else if (ev.kind === 'message') emit('message', ev.data);
      else if (ev.kind === 'error') emit('error', { error: () => ev.message });
      else if (ev.kind === 'close') {
        closed = true;
        if (!open) status = ev.status || 0;
        emit('close', ev.code);
      }
    }
    if (closed) break;
    if (open) {
      const now = Date.now();
      for (const t of timers.slice()) {
        if (t.at > now) continue;
        if (t.every) t.at += t.every;
        else timers.splice(timers.indexOf(t), 1);
        t.fn();
      }
    }
    const due = open && timers.length > 0 ? Math.min(...timers.map((t) => t.at)) - Date.now() : 1000;
    Atomics.wait(signal, slot, seen, Math.max(0, due));
  }
  return { status, url };
}

export default { connect };
