// The two kinds of load client the generator drives: our gateway over raw `ws` (docs/PROTOCOL.md), and the
// Socket.IO comparison cluster (loadtest/socketio-server.ts) over socket.io-client. Both expose the same small
// surface so every scenario runs unchanged against either system. The floor (loadtest/floor-server.ts) speaks the
// part of protocol v1 the relay client uses, so it is driven by the same client.
import WebSocket from 'ws';
import { Packr, Unpackr } from 'msgpackr';
import { io, type Socket } from 'socket.io-client';

/** What the generator puts in every message body. */
export interface Payload {
  /** Stream id: one numbering of messages (a generator's messages into one room, or one sender's DMs). */
  r: string;
  /** Sequence number within the stream, from 1. */
  s: number;
  /** Send time, microseconds of the monotonic clock (shared by every process on the machine). */
  t: number;
  /** Phase id, so late deliveries are counted against the phase that sent them. */
  k: number;
  /** Padding to the configured message size. */
  p?: string;
}

export type System = 'relay' | 'socketio' | 'floor';

/** The gateway's wire encodings (docs/PROTOCOL.md, "Encodings"); Socket.IO clients ignore this. */
export type Encoding = 'json' | 'msgpack';

const packr = new Packr({ useRecords: false, moreTypes: false, bundleStrings: false });
const unpackr = new Unpackr({
  useRecords: false,
  moreTypes: false,
  mapsAsObjects: true,
  int64AsType: 'number',
});

export interface ClientHandlers {
  /** A room message or a DM reached this connection in a frame of `wireBytes` bytes (0: not measured). */
  deliver(body: Payload, wireBytes: number): void;
  /** The server (or the network) closed a connection the generator had not closed itself. */
  lost(reason: string): void;
  /** The gateway announced a gap: `count` messages it could not deliver (protocol v1 `gap` event). */
  gap(count: number): void;
}

/** Where a connection is in a room's stream (relaychat only: the offset and epoch of its last message). */
export interface Position {
  offset: number;
  epoch: string;
}

export interface JoinResult {
  /** Only when the join resumed from a position: whether everything after it was still kept (relaychat). */
  recovered?: boolean;
}

export interface LoadClient {
  /** Joins `room`; with `since` (relaychat), replays what came after that position first. */
  join(room: string, since?: Position): Promise<JoinResult>;
  /** The last position this connection reached in `room`, to resume from after a reconnect (relaychat only). */
  position(room: string): Position | undefined;
  publish(room: string, body: Payload): Promise<void>;
  dm(to: string, body: Payload): Promise<void>;
  close(): void;
}

export interface ConnectOptions {
  url: string;
  token: string;
  localAddress?: string;
  timeoutMs: number;
  /** Gateway only: JSON text frames (default) or MessagePack binary frames. */
  encoding?: Encoding;
}

/** Monotonic microseconds (CLOCK_MONOTONIC via hrtime): comparable across processes on one machine. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

export class CommandError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

/** A reply's result fields (protocol v1 puts them next to `re` and `ok`). */
interface ReplyFields {
  offset?: number;
  epoch?: string;
  recovered?: boolean;
}

interface Pending {
  resolve(reply: ReplyFields): void;
  reject(e: Error): void;
}

/** A connection to the gateway speaking protocol v1. */
class RelayClient implements LoadClient {
  private nextId = 1;
  private pending = new Map<number, Pending>();
  private positions = new Map<string, Position>();
  private closing = false;

  constructor(
    private readonly ws: WebSocket,
    handlers: ClientHandlers,
    private readonly encoding: Encoding,
  ) {
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      const msg = (isBinary ? unpackr.unpack(data) : JSON.parse(data.toString())) as {
        type?: string;
        re?: number | null;
        ok?: boolean;
        body?: Payload;
        error?: { code: string; message: string };
        from?: number;
        to?: number;
        room?: string;
        offset?: number;
        epoch?: string;
      };
      if (msg.type === 'message' && msg.room !== undefined && typeof msg.offset === 'number')
        this.positions.set(msg.room, { offset: msg.offset, epoch: msg.epoch ?? '' });
      if (msg.type === 'message' || msg.type === 'dm') {
        if (msg.body && typeof msg.body.s === 'number') handlers.deliver(msg.body, data.length);
        return;
      }
      if (msg.type === 'gap') {
        handlers.gap(typeof msg.from === 'number' && typeof msg.to === 'number' ? msg.to - msg.from + 1 : 1);
        return;
      }
      if (typeof msg.re === 'number') {
        const p = this.pending.get(msg.re);
        if (!p) return;
        this.pending.delete(msg.re);
        if (msg.ok) p.resolve(msg);
        else p.reject(new CommandError(msg.error?.code ?? 'unknown', msg.error?.message ?? ''));
      }
    });
    ws.on('close', (code: number) => {
      for (const p of this.pending.values()) p.reject(new CommandError('closed', `socket closed (${code})`));
      this.pending.clear();
      if (!this.closing) handlers.lost(`closed ${code}`);
    });
  }

  private request(cmd: Record<string, unknown>): Promise<ReplyFields> {
    const id = this.nextId++;
    return new Promise<ReplyFields>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (this.encoding === 'msgpack') this.ws.send(packr.pack({ id, ...cmd }), { binary: true });
      else this.ws.send(JSON.stringify({ id, ...cmd }));
    });
  }

  async join(room: string, since?: Position): Promise<JoinResult> {
    const r = await this.request(since ? { type: 'join', room, since } : { type: 'join', room });
    // Live messages continue from the join reply's offset; a resumed join replays from `since` first. The floor's
    // reply carries no offset.
    if (!this.positions.has(room)) {
      if (since) this.positions.set(room, since);
      else if (typeof r.offset === 'number')
        this.positions.set(room, { offset: r.offset, epoch: r.epoch ?? '' });
    }
    return { recovered: r.recovered };
  }

  position(room: string): Position | undefined {
    return this.positions.get(room);
  }

  async publish(room: string, body: Payload): Promise<void> {
    await this.request({ type: 'publish', room, body });
  }

  async dm(to: string, body: Payload): Promise<void> {
    await this.request({ type: 'dm', to, body });
  }

  close(): void {
    this.closing = true;
    this.ws.close(1000);
  }
}

