// The SDK reads every frame through the shared protocol validator: against a hostile server (a real `ws` server
// in this process, speaking through the shared frame builders), malformed events are reported as `bad_frame`
// errors and never delivered, a reply that does not fit its command rejects that command, and the client stays
// connected and keeps working.
import { WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import type { AddressInfo } from 'node:net';
import { ChatError } from '../../client/src';
import { okReply, storedEvent, storedEventParts, welcomeFrame } from '../../protocol';
import { closeAll, sdk, waitEvent } from './util';

let wss: WebSocketServer;
let url: string;

const message = (offset: number, text: string) =>
  storedEvent(
    storedEventParts('message', { room: 'r', id: `m${offset}`, from: 'eve', ts: 1 }, JSON.stringify(text)),
    offset,
    'e',
  );

function serve(ws: ServerSocket): void {
  ws.send(welcomeFrame({ user: 'alice', node: 'hostile', session: 's1', expiresAt: null }));
  ws.on('message', (data) => {
    const cmd = JSON.parse(String(data)) as { id: number; type: string; room?: string };
    switch (cmd.type) {
      case 'inbox':
        ws.send(okReply<'inbox'>(cmd.id, { offset: 0, epoch: 'e' }));
        return;
      case 'join':
        ws.send(okReply<'join'>(cmd.id, { room: 'r', presence: ['alice'], offset: 0, epoch: 'e' }));
        ws.send(message(1, 'one').replace('"offset":1', '"offset":"1"')); // offset as a string
        ws.send('{"type":"message","room":"r"'); // not JSON
        ws.send('{"type":"presence","room":"r","joined":[{"x":1}]}'); // a user that is not a string
        ws.send(Buffer.from(message(1, 'binary'))); // a binary frame on a JSON connection
        ws.send('{"type":"from-the-future","x":1}'); // unknown: ignored, not an error
        ws.send(message(1, 'one'));
        return;
      case 'ping':
        ws.send(JSON.stringify({ re: cmd.id, ok: true, pong: 'yes', ts: 1 }));
        return;
      case 'presence':
        ws.send(okReply<'presence'>(cmd.id, { room: 'r', presence: ['alice', 'eve'] }));
        return;
    }
  });
}

beforeAll(async () => {
  wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  wss.on('connection', serve);
  await new Promise((resolve) => wss.once('listening', resolve));
  url = `ws://127.0.0.1:${(wss.address() as AddressInfo).port}/ws`;
});

afterAll(async () => {
  closeAll();
  await new Promise((resolve) => wss.close(resolve));
});

test('malformed events are reported as bad_frame errors and not delivered; the client keeps working', async () => {
  const a = sdk('alice', { url, token: 'not-checked-by-this-server' });
  await a.client.connect();
  await a.client.join('r');
  const good = await waitEvent(a, 'message');
  expect(good).toMatchObject({ room: 'r', offset: 1, body: 'one' });
  expect(a.seen.message).toHaveLength(1);
  const errors = a.seen.error.map((e) => [(e as ChatError).code, e.message]);
  expect(errors).toEqual([
    ['bad_frame', expect.stringContaining('message: bad or missing "offset"')],
    ['bad_frame', expect.stringContaining('not a json frame')],
    ['bad_frame', expect.stringContaining('presence: bad or missing "joined"')],
    ['bad_frame', expect.stringContaining('not a json frame')],
  ]);
  expect(a.seen.presence.filter((p) => p.event !== 'sync')).toEqual([]);

  // A reply that does not fit its command rejects that command only.
  const err = await a.client.ping().catch((e: unknown) => e);
  expect(err).toBeInstanceOf(ChatError);
  expect(err).toMatchObject({ code: 'bad_frame', retryable: false, command: 'ping' });
  expect(await a.client.fetchPresence('r')).toEqual({ room: 'r', presence: ['alice', 'eve'] });
  expect(a.client.state).toBe('connected');
});
