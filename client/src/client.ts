import { backoffDelay, type BackoffOptions } from './backoff';
import {
  decodeFrame,
  encodeCommand,
  SUBPROTOCOLS,
  TOKEN_SUBPROTOCOL_PREFIX,
  tokenFitsSubprotocol,
  type Encoding,
} from './codec';
import { Emitter } from './emitter';
import { ChatError } from './errors';
import { randomKey } from './ids';
import { CLOSE, MalformedFrameError, validateResult, validateServerFrame } from '../../protocol';
import {
  type Command,
  type DirectMessageEvent,
  type DirectMessageResult,
  type GapEvent,
  type LeftEvent,
  type HistoryResult,
  type InboxResult,
  type JoinResult,
  type LeaveResult,
  type MessageEvent,
  type PingResult,
  type PresenceEvent,
  type PresenceResult,
  type PublishResult,
  type ReplyFrame,
  type ResultMap,
  type Since,
  type WelcomeFrame,
} from './protocol';

// Handler properties are declared bivariant (the method-signature trick) so that both the DOM WebSocket and the
// `ws` package's class, whose event types carry more fields, are assignable.
type Handler<E> = { bivarianceHack(event: E): void }['bivarianceHack'];

/** The part of the WHATWG WebSocket the client uses; the browser global and the `ws` package both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  /** Set to 'arraybuffer' for MessagePack (browsers default to Blob; `ws` gives Buffers either way). */
  binaryType?: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  onmessage: Handler<{ data: unknown }> | null;
  onclose: Handler<{ code: number; reason: string }> | null;
  onerror: Handler<unknown> | null;
}

export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** Returns a token (JWT). Called before every connection attempt and before `expiresAt` to `refresh`. */
export type TokenGetter = (reason: 'connect' | 'refresh') => string | Promise<string>;

export type ConnectionState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting';

export interface ChatClientOptions {
  /** One gateway URL or several (ws://host:port/ws); reconnects rotate through them. */
  url: string | readonly string[];
  /** A fixed token, or a function that fetches a fresh one (needed to survive token expiry). */
  token: string | TokenGetter;
  /** WebSocket implementation. Default: globalThis.WebSocket. In Node pass `WebSocket` from 'ws'. */
  WebSocket?: WebSocketConstructor;
  /**
   * Wire encoding: 'json' (text frames, the default) or 'msgpack' (binary MessagePack frames; a binary `body`
   * may then be a Uint8Array). Clients of both encodings share rooms; see docs/PROTOCOL.md, "Encodings".
   */
  encoding?: Encoding;
  /**
   * Where the token travels: 'subprotocol' (the Sec-WebSocket-Protocol header, default; kept out of URLs and so
   * out of proxy logs) or 'query' (`?token=`, the least private). A token that is not an HTTP token (e.g. has
   * `=` padding) goes in the query whatever this says.
   */
  tokenCarrier?: 'subprotocol' | 'query';
  /** Per-command timeout, from the call until the reply, including time spent queued. Default 10000. */
  commandTimeoutMs?: number;
  /** Time allowed from opening a socket to the end of resubscription. Default 10000. */
  connectTimeoutMs?: number;
  /** Reconnect delays (exponential, full jitter). Defaults: 250 ms initial, 10 s cap, factor 2. */
  backoff?: BackoffOptions;
  /** Commands held while not connected; further commands reject with `queue_full`. Default 100. */
  maxQueue?: number;
  /** Refresh the token this long before `expiresAt` (at most half the remaining lifetime). Default 60000. */
  refreshBeforeMs?: number;
  /** Ping an idle connection this often to detect a dead peer; 0 disables. Default 20000. */
  pingIntervalMs?: number;
  /**
   * On the first connection, replay stored DMs after this inbox position (`{offset: 0}`: all stored). Later
   * connections resume from the last DM delivered. Default: none (the first connection starts live).
   */
  inboxSince?: Since;
  /** Randomness for backoff jitter (tests). Default Math.random. */
  random?: () => number;
}

export interface StateChange {
  state: ConnectionState;
  previous: ConnectionState;
  /** Node id from the welcome frame (when connected). */
  node?: string;
  /** URL being connected to, or the next one to try. */
  url?: string;
  /** Reconnect attempt number (1-based) when reconnecting. */
  attempt?: number;
  /** Delay before the next attempt when reconnecting. */
  delayMs?: number;
}

export interface ConnectedInfo {
  node: string;
  user: string;
  session: string;
  url: string;
  expiresAt: number | null;
  /** True when this is a reconnection (rooms were rejoined with `since`). */
  resumed: boolean;
}

export interface DisconnectedInfo {
  code: number;
  reason: string;
  willReconnect: boolean;
}

