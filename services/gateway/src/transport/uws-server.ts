// The only module that imports uWebSockets.js. It turns uWS sockets into Connections, upgrade requests into
// verified identities, and HTTP requests into plain HttpRequest objects for http/routes.ts.
import * as uWS from 'uWebSockets.js';
import { randomBytes } from 'node:crypto';
import { SendStatus, type Connection, type TopicPublisher } from '../hub/client';
import type { Client } from '../hub/client';
import type { Identity } from '../auth/tokens';
import type { HttpRequest, HttpResponse } from '../http/routes';
import {
  chooseEncoding,
  jsonToMsgpack,
  Packed,
  subprotocols,
  TOKEN_SUBPROTOCOL_PREFIX,
  type Encoding,
  type OutFrame,
} from '../protocol/encoding';

/** Where the upgrade found its token, most explicit first (docs/PROTOCOL.md, "Tokens"). */
export type TokenCarrier = 'bearer' | 'subprotocol' | 'query' | 'cookie';

export interface UpgradeInfo {
  token: string | undefined;
  carrier: TokenCarrier | undefined;
  origin: string | undefined;
  /** The Host header, to tell a same-origin page from a cross-site one. */
  host: string;
  ip: string;
  /** Raw request headers a backend may authenticate with (the connect hook, when no JWT key is set). */
  cookie: string | undefined;
  authorization: string | undefined;
  userAgent: string | undefined;
  /** The `inbox` query parameter, unparsed. */
  inbox: string | undefined;
}

/** An accepted upgrade: what open() gets for the new socket. */
export interface Accepted {
  identity: Identity;
  /** The client's inbox position: its live inbox starts after it. */
  inbox?: { offset: number; epoch?: string };
}

export type UpgradeDecision = Accepted | { status: number; body: string; headers?: Record<string, string> };

/** What the transport asks of the application. */
export interface TransportHandlers {
  /**
   * Decides an upgrade: an identity to accept, or an HTTP status and JSON body to refuse with. May be
   * asynchronous (the connect hook); a client that goes away meanwhile is dropped without an upgrade.
   */
  upgrade(info: UpgradeInfo): UpgradeDecision | Promise<UpgradeDecision>;
  open(conn: Connection, accepted: Accepted): Client;
  message(client: Client, text: string, bytes: number): void;
  /** A binary frame; `data` is only valid during the call. */
  binary(client: Client, data: Uint8Array, bytes: number): void;
  drain(client: Client): void;
  /** uWS answered a ping from the client with a pong: a frame the application did not write. */
  pinged(client: Client): void;
  close(client: Client, code: number): void;
  http(req: HttpRequest): Promise<HttpResponse>;
}

export interface TransportOptions {
  host: string;
  port: number;
  maxFrameBytes: number;
  idleTimeoutS: number;
  /** uWS drops frames beyond this; the hub pauses a connection well before (SLOW_CONSUMER_BYTES). */
  maxBackpressure: number;
  maxHttpBodyBytes: number;
  /** Take the client address from X-Forwarded-For (only behind a proxy that sets it). */
  trustProxy: boolean;
  /** Cookie that may carry the token (TOKEN_COOKIE); empty: no cookie carrier. */
  tokenCookie: string;
}

interface SocketData {
  id: string;
  /** Until open() has it (not kept for the socket's life). */
  accepted?: Accepted;
  encoding: Encoding;
  /**
   * Upgraded from inside res.cork() after an asynchronous decision: the application is told of the socket on the
   * next turn, once that cork has returned, and frames that arrive meanwhile wait in `pending`. Writing to a socket
   * while the cork that upgraded it is still running can make uWS close it at once, 1006 with no frame
   * (uNetworking/uWebSockets#1928, fixed upstream by #1929; not in the uWebSockets.js build we use).
   */
  deferOpen: boolean;
  pending?: { bytes: Uint8Array; isBinary: boolean }[];
  conn?: UwsConnection;
  client?: Client;
}

