// Big-room fanout: ROOMS rooms of SUBSCRIBERS members each; PUBLISHERS per room publish PUBLISH_RATE messages/s
// each, so every message is delivered to SUBSCRIBERS + PUBLISHERS connections (publishers join their room too).
// e2e_latency: the publisher's Date.now() carried in the body -> received by each member.
// delivery_ratio: each member checks that the room's offsets arrive without holes.
//
//   ROOMS (10)  SUBSCRIBERS (500)  PUBLISHERS (1)  PUBLISH_RATE (5)  MSG_BYTES (100)  RAMP_S (60)
//   DURATION_S (120)  P99_MS (250)  MAX_ERROR_RATE (0.01)  MIN_DELIVERY (0.999)
import exec from 'k6/execution';
import {
  ROOM_PREFIX,
  commander,
  commonThresholds,
  e2eLatency,
  envNum,
  errors,
  msLeft,
  padding,
  parse,
  received,
  sent,
  sequenceTracker,
  session,
  tokenOf,
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
const SETTLE_S = 5;

export const options = {
  scenarios: {
    subscribers: {
      executor: 'ramping-vus',
      exec: 'subscriber',
      startVUs: 0,
      stages: [
        { duration: `${RAMP_S}s`, target: ROOMS * SUBSCRIBERS },
        { duration: `${DURATION_S + 2 * SETTLE_S}s`, target: ROOMS * SUBSCRIBERS },
      ],
      gracefulRampDown: '10s',
    },
    publishers: {
      executor: 'constant-vus',
      exec: 'publisher',
      vus: ROOMS * PUBLISHERS,
      duration: `${DURATION_S}s`,
      startTime: `${RAMP_S + SETTLE_S}s`,
    },
  },
  thresholds: commonThresholds('e2e_latency'),
};

const pad = padding(MSG_BYTES);
let seq = 0;

// VU ids are shared by both scenarios, so rooms are dealt out by iteration number within the scenario: the
// first iterations of a scenario start together and each lasts the whole scenario, so rooms get equal shares.
function roomOf() {
  return `${ROOM_PREFIX}${exec.scenario.iterationInTest % ROOMS}`;
}

/** Joins `room`, tracks offsets and latency of its messages; calls onJoined(socket, cmd) once joined. */
function member(scenario, sessionSeconds, onJoined) {
  const room = roomOf();
  const offsets = sequenceTracker();
  let joined = false;
  session(tokenOf(__VU), scenario, function (socket) {
    const cmd = commander(socket);
    let epoch = null;
    socket.on('message', function (data) {
      const msg = parse(data);
      if (!msg) return;
      if (msg.type === 'welcome') {
        cmd.send({ type: 'join', room: room });
        return;
      }
      if (msg.type === 'message' && msg.room === room) {
        received.add(1);
        if (msg.body && typeof msg.body.t === 'number') e2eLatency.add(Date.now() - msg.body.t);
        if (msg.epoch !== epoch) {
          epoch = msg.epoch;
          offsets.start(room, msg.offset - 1);
        }
        offsets.see(room, msg.offset);
        return;
      }
      if (cmd.reply(msg) === 'join' && msg.ok === true && !joined) {
        joined = true;
        epoch = msg.epoch;
        offsets.start(room, msg.offset);
        onJoined(socket, cmd, room);
      }
    });
    socket.setTimeout(function () {
      socket.close();
    }, msLeft(sessionSeconds));
  });
  errors.add(!joined);
}

export function subscriber() {
  member('fanout-subscriber', RAMP_S + DURATION_S + 2 * SETTLE_S, function () {});
}

export function publisher() {
  const user = userOf(__VU);
  member('fanout-publisher', DURATION_S, function (socket, cmd, room) {
    socket.setInterval(function () {
      seq += 1;
      cmd.send({ type: 'publish', room: room, body: { t: Date.now(), u: user, s: seq, p: pad } });
      sent.add(1);
    }, 1000 / PUBLISH_RATE);
  });
}
