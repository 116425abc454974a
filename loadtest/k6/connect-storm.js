// Connect storm: ramps up to CONNECTIONS concurrent authenticated connections, holds them, ramps down.
// Each VU opens one connection, waits for the welcome frame and keeps the socket open for HOLD_S seconds, then
// reconnects. Measures the handshake (ws_connecting, built in: the token is checked during the upgrade) and
// connect call -> welcome frame (welcome_time).
//
//   CONNECTIONS (1000)  RAMP_S (60)  HOLD_S (60)  CONNECT_P99_MS (1000)  MAX_ERROR_RATE (0.01)
import { Counter } from 'k6/metrics';
import { envNum, errors, parse, session, tokenOf, welcomeTime } from './lib.js';

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
      gracefulRampDown: `${HOLD_S + 10}s`,
    },
  },
  thresholds: {
    ws_connecting: [`p(99)<${envNum('CONNECT_P99_MS', 1000)}`],
    welcome_time: [`p(99)<${envNum('CONNECT_P99_MS', 1000)}`],
    errors: [`rate<${envNum('MAX_ERROR_RATE', 0.01)}`],
  },
};

export default function () {
  const token = tokenOf(__VU);
  const start = Date.now();
  let gotWelcome = false;
  const ok = session(token, 'connect-storm', function (socket) {
    socket.on('message', function (data) {
      if (gotWelcome) return;
      const msg = parse(data);
      if (msg && msg.type === 'welcome') {
        gotWelcome = true;
        welcomeTime.add(Date.now() - start);
        welcomed.add(1);
      }
    });
    socket.setTimeout(function () {
      socket.close();
    }, HOLD_S * 1000);
  });
  errors.add(!(ok && gotWelcome));
}