/**
 * A topic no frame is ever published to. A socket in any native topic is also in this one until it closes, so uWS
 * keeps its subscriber record (and with it the frames published to the socket but not yet written, which uWS
 * writes at the end of the event-loop turn or before the socket's next send) when it leaves its last stream topic.
 * Some uWS versions drop that record, and the frames queued on it, on the last unsubscribe.
 */
const ANCHOR_TOPIC = 'anchor';

class UwsConnection implements Connection {
  open = true;
  private anchored = false;
  constructor(
    readonly id: string,
    readonly encoding: Encoding,
    private readonly ws: uWS.WebSocket<SocketData>,
  ) {}
  send(frame: OutFrame): SendStatus {
    if (!this.open) return SendStatus.DROPPED;
    if (frame instanceof Packed) return this.ws.send(frame.bytes, true) as SendStatus;
    if (this.encoding === 'json') return this.ws.send(frame, false) as SendStatus;
    return this.ws.send(jsonToMsgpack(frame), true) as SendStatus;
  }
  bufferedAmount(): number {
    return this.open ? this.ws.getBufferedAmount() : 0;
  }
  subscribe(topic: string): void {
    if (!this.open) return;
    if (!this.anchored) {
      this.ws.subscribe(ANCHOR_TOPIC);
      this.anchored = true;
    }
    this.ws.subscribe(topic);
  }
  unsubscribe(topic: string): void {
    if (this.open) this.ws.unsubscribe(topic);
  }
  close(code: number, reason: string): void {
    if (!this.open) return;
    this.open = false;
    this.ws.end(code, reason);
  }
}

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  204: '204 No Content',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  413: '413 Payload Too Large',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

function status(code: number): string {
  return STATUS_TEXT[code] ?? `${code} Status`;
}

function connectionId(): string {
  return randomBytes(9).toString('base64url');
}

export class UwsTransport implements TopicPublisher {
  private readonly app: uWS.TemplatedApp;
  private listenSocket: uWS.us_listen_socket | null = null;

  constructor(
    private readonly opts: TransportOptions,
    private readonly handlers: TransportHandlers,
  ) {
    this.app = uWS.App();
    this.app.ws<SocketData>('/ws', {
      maxPayloadLength: opts.maxFrameBytes,
      idleTimeout: opts.idleTimeoutS,
      sendPingsAutomatically: true,
      maxBackpressure: opts.maxBackpressure,
      closeOnBackpressureLimit: false,
      upgrade: (res, req, context) => this.upgrade(res, req, context),
      open: (ws) => {
        const data = ws.getUserData();
        const conn = (data.conn = new UwsConnection(data.id, data.encoding, ws));
        const accepted = data.accepted!;
        data.accepted = undefined;
        if (!data.deferOpen) {
          data.client = handlers.open(conn, accepted);
          return;
        }
        data.pending = [];
        setImmediate(() => {
          const pending = data.pending ?? [];
          data.pending = undefined;
          if (!conn.open) return; // closed meanwhile: the application never saw it
          const client = (data.client = handlers.open(conn, accepted));
          for (const m of pending) this.deliver(client, m.bytes, m.isBinary);
        });
      },
      message: (ws, message, isBinary) => {
        const data = ws.getUserData();
        if (data.client) this.deliver(data.client, new Uint8Array(message), isBinary);
        else data.pending?.push({ bytes: new Uint8Array(message.slice(0)), isBinary });
      },
      drain: (ws) => {
        const { client } = ws.getUserData();
        if (client) handlers.drain(client);
      },
      // uWS has written the pong already (before this handler runs).
      ping: (ws) => {
        const { client } = ws.getUserData();
        if (client) handlers.pinged(client);
      },
      close: (ws, code) => {
        const data = ws.getUserData();
        if (data.conn) data.conn.open = false;
        if (data.client) handlers.close(data.client, code);
      },
    });
    this.app.any('/*', (res, req) => this.http(res, req));
  }

  /** A frame to the application; `bytes` is only valid during the call unless copied. */
  private deliver(client: Client, bytes: Uint8Array, isBinary: boolean): void {
    if (isBinary) this.handlers.binary(client, bytes, bytes.byteLength);
    else this.handlers.message(client, Buffer.from(bytes).toString('utf8'), bytes.byteLength);
  }

