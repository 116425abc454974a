// What the hub's native topics take from uWebSockets.js (services/gateway/src/hub/hub.ts, "Native topics"), checked
// against the uWS build we ship, so an upgrade that changes it fails here: per socket, frames published to its
// topics and frames sent to it arrive in the order of the calls, and frames published before an unsubscribe still
// arrive (with the socket kept in one more topic, as transport/uws-server.ts does).
import * as uWS from 'uWebSockets.js';
import WebSocket from 'ws';
import { until } from '../helpers/harness';

let app: uWS.TemplatedApp | undefined;
let listen: uWS.us_listen_socket | undefined;
const clients: WebSocket[] = [];

afterEach(() => {
  for (const c of clients.splice(0)) c.terminate();
  if (listen) uWS.us_listen_socket_close(listen);
  app?.close();
  app = listen = undefined;
});

async function server(): Promise<{ connect(): Promise<{ ws: uWS.WebSocket<unknown>; got: string[] }> }> {
  const opened: uWS.WebSocket<unknown>[] = [];
  app = uWS.App().ws('/*', {
    maxBackpressure: 1 << 20,
    closeOnBackpressureLimit: false,
    open: (ws) => void opened.push(ws),
  });
  const port = await new Promise<number>((resolve) =>
    app!.listen('127.0.0.1', 0, (s) => {
      listen = s || undefined;
      resolve(uWS.us_socket_local_port(s));
    }),
  );
  return {
    connect: async () => {
      const c = new WebSocket(`ws://127.0.0.1:${port}/`);
      clients.push(c);
      const got: string[] = [];
      c.on('message', (d) => got.push(d.toString()));
      const before = opened.length;
      await new Promise((r) => c.once('open', r));
      await until('the server to see the socket', () => opened.length > before);
      return { ws: opened[opened.length - 1]!, got };
    },
  };
}

test('frames published to a socket and sent to it arrive in the order of the calls', async () => {
  const s = await server();
  const { ws, got } = await s.connect();
  ws.subscribe('anchor');
  ws.subscribe('t');
  app!.publish('t', 'p1', false);
  app!.publish('t', 'p2', false);
  ws.send('s3', false);
  app!.publish('t', 'p4', false);
  ws.send('s5', false);
  await until('all five', () => got.length === 5);
  expect(got).toEqual(['p1', 'p2', 's3', 'p4', 's5']);
});

test('frames published before an unsubscribe still arrive, before anything sent after it', async () => {
  const s = await server();
  const { ws, got } = await s.connect();
  ws.subscribe('anchor');
  ws.subscribe('t');
  app!.publish('t', 'p1', false);
  ws.unsubscribe('t');
  app!.publish('t', 'p2', false); // not subscribed any more
  ws.send('s3', false);
  ws.subscribe('t');
  app!.publish('t', 'p4', false);
  ws.unsubscribe('t');
  await until('three frames', () => got.length === 3);
  await new Promise((r) => setTimeout(r, 50));
  expect(got).toEqual(['p1', 's3', 'p4']);
});
