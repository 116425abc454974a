// Room chat: ROOMS small rooms of ROOM_SIZE users; every user publishes one message every MSG_INTERVAL_MS.
// e2e_latency: the sender's Date.now() carried in the body -> received by each member (sender included).
// delivery_ratio: each member checks that the room's offsets arrive without holes, starting from the offset the
// join reply returned; after a lost connection the VU rejoins with `since` (its last offset), so what it missed
// is replayed or, when the server announces a gap, counted as missed.
// Sessions last until RAMP_S + DURATION_S after the start; a VU whose connection was lost reconnects (with
// backoff) unless less than MIN_SESSION_S remain.
//
//   ROOMS (100)  ROOM_SIZE (5)  MSG_INTERVAL_MS (10000)  MSG_BYTES (100)  RAMP_S (30)  DURATION_S (120)
//   P99_MS (250)  MAX_ERROR_RATE (0.01)  MIN_DELIVERY (0.999)  MAX_DUPLICATES (0)  MAX_LOST (0)  MIN_CHECKS (0.99)
import { check } from 'k6';
import {
  ROOM_PREFIX,
  commonThresholds,
  e2eLatency,
  envNum,
  gap,
  padding,
  received,
  runSession,
  sent,
  sequenceTracker,
  userOf,
  windowSeconds,
} from './lib.js';

const ROOMS = envNum('ROOMS', 100);
const ROOM_SIZE = envNum('ROOM_SIZE', 5);
const MSG_INTERVAL_MS = envNum('MSG_INTERVAL_MS', 10000);
const MSG_BYTES = envNum('MSG_BYTES', 100);
const RAMP_S = envNum('RAMP_S', 30);
const DURATION_S = envNum('DURATION_S', 120);
const USERS = ROOMS * ROOM_SIZE;

export const options = {
  scenarios: {
    chat: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: `${RAMP_S}s`, target: USERS },
        { duration: `${DURATION_S}s`, target: USERS },
        { duration: '5s', target: 0 },
      ],
      gracefulRampDown: '10s',
    },
  },
  thresholds: commonThresholds('e2e_latency'),
};

const pad = padding(MSG_BYTES);
// Per VU, across its sessions: the publish sequence, and the room's offsets seen (for `since` and the holes).
let seq = 0;
const offsets = sequenceTracker();
let epoch = null;

export default function () {
  const user = userOf(__VU);
  const room = `${ROOM_PREFIX}${Math.floor((__VU - 1) / ROOM_SIZE) % ROOMS}`;
  let joinId = null;

  function publish(s) {
    seq += 1;
    s.cmd.send({ type: 'publish', room: room, body: { t: Date.now(), u: user, s: seq, p: pad } });
    sent.add(1);
  }

  let readyAt = 0;
  const s = runSession({
    scenario: 'room-chat',
    endSeconds: windowSeconds(RAMP_S, DURATION_S),
    onWelcome: function (s) {
      const join = { type: 'join', room: room };
      // A reconnect: ask for everything after the last offset this VU saw.
      if (offsets.last(room) !== undefined) join.since = { offset: offsets.last(room), epoch: epoch };
      joinId = s.cmd.send(join);
    },
    onMessage: function (s, msg) {
      if (msg.type === 'message' && msg.room === room) {
        received.add(1);
        s.received += 1;
        if (msg.body && typeof msg.body.t === 'number') e2eLatency.add(Date.now() - msg.body.t);
        if (msg.epoch !== epoch) {
          epoch = msg.epoch;
          offsets.start(room, msg.offset - 1);
        }
        offsets.see(room, msg.offset);
        return;
      }
      if (msg.type === 'gap' && msg.room === room) {
        epoch = gap(offsets, room, epoch, msg);
        return;
      }
      const isJoinReply = msg.re === joinId;
      s.cmd.reply(msg);
      if (!isJoinReply || msg.ok !== true || s.ready) return;
      s.ready = true;
      readyAt = Date.now();
      if (msg.recovered === false && msg.epoch === epoch && offsets.last(room) !== undefined) {
        // History no longer reaches back: everything between our last offset and the room's latest is missed.
        offsets.missed(room, msg.offset - offsets.last(room), msg.offset);
      } else if (msg.recovered !== true) {
        epoch = msg.epoch;
        offsets.start(room, msg.offset);
      }
      // Spread the first sends over one interval so the rooms do not publish in lockstep.
      s.socket.setTimeout(function () {
        publish(s);
        s.socket.setInterval(function () {
          publish(s);
        }, MSG_INTERVAL_MS);
      }, Math.random() * MSG_INTERVAL_MS);
    },
  });
  // A member that was in its room for three intervals must have seen messages (its own at least).
  if (s && s.ready && Date.now() - readyAt > 3 * MSG_INTERVAL_MS) {
    check(s.received, { 'session received messages': (n) => n > 0 });
  }
}
