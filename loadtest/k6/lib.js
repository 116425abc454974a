// Shared helpers for the k6 scripts. They run on k6 v0.48 (the oldest supported) and the current k6 1.x: k6
// modules k6, k6/ws, k6/http, k6/crypto, k6/encoding, k6/metrics, k6/data, k6/execution only, and JavaScript no
// newer than ES2017 (no `catch {` without a binding, no `?.`, `??` or object spread: k6 v0.48 rejects them;
// test/loadtest/k6-syntax.test.ts parses every script with an ES2017 parser). Everything is configured through
// environment variables (`k6 run -e NAME=value`).
//
// Identity and tokens, in order of preference:
//   TOKENS_FILE   absolute path of a file with one JWT per line; VU n uses line n (wrapping around); the user id
//                 is the token's `sub`.
//   JWT_SECRET    HS256 secret shared with the gateway; tokens are minted here for users USER_PREFIX + VU number.
//   HTTP_URL      a gateway in dev mode (no secret configured): tokens come from POST /dev/token.
/* global open */
import http from 'k6/http';
import ws from 'k6/ws';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { SharedArray } from 'k6/data';
import { Counter, Rate, Trend } from 'k6/metrics';

export function envStr(name, fallback) {
  const v = __ENV[name];
  return v === undefined || v === '' ? fallback : v;
}

export function envNum(name, fallback) {
  const v = __ENV[name];
  if (v === undefined || v === '') return fallback;
  const n = Number(v);
  if (!isFinite(n)) throw new Error(`${name} must be a number, got "${v}"`);
  return n;
}

export const WS_URL = envStr('WS_URL', 'ws://localhost:8080/ws');
export const HTTP_URL = envStr('HTTP_URL', WS_URL.replace(/^ws/, 'http').replace(/\/ws$/, ''));
export const USER_PREFIX = envStr('USER_PREFIX', 'k6-');
export const ROOM_PREFIX = envStr('ROOM_PREFIX', 'k6-room-');
const JWT_SECRET = envStr('JWT_SECRET', '');
const JWT_TTL_S = envNum('JWT_TTL_S', 3600);
const JWT_ISSUER = envStr('JWT_ISSUER', '');
const JWT_AUDIENCE = envStr('JWT_AUDIENCE', '');
const TOKENS_FILE = envStr('TOKENS_FILE', '');

// open() is only allowed in the init context, which is where this module body runs.
const fileTokens = TOKENS_FILE
  ? new SharedArray('tokens', function () {
      return open(TOKENS_FILE)
        .split('\n')
        .map(function (l) {
          return l.trim();
        })
        .filter(function (l) {
          return l.length > 0;
        });
    })
  : null;

// Custom metrics shared by the scripts. Trends created with isTime=true are reported in milliseconds.
export const e2eLatency = new Trend('e2e_latency', true); // send timestamp in the body -> received
export const ackLatency = new Trend('ack_latency', true); // command sent -> its reply
export const welcomeTime = new Trend('welcome_time', true); // connect call -> welcome frame
export const delivery = new Rate('delivery_ratio'); // true per message received, false per message missed
export const errors = new Rate('errors'); // per session: refused, never ready or lost; and every error reply
export const duplicates = new Counter('duplicates');
export const received = new Counter('messages_received');
export const sent = new Counter('messages_sent');
export const lost = new Counter('connections_lost'); // closed by the server or the network, not by the script
export const refused = new Counter('handshakes_refused');

// Session policy (see loadtest/README.md): a session that cannot last MIN_SESSION_S is not started; a refused
// or failed session is followed by an exponential, jittered backoff from BACKOFF_MS up to BACKOFF_MAX_MS.
const MIN_SESSION_S = envNum('MIN_SESSION_S', 10);
const BACKOFF_MS = envNum('BACKOFF_MS', 500);
const BACKOFF_MAX_MS = envNum('BACKOFF_MAX_MS', 15000);

/**
 * Thresholds every script shares; each can be tuned from the environment. A k6 threshold on a metric that got no
 * samples passes, so every metric named here gets samples in every session: `messages_received`, `duplicates`
 * and `connections_lost` are added 0 at each session start, `errors` gets one sample per session, and `checks`
 * gets the handshake check of every session.
 */
export function commonThresholds(latencyMetric) {
  const t = {};
  t[latencyMetric || 'e2e_latency'] = [`p(99)<${envNum('P99_MS', 250)}`];
  t.errors = [`rate<${envNum('MAX_ERROR_RATE', 0.01)}`];
  t.delivery_ratio = [`rate>=${envNum('MIN_DELIVERY', 0.999)}`];
  t.messages_received = ['count>0'];
  t.duplicates = [`count<=${envNum('MAX_DUPLICATES', 0)}`];
  t.connections_lost = [`count<=${envNum('MAX_LOST', 0)}`];
  t.checks = [`rate>=${envNum('MIN_CHECKS', 0.99)}`];
  return t;
}

