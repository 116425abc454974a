// Direct messages: PAIRS pairs of users; each user sends a DM to its partner every DM_INTERVAL_MS.
// e2e_latency: the sender's Date.now() carried in the body -> the partner receives the dm event.
// delivery_ratio: the partner checks the sender's sequence numbers for holes (a DM the gateway refused also
// leaves a hole: compare with the errors rate).
//
//   PAIRS (500)  DM_INTERVAL_MS (2000)  MSG_BYTES (100)  RAMP_S (30)  DURATION_S (120)
//   P99_MS (250)  MAX_ERROR_RATE (0.01)  MIN_DELIVERY (0.999)
import {
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

const PAIRS = envNum('PAIRS', 500);
const DM_INTERVAL_MS = envNum('DM_INTERVAL_MS', 2000);
const MSG_BYTES = envNum('MSG_BYTES', 100);
const RAMP_S = envNum('RAMP_S', 30);
const DURATION_S = envNum('DURATION_S', 120);

export const options = {
  scenarios: {
    dm: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: `${RAMP_S}s`, target: PAIRS * 2 },
        { duration: `${DURATION_S}s`, target: PAIRS * 2 },
        { duration: '5s', target: 0 },
      ],
      gracefulRampDown: '10s',
    },
  },
  thresholds: commonThresholds('e2e_latency'),
};

const pad = padding(MSG_BYTES);
let seq = 0;

export default function () {
  const user = userOf(__VU);
  // VUs 1+2, 3+4, ... are partners.
  const partner = userOf(__VU % 2 === 1 ? __VU + 1 : __VU - 1);
  const fromPartner = sequenceTracker();
  let welcomed = false;
  session(tokenOf(__VU), 'dm', function (socket) {
    const cmd = commander(socket);
    function send() {
      seq += 1;
      cmd.send({ type: 'dm', to: partner, body: { t: Date.now(), u: user, s: seq, p: pad } });
      sent.add(1);
    }
    socket.on('message', function (data) {
      const msg = parse(data);
      if (!msg) return;
      if (msg.type === 'welcome') {
        welcomed = true;
        socket.setTimeout(function () {
          send();
          socket.setInterval(send, DM_INTERVAL_MS);
        }, Math.random() * DM_INTERVAL_MS);
        return;
      }
      if (msg.type === 'dm') {
        if (msg.from !== partner || !msg.body || typeof msg.body.s !== 'number') return;
        received.add(1);
        if (typeof msg.body.t === 'number') e2eLatency.add(Date.now() - msg.body.t);
        fromPartner.see(partner, msg.body.s);
        return;
      }
      cmd.reply(msg);
    });
    socket.setTimeout(
      function () {
        socket.close();
      },
      msLeft(RAMP_S + DURATION_S),
    );
  });
  errors.add(!welcomed);
}
