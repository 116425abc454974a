// Connect storm: ramps up to CONNECTIONS concurrent authenticated connections, holds them, ramps down.
// Each VU opens one connection, waits for the welcome frame and keeps the socket open for HOLD_S seconds (or
// until RAMP_S + HOLD_S after the start, whichever is sooner), then reconnects while at least MIN_SESSION_S
// remain. Measures the handshake (ws_connecting, built in: the token is checked during the upgrade) and
// connect call -> welcome frame (welcome_time). A refused handshake is followed by a backoff, and counts in
// `errors` and `handshakes_refused`.
//
//   CONNECTIONS (1000)  RAMP_S (60)  HOLD_S (60)  CONNECT_P99_MS (1000)  MAX_ERROR_RATE (0.01)  MAX_LOST (0)
//
// The gateway admits CONN_RATE_PER_IP (50 by default) new connections per second per client address; one k6
// machine is one address: raise it on the gateways, or keep CONNECTIONS / RAMP_S under it.
import { Counter } from 'k6/metrics';
import { envNum, runSession, windowSeconds } from './lib.js';

const CONNECTIONS = envNum('CONNECTIONS', 1000);
const RAMP_S = envNum('RAMP_S', 60);
const HOLD_S = envNum('HOLD_S', 60);

const welcomed = new Counter('sessions_welcomed');

export const options = {
  scenarios: {
    storm: {
      executor: 'ramping-vus',
      startVUs: 0,
      stages: [
        { duration: `${RAMP_S}s`, target: CONNECTIONS },
        { duration: `${HOLD_S}s`, target: CONNECTIONS },
        { duration: '10s', target: 0 },
      ],
      // Sessions end by RAMP_S + HOLD_S; these leave room for the last ones to close.
      gracefulRampDown: '30s',
      gracefulStop: '30s',
    },
  },
  thresholds: {
    ws_connecting: [`p(99)<${envNum('CONNECT_P99_MS', 1000)}`],
    welcome_time: [`p(99)<${envNum('CONNECT_P99_MS', 1000)}`],
    errors: [`rate<${envNum('MAX_ERROR_RATE', 0.01)}`],
    sessions_welcomed: ['count>0'],
    connections_lost: [`count<=${envNum('MAX_LOST', 0)}`],
    checks: [`rate>=${envNum('MIN_CHECKS', 0.99)}`],
  },
};

export default function () {
  welcomed.add(0); // a sample even when no session is welcomed, so that `count>0` can fail
  runSession({
    scenario: 'connect-storm',
    endSeconds: windowSeconds(RAMP_S, HOLD_S),
    holdMs: HOLD_S * 1000,
    onWelcome: function (s) {
      s.ready = true;
      welcomed.add(1);
    },
    onMessage: function (s, msg) {
      if (s.cmd) s.cmd.reply(msg);
    },
  });
}