function b64url(s) {
  return encoding.b64encode(s, 'rawurl');
}

/** An HS256 JWT, signed with k6/crypto. */
export function signHS256(claims, secret) {
  const head = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const body = b64url(JSON.stringify(claims));
  const sig = crypto.hmac('sha256', secret, `${head}.${body}`, 'base64rawurl');
  return `${head}.${body}.${sig}`;
}

function subOf(token) {
  const parts = token.split('.');
  if (parts.length !== 3) throw new Error('TOKENS_FILE holds a line that is not a JWT');
  return JSON.parse(encoding.b64decode(parts[1], 'rawurl', 's')).sub;
}

/** The user id that VU number `vu` connects as. */
export function userOf(vu) {
  if (fileTokens) return subOf(fileTokens[(vu - 1) % fileTokens.length]);
  return `${USER_PREFIX}${vu}`;
}

/** A fresh token for VU number `vu`. */
export function tokenOf(vu) {
  if (fileTokens) return fileTokens[(vu - 1) % fileTokens.length];
  const user = userOf(vu);
  if (JWT_SECRET) {
    const now = Math.floor(Date.now() / 1000);
    const claims = { sub: user, iat: now, exp: now + JWT_TTL_S };
    if (JWT_ISSUER) claims.iss = JWT_ISSUER;
    if (JWT_AUDIENCE) claims.aud = JWT_AUDIENCE;
    return signHS256(claims, JWT_SECRET);
  }
  const res = http.post(`${HTTP_URL}/dev/token`, JSON.stringify({ user: user, ttl: JWT_TTL_S }), {
    headers: { 'Content-Type': 'application/json' },
  });
  if (res.status !== 200) {
    throw new Error(`POST ${HTTP_URL}/dev/token answered ${res.status}: set JWT_SECRET or TOKENS_FILE`);
  }
  return res.json('token');
}

