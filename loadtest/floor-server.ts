// The floor of this stack, for the benchmark: a bare uWebSockets.js node that relays one Redis PUBLISH per
// message into uWS native topics. No authentication (the token's `sub` is read, its signature is not checked), no
// protocol validation, no history, offsets, presence, limits or metrics. It speaks just enough of protocol v1 for
// the load generator (loadtest/lib/clients.ts): a `welcome` on open, `join`, `publish` and `dm` answered with
// `{"re":id,"ok":true}`, and `message` / `dm` events. Whatever the gateway costs above these figures is the price
// of what it adds.
//
// Rooms: a node SUBSCRIBEs a room's channel when its first local socket joins (and keeps it), and each Redis
// message is one app.publish into the room's topic. DMs: every socket subscribes its user's topic; each node
// PSUBSCRIBEs the user channels once, so a connection costs no Redis subscription.
//
// Env: PORT, NODE_ID, REDIS_URL. GET /readyz answers 200 once both Redis clients are ready.
import { Redis } from 'ioredis';
import * as uWS from 'uWebSockets.js';

const port = Number(process.env.PORT ?? 3000);
const nodeId = process.env.NODE_ID ?? `floor-${process.pid}`;
const redisUrl = process.env.REDIS_URL;
if (!redisUrl) {
  console.error('floor-server: REDIS_URL is required');
  process.exit(2);
}

const pub = new Redis(redisUrl, { lazyConnect: true, enableAutoPipelining: true });
const sub = pub.duplicate();
let ready = false;
const ROOM = 'r:';
const USER = 'u:';
/** Room -> its Redis SUBSCRIBE (a join is answered once the node receives the room's messages). */
const rooms = new Map<string, Promise<unknown>>();
/** Sockets not yet closed (a reply that resolves after the close must not touch the socket). */
const live = new WeakSet<object>();

interface Data {
  user: string;
}

/** The JWT's `sub`, unverified (the floor does no authentication). */
function subjectOf(token: string | null): string | undefined {
  const payload = token?.split('.')[1];
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString()) as { sub?: unknown };
    return typeof claims.sub === 'string' ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

const app = uWS.App();

app.ws<Data>('/ws', {
  idleTimeout: 120,
  maxPayloadLength: 64 * 1024,
  maxBackpressure: 16 * 1024 * 1024,
  upgrade: (res, req, context) => {
    const user = subjectOf(new URLSearchParams(req.getQuery() ?? '').get('token'));
    if (!user) {
      res.writeStatus('401 Unauthorized').end();
      return;
    }
    res.upgrade<Data>(
      { user },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    const { user } = ws.getUserData();
    live.add(ws);
    ws.subscribe(USER + user);
    ws.send(JSON.stringify({ type: 'welcome', user, node: nodeId, protocol: 1 }), false);
  },
  message: (ws, data) => {
    let cmd: { id?: number; type?: string; room?: string; to?: string; body?: unknown };
    try {
      cmd = JSON.parse(Buffer.from(data).toString()) as typeof cmd;
    } catch {
      return;
    }
    const id = cmd.id ?? null;
    const ok = `{"re":${JSON.stringify(id)},"ok":true}`;
    const { user } = ws.getUserData();
    const reply = (done: Promise<unknown>) =>
      done.then(
        () => {
          if (live.has(ws)) ws.send(ok, false);
        },
        () => {
          if (live.has(ws))
            ws.send(`{"re":${JSON.stringify(id)},"ok":false,"error":{"code":"unavailable"}}`, false);
        },
      );
    if (cmd.type === 'join' && typeof cmd.room === 'string') {
      ws.subscribe(ROOM + cmd.room);
      let subscribed = rooms.get(cmd.room);
      if (!subscribed) rooms.set(cmd.room, (subscribed = sub.subscribe(ROOM + cmd.room)));
      reply(subscribed);
    } else if (cmd.type === 'publish' && typeof cmd.room === 'string') {
      const frame = JSON.stringify({
        type: 'message',
        room: cmd.room,
        from: user,
        ts: Date.now(),
        body: cmd.body,
      });
      reply(pub.publish(ROOM + cmd.room, frame));
    } else if (cmd.type === 'dm' && typeof cmd.to === 'string') {
      const frame = JSON.stringify({ type: 'dm', from: user, to: cmd.to, ts: Date.now(), body: cmd.body });
      reply(pub.publish(USER + cmd.to, frame));
    } else ws.send(`{"re":${JSON.stringify(id)},"ok":false,"error":{"code":"bad_request"}}`, false);
  },
  close: (ws) => {
    live.delete(ws);
  },
});

app.get('/readyz', (res) => {
  res.writeStatus(ready ? '200 OK' : '503 Service Unavailable').end(ready ? 'ok' : 'starting');
});

// Redis message -> one native topic publish (uWS writes it to every subscribed socket in C++).
sub.on('messageBuffer', (channel: Buffer, message: Buffer) => {
  app.publish(channel.toString('latin1'), message, false);
});
sub.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, message: Buffer) => {
  app.publish(channel.toString('latin1'), message, false);
});

await Promise.all([pub.connect(), sub.connect()]);
await sub.psubscribe(`${USER}*`);
app.listen('127.0.0.1', port, (token) => {
  if (!token) {
    console.error(`floor-server: cannot listen on ${port}`);
    process.exit(1);
  }
  ready = true;
});

const shutdown = () => {
  app.close();
  pub.disconnect();
  sub.disconnect();
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