export interface PresenceChange {
  room: string;
  /**
   * `sync`: the full list was replaced from a join reply. `join`/`leave`: one user (`user`) changed. `batch`:
   * several changed at once (see `joined` and `left`).
   */
  event: 'join' | 'leave' | 'sync' | 'batch';
  user?: string;
  /** Users who joined (empty for `sync`). */
  joined: string[];
  /** Users who left (empty for `sync`). */
  left: string[];
  presence: string[];
}

/**
 * Messages that were not delivered. Emitted for a server `gap` event (`reason: 'gap'`; the server then replays
 * what it still keeps), for an offset skipped inside one epoch (`'skipped'`), and for an inbox a server that
 * predates `?inbox=` could not recover (`'not_recovered'`). Page `history` to fill it where possible.
 */
export interface GapInfo {
  room?: string;
  inbox?: true;
  /** First missing offset. */
  from: number;
  /** Last missing offset, when known. */
  to?: number;
  epoch: string;
  /** The epoch the client had; when it differs from `epoch` the history was reset and offsets restarted. */
  previousEpoch?: string;
  reason: 'gap' | 'not_recovered' | 'skipped';
}

export interface ChatClientEvents {
  state: StateChange;
  connected: ConnectedInfo;
  disconnected: DisconnectedInfo;
  message: MessageEvent;
  dm: DirectMessageEvent;
  presence: PresenceChange;
  gap: GapInfo;
  /** The node announced it is draining; the client reconnects elsewhere on the following close. */
  draining: { reason: string };
  /** A background failure (token getter, refresh, rejoin). Commands report their own errors by rejecting. */
  error: Error;
  /**
   * The server ended the session for good: the token was revoked (4004), or it expired and there is no getter to
   * fetch a new one (4001). The client is closed and does not reconnect; sign in again with a new token.
   */
  signedOut: { code: number; reason: string };
  /** Rooms left by the server because a refreshed token no longer allows them; they are not rejoined. */
  left: { rooms: string[]; reason: string };
}

export interface CommandOptions {
  timeoutMs?: number;
}

export interface SendOptions extends CommandOptions {
  /** Idempotency key (≤ 64 chars); generated when absent. Retries reuse it, so a message is stored once. */
  key?: string;
}

interface Pending {
  cmd: Command;
  id: number;
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  timer: ReturnType<typeof setTimeout> | undefined;
  /** Internal commands (rejoin, inbox, refresh, ping) belong to one socket and are dropped with it. */
  internal: boolean;
}

interface RoomState {
  /** The server acknowledged the join; rejoined after reconnect. */
  joined: boolean;
  /** Offset of the last message delivered to the application. */
  offset: number | undefined;
  /** The room's latest offset when joined, used as `since` if no message arrived yet. */
  base: number | undefined;
  epoch: string | undefined;
  presence: Set<string>;
}

type JoinCommand = Extract<Command, { type: 'join' }>;

const OPEN = 1;
const DM_ID_MEMORY = 2000;

export class ChatClient extends Emitter<ChatClientEvents> {
  private readonly urls: readonly string[];
  private readonly WS: WebSocketConstructor;
  private readonly opts: Required<
    Pick<
      ChatClientOptions,
      'commandTimeoutMs' | 'connectTimeoutMs' | 'maxQueue' | 'refreshBeforeMs' | 'pingIntervalMs'
    >
  >;
  private readonly random: () => number;

  private _state: ConnectionState = 'disconnected';
  private ws: WebSocketLike | undefined;
  private wsUrl = '';
  private urlIndex = 0;
  private attempt = 0;
  private everConnected = false;
  private closed = false;
  private started = false;
  private welcome: WelcomeFrame | undefined;
  private nextId = 1;

  private readonly queue: Pending[] = [];
  private readonly inflight = new Map<number, Pending>();
  private flushing = false;

  private readonly roomStates = new Map<string, RoomState>();
  private inbox: { offset: number | undefined; epoch: string | undefined } = {
    offset: undefined,
    epoch: undefined,
  };
  private readonly seenDmIds = new Set<string>();

  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private pingTimer: ReturnType<typeof setInterval> | undefined;
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;
  private lastFrameAt = 0;