  private upgrade(res: uWS.HttpResponse, req: uWS.HttpRequest, context: uWS.us_socket_context_t): void {
    // Copy everything out of req first: it is invalid after this callback returns.
    const key = req.getHeader('sec-websocket-key');
    const protocol = req.getHeader('sec-websocket-protocol');
    const extensions = req.getHeader('sec-websocket-extensions');
    const authorization = req.getHeader('authorization');
    const cookie = req.getHeader('cookie') || undefined;
    const origin = req.getHeader('origin') || undefined;
    const host = req.getHeader('host');
    const query = new URLSearchParams(req.getQuery() ?? '');
    const offered = subprotocols(protocol);
    const { encoding, echo } = chooseEncoding(offered);
    const { token, carrier } = findToken(
      authorization,
      offered,
      query.get('token'),
      cookie && this.opts.tokenCookie ? cookieValue(cookie, this.opts.tokenCookie) : undefined,
    );
    const inbox = query.get('inbox') ?? undefined;
    const forwarded = this.opts.trustProxy ? forwardedFor(req.getHeader('x-forwarded-for')) : undefined;
    const ip = forwarded ?? Buffer.from(res.getRemoteAddressAsText()).toString();
    const userAgent = req.getHeader('user-agent') || undefined;
    // Registered before any await: uWS invalidates res once the client goes away.
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const info: UpgradeInfo = {
      token,
      carrier,
      origin,
      host,
      ip,
      cookie,
      authorization: authorization || undefined,
      userAgent,
      inbox,
    };
    const decided = this.handlers.upgrade(info);
    if (decided instanceof Promise)
      decided.then(
        (decision) =>
          this.finishUpgrade(res, context, decision, key, encoding, echo, extensions, () => aborted, true),
        () =>
          this.finishUpgrade(
            res,
            context,
            { status: 500, body: '{"error":"internal","reason":"internal"}' },
            key,
            encoding,
            echo,
            extensions,
            () => aborted,
            true,
          ),
      );
    else this.finishUpgrade(res, context, decided, key, encoding, echo, extensions, () => aborted);
  }

  private finishUpgrade(
    res: uWS.HttpResponse,
    context: uWS.us_socket_context_t,
    decision: UpgradeDecision,
    key: string,
    encoding: Encoding,
    echo: string,
    extensions: string,
    aborted: () => boolean,
    /** Decided after the upgrade handler returned (the connect hook): see SocketData.deferOpen. */
    deferred = false,
  ): void {
    if (aborted()) return;
    res.cork(() => {
      if ('status' in decision) {
        res.writeStatus(status(decision.status)).writeHeader('content-type', 'application/json');
        for (const [k, v] of Object.entries(decision.headers ?? {})) res.writeHeader(k, v);
        res.end(decision.body);
        return;
      }
      const data: SocketData = { id: connectionId(), accepted: decision, encoding, deferOpen: deferred };
      // Only the chosen encoding is echoed (uWS echoes the first entry of what it is given); never a token.
      res.upgrade(data, key, echo, extensions, context);
    });
  }

