// Room chat: ROOMS small rooms of ROOM_SIZE users; every user publishes one message every MSG_INTERVAL_MS.
// e2e_latency: the sender's Date.now() carried in the body -> received by each member (sender included).
// delivery_ratio: each member checks that the room's offsets arrive without holes, starting from the offset the
// join reply returned.
//
//   ROOMS (100)  ROOM_SIZE (5)  MSG_INTERVAL_MS (10000)  MSG_BYTES (100)  RAMP_S (30)  DURATION_S (120)
//   P99_MS (250)  MAX_ERROR_RATE (0.01)  MIN_DELIVERY (0.999)
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
let seq = 0; // per VU, survives reconnects

export default function () {
  const user = userOf(__VU);
  const room = `${ROOM_PREFIX}${Math.floor((__VU - 1) / ROOM_SIZE) % ROOMS}`;
  const offsets = sequenceTracker();
  let joined = false;
  // Stay connected until the steady stage ends; a VU that reconnects starts a new session.
  const sessionMs = msLeft(RAMP_S + DURATION_S);

  session(tokenOf(__VU), 'room-chat', function (socket) {
    const cmd = commander(socket);
    let epoch = null;

    function publish() {
      seq += 1;
      cmd.send({ type: 'publish', room: room, body: { t: Date.now(), u: user, s: seq, p: pad } });
      sent.add(1);
    }

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
      const answered = cmd.reply(msg);
      if (answered === 'join' && msg.ok === true && !joined) {
        joined = true;
        epoch = msg.epoch;
        offsets.start(room, msg.offset);
        // Spread the first sends over one interval so the rooms do not publish in lockstep.
        socket.setTimeout(function () {
          publish();
          socket.setInterval(publish, MSG_INTERVAL_MS);
        }, Math.random() * MSG_INTERVAL_MS);
      }
    });
    socket.setTimeout(function () {
      socket.close();
    }, sessionMs);
  });
  errors.add(!joined);
}
