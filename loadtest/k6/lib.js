// Shared helpers for the k6 scripts (k6 v0.48 APIs only: k6, k6/ws, k6/http, k6/crypto, k6/encoding,
// k6/metrics, k6/data). Everything is configured through environment variables (`k6 run -e NAME=value`).
//
// Identity and tokens, in order of preference:
//   TOKENS_FILE   absolute path of a file with one JWT per line; VU n uses line n (wrapping around); the user id
//                 is the token's `sub`.
//   JWT_SECRET    HS256 secret shared with the gateway; tokens are minted here for users USER_PREFIX + VU number.
//   HTTP_URL      a gateway in dev mode (no secret configured): tokens come from POST /dev/token.
/* global open */
import http from 'k6/http';
import ws from 'k6/ws';
import { check } from 'k6';
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
export const errors = new Rate('errors'); // failed sessions and error replies
export const duplicates = new Counter('duplicates');
export const received = new Counter('messages_received');
export const sent = new Counter('messages_sent');

/** Thresholds every script shares; each can be tuned from the environment. */
export function commonThresholds(latencyMetric) {
  const t = {};
  t[latencyMetric || 'e2e_latency'] = [`p(99)<${envNum('P99_MS', 250)}`];
  t.errors = [`rate<${envNum('MAX_ERROR_RATE', 0.01)}`];
  t.delivery_ratio = [`rate>=${envNum('MIN_DELIVERY', 0.999)}`];
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
  } catch {
    return null;
  }
}

/**
 * Tracks a strictly increasing sequence per stream (a room's offsets, or a sender's sequence numbers) and feeds
 * delivery_ratio and duplicates: a jump from n to n+k counts k-1 missed messages; a repeat counts a duplicate.
 * A stream's first number is its baseline unless start() set one (the offset a join reply returned).
 */
export function sequenceTracker() {
  const last = {};
  return {
    start: function (stream, n) {
      last[stream] = n;
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
 * Opens a WebSocket session with ws.connect (which blocks until the socket closes) and checks the handshake.
 * Returns true when the server answered 101. A refused handshake is logged, never thrown.
 */
export function session(token, scenario, fn) {
  let res;
  try {
    res = ws.connect(wsUrl(token), { tags: { scenario: scenario } }, function (socket) {
      socket.on('error', function (e) {
        console.warn(`socket error: ${e.error()}`);
      });
      fn(socket);
    });
  } catch (e) {
    console.warn(`connect failed: ${e}`);
  }
  return check(res, { 'handshake 101': (r) => r !== undefined && r !== null && r.status === 101 });
}

/** Milliseconds left until `seconds` after the current scenario started (at least one second). */
export function msLeft(seconds) {
  return Math.max(1000, exec.scenario.startTime + seconds * 1000 - Date.now());
}
