#!/usr/bin/env node
// A small line-based chat client for trying a gateway by hand (no download: it uses the `ws` dependency).
//
//   node scripts/chat.mjs <ws-url> <token>          e.g. node scripts/chat.mjs ws://127.0.0.1:8081/ws "$TOKEN_A"
//   (or WS_URL and TOKEN in the environment)
//
// Every frame the server sends is printed as one JSON line. Each line you type is one command:
//   /join <room>              /leave <room>             /say <room> <text>       /dm <user> <text>
//   /history <room>           /presence <room>          /ping                    /quit
//   {"type":"join","room":"lobby"}    any protocol command as JSON; an `id` is added when it has none
// End of input (Ctrl-D) closes the socket and exits 0; the server closing the socket exits 1.
import { createInterface } from 'node:readline';
import WebSocket from 'ws';

const url = process.argv[2] ?? process.env.WS_URL;
const token = process.argv[3] ?? process.env.TOKEN;
if (!url || !token) {
  console.error('usage: node scripts/chat.mjs <ws-url> <token>   (or WS_URL and TOKEN in the environment)');
  process.exit(2);
}

let nextId = 1;

/** The command object a typed line stands for, or an error message. */
function commandOf(line) {
  const text = line.trim();
  if (text.startsWith('{')) {
    try {
      const cmd = JSON.parse(text);
      if (typeof cmd !== 'object' || cmd === null || Array.isArray(cmd)) return 'a command is a JSON object';
      if (cmd.id === undefined) cmd.id = nextId++;
      return cmd;
    } catch (err) {
      return `not JSON: ${err.message}`;
    }
  }
  const [verb, arg, ...rest] = text.split(/\s+/);
  const body = rest.join(' ');
  const id = nextId++;
  switch (verb) {
    case '/join':
    case '/leave':
    case '/history':
    case '/presence':
      return arg ? { id, type: verb.slice(1), room: arg } : `usage: ${verb} <room>`;
    case '/say':
      return arg && body ? { id, type: 'publish', room: arg, body } : 'usage: /say <room> <text>';
    case '/dm':
      return arg && body ? { id, type: 'dm', to: arg, body } : 'usage: /dm <user> <text>';
    case '/ping':
      return { id, type: 'ping' };
    default:
      return 'commands: /join /leave /say /dm /history /presence /ping /quit, or a JSON command';
  }
}

const ws = new WebSocket(`${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`);
let quitting = false;

ws.on('unexpected-response', (_req, res) => {
  console.error(`handshake refused: HTTP ${res.statusCode}`);
  process.exit(1);
});
ws.on('error', (err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
ws.on('message', (data) => console.log(data.toString()));
ws.on('close', (code, reason) => {
  if (!quitting) console.error(`closed by the server: ${code} ${reason.toString()}`);
  process.exit(quitting ? 0 : 1);
});
ws.on('open', () => {
  const rl = createInterface({ input: process.stdin, terminal: false });
  rl.on('line', (line) => {
    if (line.trim() === '') return;
    if (line.trim() === '/quit') return rl.close();
    const cmd = commandOf(line);
    if (typeof cmd === 'string') console.error(cmd);
    else ws.send(JSON.stringify(cmd));
  });
  rl.on('close', () => {
    quitting = true;
    ws.close(1000);
  });
});