function connectRelay(opts: ConnectOptions, handlers: ClientHandlers): Promise<LoadClient> {
  return new Promise((resolve, reject) => {
    const encoding = opts.encoding ?? 'json';
    const ws = new WebSocket(
      `${opts.url}?token=${encodeURIComponent(opts.token)}`,
      [`relaychat.v1.${encoding}`],
      {
        localAddress: opts.localAddress,
        handshakeTimeout: opts.timeoutMs,
        perMessageDeflate: false,
      },
    );
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error('no welcome in time'));
    }, opts.timeoutMs);
    const fail = (e: Error) => {
      clearTimeout(timer);
      reject(e);
    };
    ws.once('error', fail);
    ws.once('unexpected-response', (_req, res) => {
      ws.terminate();
      fail(new Error(`upgrade refused: HTTP ${res.statusCode}`));
    });
    ws.once('message', (data: Buffer, isBinary: boolean) => {
      clearTimeout(timer);
      ws.off('error', fail);
      ws.on('error', () => {}); // 'close' follows and is reported there
      const welcome = (isBinary ? unpackr.unpack(data) : JSON.parse(data.toString())) as { type?: string };
      if (welcome.type !== 'welcome') {
        ws.terminate();
        reject(new Error(`expected welcome, got ${data.toString().slice(0, 100)}`));
        return;
      }
      resolve(new RelayClient(ws, handlers, encoding));
    });
  });
}

interface Ack {
  ok: boolean;
  error?: string;
}

/** A connection to the Socket.IO comparison cluster. */
class SocketIoClient implements LoadClient {
  private closing = false;

  constructor(
    private readonly socket: Socket,
    handlers: ClientHandlers,
  ) {
    socket.on('message', (m: { body?: Payload }) => {
      if (m.body && typeof m.body.s === 'number') handlers.deliver(m.body, 0);
    });
    socket.on('dm', (m: { body?: Payload }) => {
      if (m.body && typeof m.body.s === 'number') handlers.deliver(m.body, 0);
    });
    socket.on('disconnect', (reason) => {
      if (!this.closing) handlers.lost(`disconnect ${reason}`);
    });
  }

  private emit(event: string, arg: unknown): Promise<void> {
    return new Promise((resolve, reject) => {
      this.socket.emit(event, arg, (ack: Ack) => {
        if (ack.ok) resolve();
        else reject(new CommandError(ack.error ?? 'error', event));
      });
    });
  }

  async join(room: string): Promise<JoinResult> {
    await this.emit('join', room);
    return {};
  }

  position(): undefined {
    return undefined;
  }

  publish(room: string, body: Payload): Promise<void> {
    return this.emit('publish', { room, body });
  }

  dm(to: string, body: Payload): Promise<void> {
    return this.emit('dm', { to, body });
  }

  close(): void {
    this.closing = true;
    this.socket.disconnect();
  }
}

function connectSocketIo(opts: ConnectOptions, handlers: ClientHandlers): Promise<LoadClient> {
  return new Promise((resolve, reject) => {
    const socket = io(opts.url, {
      transports: ['websocket'],
      auth: { token: opts.token },
      reconnection: false,
      forceNew: true,
      timeout: opts.timeoutMs,
      // engine.io-client hands localAddress to the `ws` constructor in Node (it is not in the public types).
      ...({ localAddress: opts.localAddress } as object),
    });
    socket.once('connect', () => {
      socket.off('connect_error');
      resolve(new SocketIoClient(socket, handlers));
    });
    socket.once('connect_error', (e) => {
      socket.disconnect();
      reject(e);
    });
  });
}

export function connect(system: System, opts: ConnectOptions, handlers: ClientHandlers): Promise<LoadClient> {
  return system === 'socketio' ? connectSocketIo(opts, handlers) : connectRelay(opts, handlers);
}