export function wsUrl(token) {
  return `${WS_URL}${WS_URL.indexOf('?') >= 0 ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

/** A string of `n` characters to pad message bodies to a chosen size. */
export function padding(n) {
  let s = '';
  while (s.length < n) s += 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx';
  return s.substring(0, n);
}

export function parse(data) {
  try {
    return JSON.parse(data);
    // k6 v0.48 needs the binding: `catch {` is a SyntaxError there.
    // eslint-disable-next-line @typescript-eslint/no-unused-vars
  } catch (e) {
    return null;
  }
}

/**
 * Tracks a strictly increasing sequence per stream (a room's offsets, or a sender's sequence numbers) and feeds
 * delivery_ratio and duplicates: a jump from n to n+k counts k-1 missed messages; a repeat counts a duplicate.
 * A stream's first number is its baseline unless start() set one (the offset a join reply returned).
 * Keep one tracker per VU (module scope of the script) so that it survives reconnects.
 */
export function sequenceTracker() {
  const last = {};
  return {
    start: function (stream, n) {
      last[stream] = n;
    },
    last: function (stream) {
      return last[stream];
    },
    /** Counts `n` messages of `stream` as missed (a gap the server announced) and moves the baseline to `to`. */
    missed: function (stream, n, to) {
      for (let i = Math.min(n, 100000); i > 0; i--) delivery.add(false);
      if (to !== undefined) last[stream] = to;
    },
    see: function (stream, n) {
      const prev = last[stream];
      if (prev !== undefined && n <= prev) {
        duplicates.add(1);
        return;
      }
      if (prev !== undefined) {
        for (let missed = Math.min(n - prev - 1, 100000); missed > 0; missed--) delivery.add(false);
      }
      delivery.add(true);
      last[stream] = n;
    },
  };
}

/**
 * Counts what a `gap` event announces as missed, once: the part of from..to above what the tracker already
 * counted (a `recovered: false` reply may have counted it). `to: null` (history reset) counts one missed message
 * and restarts the stream in the new epoch. Returns the stream's epoch after the gap.
 */
export function gap(tracker, stream, epoch, msg) {
  if (msg.to === null || msg.epoch !== epoch) {
    tracker.missed(stream, 1, 0);
    return msg.epoch;
  }
  const last = tracker.last(stream);
  const from = last === undefined ? msg.from : Math.max(msg.from, last + 1);
  if (msg.to >= from) tracker.missed(stream, msg.to - from + 1, msg.to);
  return epoch;
}

/** Sends command objects with increasing ids and remembers when each was sent. */
export function commander(socket) {
  let nextId = 1;
  const pending = {};
  return {
    send: function (cmd) {
      const id = nextId++;
      cmd.id = id;
      pending[id] = { at: Date.now(), type: cmd.type };
      socket.send(JSON.stringify(cmd));
      return id;
    },
    /** Handles a reply; returns the command type it answered, or null when `msg` is not a reply of ours. */
    reply: function (msg) {
      const p = msg.re === undefined || msg.re === null ? undefined : pending[msg.re];
      if (!p) return null;
      delete pending[msg.re];
      ackLatency.add(Date.now() - p.at, { cmd: p.type });
      errors.add(msg.ok !== true, { cmd: p.type });
      if (msg.ok !== true) console.warn(`${p.type} failed: ${JSON.stringify(msg.error)}`);
      return p.type;
    },
  };
}

/**
 * Seconds after the scenario's start at which this script's sessions end. With k6's own `--vus`/`--duration`
 * (or `--iterations`/`--stages`) on the command line, k6 replaces the script's scenarios by one called
 * `default`, whose length the script cannot read: sessions then end DURATION_S after the start (pass
 * `-e DURATION_S=` a little under `--duration`).
 */
export function windowSeconds(rampS, durationS) {
  return cliMode() ? durationS : rampS + durationS;
}

/** True when k6's command line replaced the script's scenarios (`--vus`, `--duration`, ...). */
export function cliMode() {
  return exec.scenario.name === 'default';
}

/** Milliseconds left until `seconds` after the current scenario started (negative once past). */
export function msLeft(seconds) {
  return exec.scenario.startTime + seconds * 1000 - Date.now();
}

// Per VU (k6 evaluates this module once per VU): consecutive failed sessions, for the backoff.
let failures = 0;

function backoff(ok) {
  if (ok) {
    failures = 0;
    return;
  }
  failures += 1;
  const ms = Math.min(BACKOFF_MAX_MS, BACKOFF_MS * Math.pow(2, failures - 1));
  sleep((ms / 2 + (Math.random() * ms) / 2) / 1000);
}

/**
 * One WebSocket session, run to its end (k6's ws.connect blocks until the socket closes):
 *   opts.scenario    tag for the built-in ws_* metrics
 *   opts.endSeconds  the session ends this many seconds after the scenario started; no session is started when
 *                    less than MIN_SESSION_S remain (the VU idles instead, a second per iteration, until k6 stops
 *                    it), so the end of a stage never becomes a reconnect storm
 *   opts.holdMs      optional: end the session after this long instead, if that is sooner
 *   opts.onWelcome(s)        the welcome frame arrived; s.cmd sends commands, s.socket is the k6 socket
 *   opts.onMessage(s, msg)   every other parsed frame (replies included: pass them to s.cmd.reply)
 * The script sets s.ready = true once the session does its job (joined, ...). Afterwards `errors` gets one sample
 * for the session: true when the handshake was refused, the session never got ready, or the connection was lost
 * (closed by anything but this script, except after the server's `reconnect` event, a drain). A refused or failed
 * session is followed by a backoff. Returns the session state, or null when no session was started.
 */
export function runSession(opts) {
  let left = msLeft(opts.endSeconds);
  if (left < MIN_SESSION_S * 1000) {
    sleep(1);
    return null;
  }
  if (opts.holdMs !== undefined && opts.holdMs < left) left = opts.holdMs;
  const s = {
    socket: null,
    cmd: null,
    welcomed: false,
    ready: false,
    ending: false,
    drained: false,
    closed: false,
    received: 0,
  };
  // Samples for the metrics whose thresholds must not pass for lack of them (see commonThresholds).
  received.add(0);
  duplicates.add(0);
  lost.add(0);
  const start = Date.now();
  let res = null;
  try {
    res = ws.connect(wsUrl(tokenOf(__VU)), { tags: { scenario: opts.scenario } }, function (socket) {
      s.socket = socket;
      s.cmd = commander(socket);
      socket.on('error', function (e) {
        console.warn(`socket error: ${e.error()}`);
      });
      socket.on('message', function (data) {
        const msg = parse(data);
        if (!msg) return;
        if (msg.type === 'welcome' && !s.welcomed) {
          s.welcomed = true;
          welcomeTime.add(Date.now() - start);
          opts.onWelcome(s);
          return;
        }
        if (msg.type === 'reconnect') {
          s.drained = true;
          return;
        }
        opts.onMessage(s, msg);
      });
      socket.on('close', function () {
        s.closed = true;
      });
      socket.setTimeout(function () {
        s.ending = true;
        socket.close();
      }, left);
    });
  } catch (e) {
    console.warn(`connect failed: ${e}`);
  }
  const handshake = check(res, { 'handshake 101': (r) => r !== null && r !== undefined && r.status === 101 });
  if (!handshake) refused.add(1);
  const wasLost = handshake && !s.ending && !s.drained;
  if (wasLost) {
    lost.add(1);
    console.warn(`connection lost after ${Date.now() - start} ms`);
  }
  errors.add(!handshake || !s.ready || wasLost);
  backoff(handshake && s.ready && !wasLost);
  return s;
}
