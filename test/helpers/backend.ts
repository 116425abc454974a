// A real HTTP server that plays the application's backend for hook and webhook tests: every request is
// recorded (headers, raw body), and the answer is whatever the test's handler says: allow, deny, rewrite, a
// slow answer, garbage, a closed socket, or the server down altogether (stop(), then start() on the same port).
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { Socket } from 'node:net';

export interface BackendRequest {
  path: string;
  headers: IncomingMessage['headers'];
  raw: string;
  json: Record<string, unknown>;
  at: number;
  socket: Socket;
  /** The status written back, once written on a live socket (undefined: not answered, or the caller was gone). */
  answered?: number;
}

/** What to answer: a JSON value (200), or a full answer; 'destroy' drops the socket without a reply. */
export type Answer = unknown | { status: number; body: string } | 'destroy';

export type Handler = (req: BackendRequest) => Answer | Promise<Answer>;

export interface FakeBackend {
  url: string;
  port: number;
  requests: BackendRequest[];
  /** Requests received whose answer is still pending. */
  pending(): number;
  handle(handler: Handler): void;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export function raw(status: number, body: string): { status: number; body: string } {
  return { status, body };
}

export async function startBackend(handler: Handler = () => ({ allow: true })): Promise<FakeBackend> {
  let current = handler;
  const requests: BackendRequest[] = [];
  const sockets = new Set<Socket>();
  let inflight = 0;
  let server: Server;
  let port = 0;

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json: Record<string, unknown> = {};
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        // recorded as {}
      }
      const r: BackendRequest = {
        path: req.url ?? '/',
        headers: req.headers,
        raw: text,
        json,
        at: Date.now(),
        socket: req.socket,
      };
      requests.push(r);
      inflight++;
      void Promise.resolve(current(r))
        .then((answer) => {
          if (answer === 'destroy') return void req.socket.destroy();
          if (req.socket.destroyed) return;
          if (
            typeof answer === 'object' &&
            answer !== null &&
            'status' in answer &&
            'body' in answer &&
            typeof (answer as { body: unknown }).body === 'string'
          ) {
            const a = answer as { status: number; body: string };
            res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body);
            r.answered = a.status;
          } else {
            res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
            r.answered = 200;
          }
        })
        .catch(() => req.socket.destroy())
        .finally(() => inflight--);
    });
  };

  const start = async () => {
    server = createServer(onRequest);
    server.keepAliveTimeout = 60_000;
    server.on('connection', (s: Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    port = (server.address() as { port: number }).port;
  };
  await start();

  return {
    get url() {
      return `http://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    requests,
    pending: () => inflight,
    handle: (h) => {
      current = h;
    },
    start,
    stop: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

/** A promise and its resolver: a backend answer held until the test releases it. */
export function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}
