// Direct messages: PAIRS pairs of users; each user sends a DM to its partner every DM_INTERVAL_MS.
// e2e_latency: the sender's Date.now() carried in the body -> the partner receives the dm event.
// delivery_ratio: the partner checks the sender's sequence numbers for holes (a DM the gateway refused also
// leaves a hole: compare with the errors rate). After a lost connection the VU asks for its inbox `since` the
// last inbox offset it saw, so DMs sent while it was away are replayed (or counted missed on a gap).
//
//   PAIRS (500)  DM_INTERVAL_MS (2000)  MSG_BYTES (100)  RAMP_S (30)  DURATION_S (120)
//   P99_MS (250)  MAX_ERROR_RATE (0.01)  MIN_DELIVERY (0.999)  MAX_DUPLICATES (0)  MAX_LOST (0)  MIN_CHECKS (0.99)
import { check } from 'k6';
import {
  commonThresholds,
  e2eLatency,
  envNum,
  padding,
  received,
  runSession,
  sent,
  sequenceTracker,
  userOf,
  windowSeconds,
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
// Per VU, across its sessions: the send sequence, the partner's sequence numbers seen, the inbox position.
let seq = 0;
const fromPartner = sequenceTracker();
let inboxEpoch = null;
let inboxOffset = 0;

export default function () {
  const user = userOf(__VU);
  // VUs 1+2, 3+4, ... are partners.
  const partner = userOf(__VU % 2 === 1 ? __VU + 1 : __VU - 1);
  let inboxId = null;
  let replaying = false;
  let early = {}; // inbox offsets that arrived live before the inbox reply: the replay sends them again
  let readyAt = 0;

  function send(s) {
    seq += 1;
    s.cmd.send({ type: 'dm', to: partner, body: { t: Date.now(), u: user, s: seq, p: pad } });
    sent.add(1);
  }

  function start(s) {
    s.ready = true;
    readyAt = Date.now();
    s.socket.setTimeout(function () {
      send(s);
      s.socket.setInterval(function () {
        send(s);
      }, DM_INTERVAL_MS);
    }, Math.random() * DM_INTERVAL_MS);
  }

  const s = runSession({
    scenario: 'dm',
    endSeconds: windowSeconds(RAMP_S, DURATION_S),
    onWelcome: function (s) {
      if (inboxEpoch === null) {
        start(s);
        return;
      }
      // A reconnect: replay what arrived in the inbox while this VU was away.
      replaying = true;
      inboxId = s.cmd.send({ type: 'inbox', since: { offset: inboxOffset, epoch: inboxEpoch } });
    },
    onMessage: function (s, msg) {
      if (msg.type === 'dm') {
        if (replaying && early[msg.offset]) return; // the documented resend of a DM that arrived before `inbox`
        if (!s.ready) early[msg.offset] = true;
        if (msg.epoch !== inboxEpoch || msg.offset > inboxOffset) {
          inboxEpoch = msg.epoch;
          inboxOffset = msg.offset;
        }
        if (msg.from !== partner || !msg.body || typeof msg.body.s !== 'number') return;
        received.add(1);
        s.received += 1;
        if (typeof msg.body.t === 'number') e2eLatency.add(Date.now() - msg.body.t);
        // A sequence number seen before counts as a duplicate; a hole as missed (gaps included).
        fromPartner.see(partner, msg.body.s);
        return;
      }
      if (msg.type === 'gap' && msg.inbox === true) {
        // The DMs in the gap show up as holes in the partner's sequence numbers; only move the position on.
        inboxEpoch = msg.epoch;
        if (msg.to !== null) inboxOffset = Math.max(inboxOffset, msg.to);
        return;
      }
      const isInboxReply = msg.re === inboxId;
      s.cmd.reply(msg);
      if (!isInboxReply || msg.ok !== true || s.ready) return;
      if (msg.recovered === false) {
        inboxEpoch = msg.epoch;
        inboxOffset = msg.offset;
      }
      start(s);
    },
  });
  early = {};
  if (s && s.ready && Date.now() - readyAt > 3 * DM_INTERVAL_MS) {
    check(s.received, { 'session received messages': (n) => n > 0 });
  }
}