  private http(res: uWS.HttpResponse, req: uWS.HttpRequest): void {
    const method = req.getMethod().toUpperCase();
    const path = req.getUrl();
    const query = new URLSearchParams(req.getQuery() ?? '');
    const headers = new Map<string, string>();
    req.forEach((k, v) => headers.set(k, v));
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const respond = (r: HttpResponse) => {
      if (aborted) return;
      res.cork(() => {
        res.writeStatus(status(r.status));
        res.writeHeader('content-type', r.type ?? 'application/json');
        for (const [k, v] of Object.entries(r.headers ?? {})) res.writeHeader(k, v);
        res.end(r.body);
      });
    };
    const dispatch = (body: string) =>
      this.handlers
        .http({ method, path, query, header: (name) => headers.get(name), body })
        .then(respond, () =>
          respond({ status: 500, body: '{"error":{"code":"internal","message":"internal error"}}' }),
        );
    if (method === 'GET' || method === 'HEAD') {
      void dispatch('');
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    res.onData((chunk, isLast) => {
      size += chunk.byteLength;
      if (size > this.opts.maxHttpBodyBytes) {
        if (size - chunk.byteLength <= this.opts.maxHttpBodyBytes)
          respond({ status: 413, body: '{"error":{"code":"too_large","message":"request body too large"}}' });
        aborted = true;
        return;
      }
      chunks.push(Buffer.from(chunk.slice(0)));
      if (isLast) void dispatch(Buffer.concat(chunks).toString('utf8'));
    });
  }

  /**
   * Listens with an exclusive port: uWS otherwise sets SO_REUSEPORT, and a second process started on a port in
   * use (a restart while the old one still drains, two nodes given one PORT) would silently share its connections.
   */
  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      const done = (socket: uWS.us_listen_socket | false) => {
        if (!socket)
          return reject(new Error(`cannot listen on ${this.opts.host}:${this.opts.port} (address in use?)`));
        this.listenSocket = socket;
        resolve(uWS.us_socket_local_port(socket));
      };
      // The (host, port, options, cb) form and the LIBUS_LISTEN_EXCLUSIVE_PORT export exist in uWS.js but not in
      // its typings.
      const listen = this.app.listen.bind(this.app) as unknown as (
        host: string,
        port: number,
        options: number,
        cb: (socket: uWS.us_listen_socket | false) => void,
      ) => void;
      const exclusive = (uWS as unknown as { LIBUS_LISTEN_EXCLUSIVE_PORT: number })
        .LIBUS_LISTEN_EXCLUSIVE_PORT;
      listen(this.opts.host, this.opts.port, exclusive, done);
    });
  }

  /**
   * Writes the frame to every socket subscribed to the topic (uWS `app.publish`): queued per socket and written at the
   * end of this event-loop turn, or before that socket's next send, so per socket the order of publishes and sends
   * holds. A socket over maxBackpressure is skipped without a word: the hub never lets that happen to a subscriber.
   * A JSON frame goes out as text, MessagePack bytes as binary.
   */
  publish(topic: string, frame: string | Uint8Array, binary: boolean): void {
    this.app.publish(topic, frame, binary);
  }

  /** Stops accepting connections; open sockets are left to the caller to close. */
  stopListening(): void {
    if (this.listenSocket) uWS.us_listen_socket_close(this.listenSocket);
    this.listenSocket = null;
  }

  /** Force-closes every remaining socket. */
  closeAll(): void {
    this.app.close();
  }
}

/** The address the trusted proxy appended: the last entry (earlier ones are whatever the client sent). */
function forwardedFor(header: string): string | undefined {
  const last = header.split(',').pop()?.trim();
  return last ? last : undefined;
}

/** The token from the most explicit carrier present: Authorization, subprotocol, query, then cookie. */
function findToken(
  authorization: string,
  offered: readonly string[],
  query: string | null,
  cookie: string | undefined,
): { token: string | undefined; carrier: TokenCarrier | undefined } {
  const bearer = /^Bearer\s+(.+)$/i.exec(authorization)?.[1];
  if (bearer) return { token: bearer, carrier: 'bearer' };
  const entry = offered.find((p) => p.startsWith(TOKEN_SUBPROTOCOL_PREFIX));
  if (entry) return { token: entry.slice(TOKEN_SUBPROTOCOL_PREFIX.length), carrier: 'subprotocol' };
  if (query) return { token: query, carrier: 'query' };
  if (cookie) return { token: cookie, carrier: 'cookie' };
  return { token: undefined, carrier: undefined };
}

/** The value of one cookie in a Cookie header (first occurrence), or undefined. */
function cookieValue(header: string, name: string): string | undefined {
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0 || part.slice(0, eq).trim() !== name) continue;
    const value = part.slice(eq + 1).trim();
    return value.length > 0 ? value : undefined;
  }
  return undefined;
}