  private connectWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];

  constructor(private readonly options: ChatClientOptions) {
    super();
    this.urls = typeof options.url === 'string' ? [options.url] : [...options.url];
    if (this.urls.length === 0) throw new TypeError('ChatClient: at least one gateway URL is required');
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (!WS)
      throw new TypeError(
        'ChatClient: no global WebSocket; pass the `WebSocket` option (Node: the ws package)',
      );
    this.WS = WS;
    this.opts = {
      commandTimeoutMs: options.commandTimeoutMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      maxQueue: options.maxQueue ?? 100,
      refreshBeforeMs: options.refreshBeforeMs ?? 60_000,
      pingIntervalMs: options.pingIntervalMs ?? 20_000,
    };
    this.random = options.random ?? Math.random;
  }

  // ---------------------------------------------------------------- public state

  get state(): ConnectionState {
    return this._state;
  }

  /** Node id of the current connection (from welcome), or undefined when not connected. */
  get node(): string | undefined {
    return this._state === 'connected' ? this.welcome?.node : undefined;
  }

  /** The user id the gateway took from the token, once a welcome arrived. */
  get user(): string | undefined {
    return this.welcome?.user;
  }

  get session(): string | undefined {
    return this._state === 'connected' ? this.welcome?.session : undefined;
  }

  /** URL of the current (or last) connection. */
  get url(): string {
    return this.wsUrl;
  }

  /** Rooms joined (acknowledged), rejoined automatically after a reconnect. */
  rooms(): string[] {
    return [...this.roomStates].filter(([, st]) => st.joined).map(([room]) => room);
  }

  /** Users present in a joined room, kept from the join reply and presence events. */
  presence(room: string): string[] {
    return [...(this.roomStates.get(room)?.presence ?? [])].sort();
  }

  /** Commands waiting for a connection. */
  get queued(): number {
    return this.queue.length;
  }

  // ---------------------------------------------------------------- lifecycle

  /**
   * Starts connecting (if not already) and resolves once connected; rejects only if the client is closed first.
   * The first command starts the connection too.
   */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new ChatError('closed', 'client is closed'));
    if (this._state === 'connected') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    this.start();
    return p;
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    void this.open();
  }

  /** Closes for good: no reconnect, pending and queued commands reject with `closed`. */
  close(): void {
    if (this.closed) return;
    this.shutdown(new ChatError('closed', 'client closed'));
  }

  // ---------------------------------------------------------------- commands

  /** Sends any protocol command and resolves with its reply fields; rejects with ChatError. */
  request<T extends Command['type']>(
    cmd: Extract<Command, { type: T }>,
    opts: CommandOptions = {},
  ): Promise<ResultMap[T]> {
    return this.enqueue(cmd, opts.timeoutMs ?? this.opts.commandTimeoutMs, false) as Promise<ResultMap[T]>;
  }

  /**
   * Joins a room. Once acknowledged the room is rejoined after every reconnect with `since` set to the last
   * delivered offset, so missed messages are replayed in order (or a `gap` event says they cannot be).
   * `since` here replays stored messages after that offset right away.
   */
  async join(room: string, opts: CommandOptions & { since?: Since } = {}): Promise<JoinResult> {
    let st = this.roomStates.get(room);
    if (!st) {
      st = { joined: false, offset: undefined, base: undefined, epoch: undefined, presence: new Set() };
      this.roomStates.set(room, st);
    }
    const since = opts.since;
    if (since && !st.joined) {
      st.offset = since.offset;
      st.epoch = since.epoch;
    }
    const cmd: JoinCommand = since ? { type: 'join', room, since } : { type: 'join', room };
    let reply: JoinResult;
    try {
      reply = await this.request(cmd, opts);
    } catch (err) {
      if (!st.joined && this.roomStates.get(room) === st) this.roomStates.delete(room);
      throw err;
    }
    this.applyJoin(room, st, reply, since);
    return reply;
  }

  /** Leaves a room; it is no longer rejoined. Leaving while disconnected completes locally. */
  async leave(room: string, opts: CommandOptions = {}): Promise<LeaveResult> {
    const st = this.roomStates.get(room);
    this.roomStates.delete(room);
    if (st) {
      // A join still waiting for a connection is dropped rather than sent after the leave.
      for (let i = this.queue.length - 1; i >= 0; i--) {
        const p = this.queue[i]!;
        if (p.cmd.type === 'join' && p.cmd.room === room) {
          this.queue.splice(i, 1);
          this.settle(p, undefined, new ChatError('closed', `left ${room} before the join was sent`));
        }
      }
      // Not connected: the next connection will simply not rejoin it.
      if (this._state !== 'connected') return { room };
    }
    try {
      return await this.request({ type: 'leave', room }, opts);
    } catch (err) {
      if (st && err instanceof ChatError && err.code === 'not_member') return { room };
      throw err;
    }
  }

  /**
   * Publishes to a joined room. The idempotency key (generated when absent) is kept across a reconnect: a publish
   * in flight when the connection drops is sent again with the same key, and the server stores it once.
   */
  async publish(room: string, body: unknown, opts: SendOptions = {}): Promise<PublishResult> {
    const key = opts.key ?? randomKey();
    const r = await this.request({ type: 'publish', room, body, key }, opts);
    return { ...r, key };
  }

  /** Sends a direct message; same idempotency and retry rules as `publish`. */
  async dm(to: string, body: unknown, opts: SendOptions = {}): Promise<DirectMessageResult> {
    const key = opts.key ?? randomKey();
    const r = await this.request({ type: 'dm', to, body, key }, opts);
    this.rememberDm(r.id);
    return { ...r, key };
  }

  /** Stored messages of a room, oldest first, all with offset < `before` (default: the latest ones). */
  history(
    room: string,
    opts: CommandOptions & { limit?: number; before?: number } = {},
  ): Promise<HistoryResult> {
    const cmd: Extract<Command, { type: 'history' }> = { type: 'history', room };
    if (opts.limit !== undefined) cmd.limit = opts.limit;
    if (opts.before !== undefined) cmd.before = opts.before;
    return this.request(cmd, opts);
  }

  /** Asks the server for a room's presence (the local view is `presence(room)`). */
  fetchPresence(room: string, opts: CommandOptions = {}): Promise<PresenceResult> {
    return this.request({ type: 'presence', room }, opts);
  }

  ping(opts: CommandOptions = {}): Promise<PingResult> {
    return this.request({ type: 'ping' }, opts);
  }

  // ---------------------------------------------------------------- command plumbing

  private enqueue(cmd: Command, timeoutMs: number, internal: boolean): Promise<unknown> {
    if (this.closed)
      return Promise.reject(new ChatError('closed', 'client is closed', { command: cmd.type }));
    return new Promise((resolve, reject) => {
      const p: Pending = { cmd, id: 0, resolve, reject, timer: undefined, internal };
      p.timer = setTimeout(() => this.onTimeout(p, timeoutMs), timeoutMs);
      if (internal || (this._state === 'connected' && !this.flushing)) {
        this.transmit(p);
        return;
      }
      this.start(); // the first command connects, as connect() would
      if (this.queue.length >= this.opts.maxQueue) {
        this.settle(
          p,
          undefined,
          new ChatError('queue_full', `${this.queue.length} commands already wait for a connection`, {
            command: cmd.type,
          }),
        );
        return;
      }
      this.queue.push(p);
    });
  }

  private transmit(p: Pending): void {
    const ws = this.ws;
    if (!ws || ws.readyState !== OPEN) {
      if (p.internal) this.settle(p, undefined, new ChatError('unavailable', 'connection lost'));
      else this.queue.unshift(p);
      return;
    }
    p.id = this.nextId++;
    this.inflight.set(p.id, p);
    ws.send(encodeCommand(this.options.encoding ?? 'json', { ...p.cmd, id: p.id }));
  }

  private onTimeout(p: Pending, timeoutMs: number): void {
    p.timer = undefined;
    const i = this.queue.indexOf(p);
    if (i >= 0) this.queue.splice(i, 1);
    if (p.id) this.inflight.delete(p.id);
    p.reject(
      new ChatError('timeout', `no reply to ${p.cmd.type} within ${timeoutMs} ms`, { command: p.cmd.type }),
    );
  }

  private settle(p: Pending, value: unknown, err?: Error): void {
    if (p.timer !== undefined) clearTimeout(p.timer);
    p.timer = undefined;
    if (p.id) this.inflight.delete(p.id);
    if (err) p.reject(err);
    else p.resolve(value);
  }

  /** Sends the queued commands in order; a join is awaited before what follows it (a publish needs it). */
  private async flush(ws: WebSocketLike): Promise<void> {
    if (this.flushing) return;
    this.flushing = true;
    try {
      while (this.queue.length > 0 && this.ws === ws && this._state === 'connected') {
        const p = this.queue.shift()!;
        if (p.cmd.type === 'join') {
          const done = new Promise<void>((res) => {
            const { resolve, reject } = p;
            p.resolve = (v) => (resolve(v), res());
            p.reject = (e) => (reject(e), res());
          });
          this.transmit(p);
          await done;
        } else {
          this.transmit(p);
        }
      }
    } finally {
      this.flushing = false;
    }
  }

  // ---------------------------------------------------------------- connection

  private async open(): Promise<void> {
    this.reconnectTimer = undefined;
    if (this.closed) return;
    const url = this.urls[this.urlIndex % this.urls.length]!;
    this.setState(this.everConnected || this.attempt > 0 ? 'reconnecting' : 'connecting', { url });
    let token: string;
    try {
      token =
        typeof this.options.token === 'string' ? this.options.token : await this.options.token('connect');
    } catch (err) {
      this.emit('error', asError(err, 'token getter failed'));
      this.scheduleReconnect();
      return;
    }
    if (this.closed) return;
    const target = new URL(url);
    const encoding = this.options.encoding ?? 'json';
    const protocols = [SUBPROTOCOLS[encoding]];
    if ((this.options.tokenCarrier ?? 'subprotocol') === 'subprotocol' && tokenFitsSubprotocol(token))
      protocols.push(TOKEN_SUBPROTOCOL_PREFIX + token);
    else target.searchParams.set('token', token);
    // The inbox resumes where this client left it: the server starts the connection's inbox right there.
    const inbox = this.inboxPosition();
    if (inbox) target.searchParams.set('inbox', `${inbox.offset}${inbox.epoch ? `:${inbox.epoch}` : ''}`);
    let ws: WebSocketLike;
    try {
      ws = new this.WS(target.toString(), protocols);
      if (encoding === 'msgpack') ws.binaryType = 'arraybuffer';
    } catch (err) {
      this.emit('error', asError(err, `cannot open ${url}`));
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.wsUrl = url;
    this.connectTimer = setTimeout(() => {
      this.connectTimer = undefined;
      this.abandon(ws, 4000, 'connect timeout');
    }, this.opts.connectTimeoutMs);
    ws.onmessage = (ev) => {
      if (this.ws === ws) this.onFrame(ws, ev.data);
    };
    ws.onclose = (ev) => {
      if (this.ws === ws) this.onSocketClosed(ev.code, ev.reason);
    };
    ws.onerror = () => {
      // A close event follows; the error itself carries nothing useful in browsers.
    };
  }

  /** Drops a socket without waiting for a close handshake a dead peer would never answer. */
  private abandon(ws: WebSocketLike, code: number, reason: string): void {
    if (this.ws !== ws) return;
    try {
      ws.close(code, reason);
    } catch {
      // already closing
    }
    this.onSocketClosed(code, reason);
  }

  private onSocketClosed(code: number, reason: string): void {
    this.ws = undefined;
    this.clearConnectionTimers();
    // Commands sent on the dead socket: user commands are sent again on the next connection, before the queue
    // (publish/dm with the same key, so at most one copy is stored); a leave is complete, since the next
    // connection will not rejoin; internal ones belong to this socket.
    const carried: Pending[] = [];
    for (const p of [...this.inflight.values()].sort((a, b) => a.id - b.id)) {
      this.inflight.delete(p.id);
      if (p.internal) {
        this.settle(p, undefined, new ChatError('unavailable', 'connection lost', { command: p.cmd.type }));
      } else if (p.cmd.type === 'leave') {
        this.settle(p, { room: p.cmd.room });
      } else {
        p.id = 0;
        carried.push(p);
      }
    }
    this.queue.unshift(...carried);

    const signedOut =
      code === CLOSE.tokenRevoked || (code === CLOSE.tokenExpired && typeof this.options.token === 'string');
    const fatal =
      code === CLOSE.kicked
        ? new ChatError('closed', `disconnected by the server (${code}${reason ? `: ${reason}` : ''})`)
        : code === CLOSE.tokenRevoked
          ? new ChatError('unauthorized', 'signed out: the token was revoked')
          : signedOut
            ? new ChatError('unauthorized', 'token expired and no token getter was given to fetch a new one')
            : undefined;
    const willReconnect = !this.closed && !fatal;
    this.emit('disconnected', { code, reason, willReconnect });
    if (this.closed) return;
    if (fatal) {
      if (signedOut) this.emit('signedOut', { code, reason });
      this.emit('error', fatal);
      this.shutdown(fatal);
      return;
    }
    // Over MAX_CONNECTIONS_PER_USER: a place may free up; the backoff below spaces the attempts.
    if (code === CLOSE.tooManyConnections) this.emit('error', new ChatError('rate_limited', reason));
    this.urlIndex++;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    const delayMs = backoffDelay(this.attempt, this.options.backoff, this.random);
    this.attempt++;
    const url = this.urls[this.urlIndex % this.urls.length]!;
    this.setState('reconnecting', { attempt: this.attempt, delayMs, url });
    this.reconnectTimer = setTimeout(() => void this.open(), delayMs);
  }

  /** Every frame is checked by the shared protocol validator first; a malformed one is an `error` event. */
  private onFrame(ws: WebSocketLike, data: unknown): void {
    this.lastFrameAt = Date.now();
    const encoding = this.options.encoding ?? 'json';
    const decoded = decodeFrame(encoding, data);
    let incoming;
    try {
      if (decoded === undefined) throw new MalformedFrameError(`not a ${encoding} frame`);
      incoming = validateServerFrame(decoded);
    } catch (err) {
      if (!(err instanceof MalformedFrameError)) throw err;
      this.emit('error', new ChatError('bad_frame', `malformed frame from the server: ${err.message}`));
      return;
    }
    if (incoming.kind === 'unknown') return; // unknown event types are ignored (protocol v1 only grows)
    if (incoming.kind === 'reply') {
      this.onReply(incoming.frame);
      return;
    }
    const frame = incoming.frame;
    switch (frame.type) {
      case 'welcome':
        void this.onWelcome(ws, frame);
        return;
      case 'message':
        this.onMessage(frame);
        return;
      case 'dm':
        this.onDm(frame);
        return;
      case 'presence':
        this.onPresence(frame);
        return;
      case 'gap':
        this.onGap(frame);
        return;
      case 'reconnect':
        this.emit('draining', { reason: frame.reason });
        return;
      case 'left':
        this.onLeft(frame);
        return;
    }
  }

  private onLeft(frame: LeftEvent): void {
    for (const room of frame.rooms) this.roomStates.delete(room);
    this.emit('left', { rooms: frame.rooms, reason: frame.reason });
  }

  private onReply(frame: ReplyFrame): void {
    if (frame.re === null) {
      this.emit(
        'error',
        new ChatError(frame.ok ? 'internal' : frame.error.code, 'reply without a command id'),
      );
      return;
    }
    const p = this.inflight.get(frame.re);
    if (!p) return; // timed out already
    if (frame.ok) {
      const { re: _re, ok: _ok, ...fields } = frame;
      try {
        this.settle(p, validateResult(p.cmd.type, fields));
      } catch (err) {
        if (!(err instanceof MalformedFrameError)) throw err;
        this.settle(p, undefined, new ChatError('bad_frame', err.message, { command: p.cmd.type }));
      }
    } else {
      this.settle(p, undefined, ChatError.fromWire(frame.error, p.cmd.type));
    }
  }

  /** The inbox position to connect with: the last DM delivered, or `inboxSince` the first time. */
  private inboxPosition(): Since | undefined {
    if (this.inbox.offset !== undefined) return { offset: this.inbox.offset, epoch: this.inbox.epoch };
    return this.everConnected ? undefined : this.options.inboxSince;
  }

  private async onWelcome(ws: WebSocketLike, welcome: WelcomeFrame): Promise<void> {
    this.welcome = welcome;
    const resumed = this.everConnected;
    // The server started this connection's inbox here; DMs (and a gap for what is gone) follow from it.
    if (welcome.inbox) this.inbox = { offset: welcome.inbox.offset, epoch: welcome.inbox.epoch };
    try {
      await this.resubscribe();
    } catch (err) {
      if (this.ws !== ws) return; // the socket died meanwhile; its close already scheduled the reconnect
      // A retryable failure: try another connection rather than run without the rooms.
      this.emit('error', asError(err, 'resubscribe failed'));
      this.abandon(ws, 4000, 'resubscribe failed');
      return;
    }
    if (this.ws !== ws) return;
    if (this.connectTimer !== undefined) clearTimeout(this.connectTimer);
    this.connectTimer = undefined;
    this.everConnected = true;
    this.attempt = 0;
    this.setState('connected', { node: welcome.node, url: this.wsUrl });
    this.emit('connected', {
      node: welcome.node,
      user: welcome.user,
      session: welcome.session,
      url: this.wsUrl,
      expiresAt: welcome.expiresAt,
      resumed,
    });
    for (const w of this.connectWaiters.splice(0)) w.resolve();
    this.scheduleRefresh(welcome.expiresAt);
    this.startPing(ws);
    void this.flush(ws);
  }

  /** Rejoins acknowledged rooms with `since` and resumes the inbox; resolves when every reply arrived. */
  private async resubscribe(): Promise<void> {
    const timeout = this.opts.connectTimeoutMs;
    const tasks: Promise<void>[] = [];
    for (const [room, st] of this.roomStates) {
      if (!st.joined) continue;
      const from = st.offset ?? st.base;
      const since: Since | undefined = from === undefined ? undefined : { offset: from, epoch: st.epoch };
      const cmd: Command = since ? { type: 'join', room, since } : { type: 'join', room };
      tasks.push(
        (this.enqueue(cmd, timeout, true) as Promise<JoinResult>).then(
          (reply) => this.applyJoin(room, st, reply, since),
          (err: unknown) => {
            if (err instanceof ChatError && !err.retryable) {
              // e.g. forbidden after a token change: the room is gone; say so and carry on with the rest.
              if (this.roomStates.get(room) === st) this.roomStates.delete(room);
              this.emit('error', err);
              return;
            }
            throw err;
          },
        ),
      );
    }
    // A server that predates `?inbox=` says nothing of the inbox in its welcome: resume it with a command.
    if (this.welcome?.inbox === undefined) tasks.push(this.resumeInbox(timeout));
    await Promise.all(tasks);
  }

  private resumeInbox(timeout: number): Promise<void> {
    const inboxSince = this.inboxPosition();
    const inboxCmd: Command = inboxSince ? { type: 'inbox', since: inboxSince } : { type: 'inbox' };
    return (this.enqueue(inboxCmd, timeout, true) as Promise<InboxResult>).then((reply) =>
      this.applyInbox(reply, inboxSince),
    );
  }

  private applyJoin(room: string, st: RoomState, reply: JoinResult, since: Since | undefined): void {
    if (this.roomStates.get(room) !== st) return; // left meanwhile
    st.joined = true;
    const sameEpoch = since !== undefined && (since.epoch === undefined || since.epoch === reply.epoch);
    if (since && reply.recovered === false) {
      // The server replays what it still keeps after a `gap` event for what is gone (or a new epoch). Only a
      // position ahead of the store (it lost messages in a crash) is reset to the latest offset.
      if (sameEpoch && since.offset > reply.offset) {
        st.offset = reply.offset;
        st.epoch = reply.epoch;
      }
    } else if (since) {
      st.epoch = reply.epoch;
      if (st.offset === undefined) st.offset = since.offset;
    } else {
      st.base = reply.offset;
      if (st.epoch === undefined) st.epoch = reply.epoch;
    }
    st.presence = new Set(reply.presence);
    this.emit('presence', { room, event: 'sync', joined: [], left: [], presence: this.presence(room) });
  }

  private applyInbox(reply: InboxResult, since: Since | undefined): void {
    if (since && reply.recovered === false) {
      const sameEpoch = since.epoch === undefined || since.epoch === reply.epoch;
      this.emit('gap', {
        inbox: true,
        from: since.offset + 1,
        to: sameEpoch ? reply.offset : undefined,
        epoch: reply.epoch,
        previousEpoch: since.epoch,
        reason: 'not_recovered',
      });
      this.inbox = { offset: reply.offset, epoch: reply.epoch };
    } else if (since) {
      this.inbox.epoch = reply.epoch;
      if (this.inbox.offset === undefined) this.inbox.offset = since.offset;
    } else {
      this.inbox = {
        offset: Math.max(this.inbox.offset ?? -Infinity, reply.offset),
        epoch: reply.epoch,
      };
    }
  }

  private onMessage(ev: MessageEvent): void {
    const st = this.roomStates.get(ev.room);
    if (!st) return; // left
    if (st.epoch !== undefined && ev.epoch !== st.epoch) {
      // History reset (the server reports the gap itself); offsets restart.
      st.offset = undefined;
    } else if (st.offset !== undefined) {
      if (ev.offset <= st.offset) return; // duplicate (room, offset)
      if (ev.offset > st.offset + 1) {
        this.emit('gap', {
          room: ev.room,
          from: st.offset + 1,
          to: ev.offset - 1,
          epoch: ev.epoch,
          reason: 'skipped',
        });
      }
    }
    st.offset = ev.offset;
    st.epoch = ev.epoch;
    this.emit('message', ev);
  }

  private onDm(ev: DirectMessageEvent): void {
    if (this.inbox.epoch === ev.epoch && this.inbox.offset !== undefined) {
      this.inbox.offset = Math.max(this.inbox.offset, ev.offset);
    } else {
      this.inbox = { offset: ev.offset, epoch: ev.epoch };
    }
    // The only repeat is this client's own DM (answered by its reply, then replayed from its inbox copy).
    if (this.seenDmIds.has(ev.id)) return;
    this.rememberDm(ev.id);
    this.emit('dm', ev);
  }

  private rememberDm(id: string): void {
    this.seenDmIds.add(id);
    if (this.seenDmIds.size > DM_ID_MEMORY) {
      const oldest = this.seenDmIds.values().next().value;
      if (oldest !== undefined) this.seenDmIds.delete(oldest);
    }
  }

  private onPresence(ev: PresenceEvent): void {
    const st = this.roomStates.get(ev.room);
    if (!st) return;
    // Protocol 1 servers sent one change per frame (`event`, `user`); batches carry `joined` and `left`.
    const strings = (v: unknown): string[] =>
      Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
    let joined = strings(ev.joined);
    let left = strings(ev.left);
    if (ev.joined === undefined && ev.left === undefined && typeof ev.user === 'string') {
      if (ev.event === 'join') joined = [ev.user];
      else if (ev.event === 'leave') left = [ev.user];
    }
    if (joined.length + left.length === 0) return;
    for (const user of joined) st.presence.add(user);
    for (const user of left) st.presence.delete(user);
    const one = joined.length + left.length === 1;
    this.emit('presence', {
      room: ev.room,
      event: one ? (joined.length === 1 ? 'join' : 'leave') : 'batch',
      user: one ? (joined[0] ?? left[0]) : undefined,
      joined,
      left,
      presence: this.presence(ev.room),
    });
  }

  /** A gap event: the position moves past it (to 0 of the new epoch for a reset), and the app is told. */
  private onGap(ev: GapEvent): void {
    const to = ev.to ?? 0;
    const info: GapInfo = { from: ev.from, epoch: ev.epoch, reason: 'gap' };
    if (ev.to !== null) info.to = ev.to;
    if (ev.inbox) {
      const previousEpoch = this.inbox.epoch;
      const kept = previousEpoch === ev.epoch ? (this.inbox.offset ?? 0) : 0;
      this.inbox = { offset: Math.max(to, kept), epoch: ev.epoch };
      this.emit('gap', { inbox: true, ...info, previousEpoch });
      return;
    }
    if (ev.room === undefined) return;
    const st = this.roomStates.get(ev.room);
    if (!st) return;
    const previousEpoch = st.epoch;
    st.offset = previousEpoch === ev.epoch && st.offset !== undefined ? Math.max(st.offset, to) : to;
    st.epoch = ev.epoch;
    this.emit('gap', { room: ev.room, ...info, previousEpoch });
  }

  // ---------------------------------------------------------------- timers

  private scheduleRefresh(expiresAt: number | null): void {
    if (this.refreshTimer !== undefined) clearTimeout(this.refreshTimer);
    this.refreshTimer = undefined;
    const getter = this.options.token;
    if (expiresAt === null || typeof getter === 'string') return;
    const remaining = expiresAt - Date.now();
    const lead = Math.min(this.opts.refreshBeforeMs, remaining / 2);
    const delay = Math.min(Math.max(0, remaining - lead), 2 ** 31 - 1);
    this.refreshTimer = setTimeout(() => void this.refresh(getter, expiresAt), delay);
  }

  private async refresh(getter: TokenGetter, expiresAt: number): Promise<void> {
    this.refreshTimer = undefined;
    const ws = this.ws;
    try {
      const token = await getter('refresh');
      if (this.ws !== ws || this._state !== 'connected') return; // a reconnect fetches its own token
      const reply = (await this.enqueue({ type: 'refresh', token }, this.opts.commandTimeoutMs, true)) as {
        expiresAt: number | null;
      };
      if (this.ws === ws) this.scheduleRefresh(reply.expiresAt);
    } catch (err) {
      if (this.ws !== ws) return;
      this.emit('error', asError(err, 'token refresh failed'));
      // Try again while there is time; otherwise the server closes with 4001 and the reconnect gets a new token.
      const left = expiresAt - Date.now();
      if (left > 2000) this.refreshTimer = setTimeout(() => void this.refresh(getter, expiresAt), left / 2);
    }
  }

  private startPing(ws: WebSocketLike): void {
    if (this.opts.pingIntervalMs <= 0) return;
    this.pingTimer = setInterval(() => {
      if (this.ws !== ws) return;
      if (Date.now() - this.lastFrameAt < this.opts.pingIntervalMs) return;
      this.enqueue({ type: 'ping' }, this.opts.commandTimeoutMs, true).catch(() => {
        this.abandon(ws, 4000, 'ping timeout');
      });
    }, this.opts.pingIntervalMs);
  }

  private clearConnectionTimers(): void {
    for (const t of [this.connectTimer, this.refreshTimer]) if (t !== undefined) clearTimeout(t);
    if (this.pingTimer !== undefined) clearInterval(this.pingTimer);
    this.connectTimer = this.refreshTimer = this.pingTimer = undefined;
  }

  private setState(state: ConnectionState, extra: Omit<StateChange, 'state' | 'previous'> = {}): void {
    const previous = this._state;
    if (previous === state && state !== 'reconnecting') return;
    this._state = state;
    this.emit('state', { state, previous, ...extra });
  }

  private shutdown(reason: ChatError): void {
    this.closed = true;
    if (this.reconnectTimer !== undefined) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.clearConnectionTimers();
    const ws = this.ws;
    this.ws = undefined;
    if (ws) {
      try {
        ws.close(CLOSE.normal, 'client closed');
      } catch {
        // already closing
      }
    }
    for (const p of [...this.queue.splice(0), ...this.inflight.values()]) {
      this.settle(p, undefined, new ChatError(reason.code, reason.message, { command: p.cmd.type }));
    }
    for (const w of this.connectWaiters.splice(0)) w.reject(reason);
    this.setState('disconnected');
  }
}

function asError(err: unknown, context: string): Error {
  if (err instanceof Error) return err;
  return new Error(`${context}: ${String(err)}`);
}

// Exported for callers that want to tell a drain apart in `disconnected` events.
export const CloseCodes = CLOSE;
