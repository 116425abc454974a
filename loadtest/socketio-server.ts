// The comparison system for the benchmark: a minimal Socket.IO 4.8 node with @socket.io/redis-adapter, written the
// way the Socket.IO docs suggest. WebSocket transport only; a JWT (HS256) in the handshake `auth.token`, checked
// with jsonwebtoken; rooms via socket.join; broadcast via io.to(room).emit; `publish` and `dm` acknowledge.
// Each connection joins `user:<sub>` so DMs can reach every connection of a user on any node.
//
// Env: PORT, NODE_ID, REDIS_URL, JWT_SECRET. GET /healthz answers 200 once both Redis clients are ready.
import { createServer } from 'node:http';
import { Redis } from 'ioredis';
import jwt from 'jsonwebtoken';
import { Server } from 'socket.io';
import { createAdapter } from '@socket.io/redis-adapter';

const port = Number(process.env.PORT ?? 3000);
const nodeId = process.env.NODE_ID ?? `sio-${process.pid}`;
const secret = process.env.JWT_SECRET;
const redisUrl = process.env.REDIS_URL;
if (!secret || !redisUrl) {
  console.error('socketio-server: JWT_SECRET and REDIS_URL are required');
  process.exit(2);
}

const pub = new Redis(redisUrl, { lazyConnect: true });
const sub = pub.duplicate();
let ready = false;

const http = createServer((req, res) => {
  if (req.url === '/healthz') {
    res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ status: ready ? 'ok' : 'starting', node: nodeId }));
    return;
  }
  res.writeHead(404).end();
});

const io = new Server(http, { transports: ['websocket'], serveClient: false });

interface Ack {
  (reply: { ok: boolean; error?: string }): void;
}

io.use((socket, next) => {
  const token: unknown = socket.handshake.auth.token;
  if (typeof token !== 'string') return next(new Error('unauthorized'));
  try {
    const claims = jwt.verify(token, secret, { algorithms: ['HS256'] }) as jwt.JwtPayload;
    if (typeof claims.sub !== 'string') return next(new Error('unauthorized'));
    socket.data.user = claims.sub;
    next();
  } catch {
    next(new Error('unauthorized'));
  }
});

io.on('connection', (socket) => {
  const user = socket.data.user as string;
  void socket.join(`user:${user}`);

  socket.on('join', (room: unknown, ack: Ack) => {
    if (typeof room !== 'string' || room.startsWith('user:')) return ack({ ok: false, error: 'bad_request' });
    void socket.join(room);
    ack({ ok: true });
  });

  socket.on('publish', (msg: { room?: unknown; body?: unknown }, ack: Ack) => {
    if (typeof msg?.room !== 'string' || !socket.rooms.has(msg.room))
      return ack({ ok: false, error: 'not_member' });
    io.to(msg.room).emit('message', { room: msg.room, from: user, ts: Date.now(), body: msg.body });
    ack({ ok: true });
  });

  socket.on('dm', (msg: { to?: unknown; body?: unknown }, ack: Ack) => {
    if (typeof msg?.to !== 'string') return ack({ ok: false, error: 'bad_request' });
    io.to(`user:${msg.to}`).emit('dm', { from: user, to: msg.to, ts: Date.now(), body: msg.body });
    ack({ ok: true });
  });
});

await Promise.all([pub.connect(), sub.connect()]);
io.adapter(createAdapter(pub, sub));
http.listen(port, () => {
  ready = true;
});

const shutdown = () => {
  io.close();
  pub.disconnect();
  sub.disconnect();
  process.exit(0);
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
