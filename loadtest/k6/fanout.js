// Big-room fanout: ROOMS rooms of SUBSCRIBERS members each; PUBLISHERS per room publish PUBLISH_RATE messages/s
// each, so every message is delivered to SUBSCRIBERS + PUBLISHERS connections (publishers join their room too).
// e2e_latency: the publisher's Date.now() carried in the body -> received by each member.
// delivery_ratio: each member checks that the room's offsets arrive without holes; after a lost connection it
// rejoins with `since` (its last offset), so what it missed is replayed or, on a gap, counted as missed.
//
//   ROOMS (10)  SUBSCRIBERS (500)  PUBLISHERS (1)  PUBLISH_RATE (5)  MSG_BYTES (100)  RAMP_S (60)
//   DURATION_S (120)  P99_MS (250)  MAX_ERROR_RATE (0.01)  MIN_DELIVERY (0.999)  MAX_DUPLICATES (0)  MAX_LOST (0)
//
// With k6's `--vus N --duration D` (one `default` scenario): VU n is in room floor((n-1) / (SUBSCRIBERS +
// PUBLISHERS)) % ROOMS, the first PUBLISHERS VUs of each such block publish from SETTLE_S after the start until
// SETTLE_S before DURATION_S; pass `-e DURATION_S=` a little under `--duration`.
import exec from 'k6/execution';
import {
  ROOM_PREFIX,
  cliMode,
  commonThresholds,
  e2eLatency,
  envNum,
  gap,
  msLeft,
  padding,
  received,
  runSession,
  sent,
  sequenceTracker,
  userOf,
} from './lib.js';

const ROOMS = envNum('ROOMS', 10);
const SUBSCRIBERS = envNum('SUBSCRIBERS', 500);
const PUBLISHERS = envNum('PUBLISHERS', 1);
const PUBLISH_RATE = envNum('PUBLISH_RATE', 5);
const MSG_BYTES = envNum('MSG_BYTES', 100);
const RAMP_S = envNum('RAMP_S', 60);
const DURATION_S = envNum('DURATION_S', 120);
// Publishers start once the subscribers are in and stop a few seconds before them, so the last messages land.
const SETTLE_S = envNum('SETTLE_S', 5);

export const options = {
  scenarios: {
    subscribers: {
      executor: 'ramping-vus',
      exec: 'subscriber',
      startVUs: 0,
      stages: [
        { duration: `${RAMP_S}s`, target: ROOMS * SUBSCRIBERS },
        { duration: `${DURATION_S + 2 * SETTLE_S}s`, target: ROOMS * SUBSCRIBERS },
        { duration: '5s', target: 0 },
      ],
      gracefulRampDown: '10s',
    },
    publishers: {
      executor: 'constant-vus',
      exec: 'publisher',
      vus: ROOMS * PUBLISHERS,
      duration: `${DURATION_S}s`,
      startTime: `${RAMP_S + SETTLE_S}s`,
      gracefulStop: '10s',
    },
  },
  thresholds: commonThresholds('e2e_latency'),
};

const pad = padding(MSG_BYTES);
// Per VU, across its sessions: its room (fixed at its first iteration), publish sequence, offsets seen.
let room = null;
let seq = 0;
const offsets = sequenceTracker();
let epoch = null;

// VU ids are shared by both scenarios, so rooms are dealt out by iteration number within the scenario: the
// first iterations of a scenario start together, so rooms get equal shares. A VU keeps its room when it
// reconnects.
function roomOf() {
  if (room === null) {
    const n = cliMode() ? Math.floor((__VU - 1) / (SUBSCRIBERS + PUBLISHERS)) : exec.scenario.iterationInTest;
    room = `${ROOM_PREFIX}${n % ROOMS}`;
  }
  return room;
}

/** Joins the VU's room until `endSeconds`; tracks offsets and latency; calls onJoined(s) once joined. */
function member(scenario, endSeconds, onJoined) {
  const r = roomOf();
  let joinId = null;
  runSession({
    scenario: scenario,
    endSeconds: endSeconds,
    onWelcome: function (s) {
      const join = { type: 'join', room: r };
      if (offsets.last(r) !== undefined) join.since = { offset: offsets.last(r), epoch: epoch };
      joinId = s.cmd.send(join);
    },
    onMessage: function (s, msg) {
      if (msg.type === 'message' && msg.room === r) {
        received.add(1);
        if (msg.body && typeof msg.body.t === 'number') e2eLatency.add(Date.now() - msg.body.t);
        if (msg.epoch !== epoch) {
          epoch = msg.epoch;
          offsets.start(r, msg.offset - 1);
        }
        offsets.see(r, msg.offset);
        return;
      }
      if (msg.type === 'gap' && msg.room === r) {
        epoch = gap(offsets, r, epoch, msg);
        return;
      }
      const isJoinReply = msg.re === joinId;
      s.cmd.reply(msg);
      if (!isJoinReply || msg.ok !== true || s.ready) return;
      s.ready = true;
      if (msg.recovered === false && msg.epoch === epoch && offsets.last(r) !== undefined) {
        offsets.missed(r, msg.offset - offsets.last(r), msg.offset);
      } else if (msg.recovered !== true) {
        epoch = msg.epoch;
        offsets.start(r, msg.offset);
      }
      onJoined(s);
    },
  });
}

function publishEvery(s, fromMs, untilMs) {
  const user = userOf(__VU);
  s.socket.setTimeout(
    function () {
      s.socket.setInterval(function () {
        if (msLeft(untilMs / 1000) <= 0) return;
        seq += 1;
        s.cmd.send({ type: 'publish', room: room, body: { t: Date.now(), u: user, s: seq, p: pad } });
        sent.add(1);
      }, 1000 / PUBLISH_RATE);
    },
    Math.max(0, fromMs),
  );
}

export function subscriber() {
  member('fanout-subscriber', cliMode() ? DURATION_S : RAMP_S + DURATION_S + 2 * SETTLE_S, function () {});
}

export function publisher() {
  member('fanout-publisher', DURATION_S, function (s) {
    publishEvery(s, 0, DURATION_S * 1000);
  });
}

/** k6's command-line mode (`--vus`, `--duration`): both roles in one scenario, chosen by VU number. */
export default function () {
  if ((__VU - 1) % (SUBSCRIBERS + PUBLISHERS) >= PUBLISHERS) {
    subscriber();
    return;
  }
  member('fanout-publisher', DURATION_S, function (s) {
    // Publish from SETTLE_S after the start until SETTLE_S before the end, so the subscribers are there.
    publishEvery(s, msLeft(SETTLE_S), (DURATION_S - SETTLE_S) * 1000);
  });
}
