// The session layer's lifecycle and dispatcher: a connection's open and close, command admission with its limits,
// dispatch to the handlers (rooms.ts, messages.ts, inbox.ts, auth.ts), the reply, and what the server API and the
// hub apply to local connections (disconnect, revocation, server-side join and leave, drain).
// Transport-agnostic: it sees Connections, never uWS sockets.
import type { Config } from '../config';
import type { Engine, Revocation } from '../engine/engine';
import { revokes, UnavailableError } from '../engine/engine';
import type { Client, Connection } from '../hub/client';
import type { Hub } from '../hub/hub';
import { PresenceMarks } from '../hub/presence-marks';
import type { Logger } from '../logger';
import type { Metrics, Stats } from '../metrics';
import type { Identity, TokenVerifier } from '../auth/tokens';
import {
  CLOSE,
  closeBucket,
  ERROR_CODES,
  errorReply,
  FrameError,
  joinedEvent,
  leftEvent,
  okReply,
  okReplyWithFrames,
  parseCommand,
  ProtocolError,
  reconnectEvent,
  validateCommand,
  type CommandType,
  type ErrorCode,
  type ParsedCommand,
  type ResultMap,
  type Since,
} from '../../../../protocol';
import { DecodeError, decodeMsgpack } from '../protocol/encoding';
import type { Hooks } from '../hooks/hooks';
import { ByteBudget, TokenBucket, Violations } from './limits';
import { Session, type Handled } from './context';
import { refresh, sessionExpiries, type AuthContext } from './auth';
import { inbox, openInbox } from './inbox';
import { dm, publish } from './messages';
import { history, join, leave, leaveRoom, presenceOf } from './rooms';

/** Commands whose reply (or replay) can be large: admitted against the send buffer and the byte budget. */
function heavy(c: ParsedCommand): boolean {
  return (
    c.type === 'history' ||
    c.type === 'presence' ||
    ((c.type === 'join' || c.type === 'inbox') && c.since !== undefined)
  );
}

/** retryAfterMs for a command refused because too many of the connection's commands are in flight. */
const INFLIGHT_RETRY_MS = 100;
/** retryAfterMs for a heavy command refused while the send buffer is above HEAVY_COMMAND_BUFFER_BYTES. */
const BUFFER_RETRY_MS = 500;
/** What a presence reply reserves per listed user from the byte budget before its real size is known. */
const PRESENCE_RESERVE_BYTES_PER_USER = 64;

export class Gateway {
  /** Every open connection's session (each one is also its Client). */
  private readonly live = new Set<Session>();
  readonly marks: PresenceMarks;
  /** What the handlers run with: the node's parts, never the Gateway itself. */
  private readonly ctx: AuthContext;

  constructor(
    config: Readonly<Config>,
    engine: Engine,
    hub: Hub,
    verifier: TokenVerifier,
    metrics: Metrics,
    private readonly stats: Stats,
    log: Logger,
    hooks: Hooks = { close: async () => undefined },
    /** Told about every room message stored (not a duplicate), from a client or the server API. */
    onRoomMessage?: (room: string, message: Record<string, unknown>) => void,
  ) {
    this.marks = new PresenceMarks(engine, (room, user) => hub.hasUser(room, user), log);
    this.ctx = {
      config,
      engine,
      hub,
      metrics,
      log,
      hooks,
      marks: this.marks,
      onRoomMessage,
      verifier,
      expiries: sessionExpiries(log),
      send: (client, frame, type) => hub.write(client, frame, type),
    };
  }

  private get config(): Readonly<Config> {
    return this.ctx.config;
  }
  private get engine(): Engine {
    return this.ctx.engine;
  }
  private get hub(): Hub {
    return this.ctx.hub;
  }
  private get metrics(): Metrics {
    return this.ctx.metrics;
  }
  private get log(): Logger {
    return this.ctx.log;
  }

  /** The open connections. */
  get sessions(): ReadonlySet<Client> {
    return this.live;
  }

  get clients(): Iterable<Client> {
    return this.live;
  }

  /** The session of an open connection (a Client the gateway opened and has not closed), else undefined. */
  private sessionOf(client: Client): Session | undefined {
    const session = client as Session;
    return this.live.has(session) ? session : undefined;
  }

  /**
   * A socket opened with a verified identity: welcome it, register it, and make it live on its inbox, from the
   * client's inbox position when it gave one (`?inbox=<offset>:<epoch>` on the upgrade).
   */
  open(conn: Connection, identity: Identity, since?: Since): Client {
    // The connect hook was the last reader of the token's claims: an open connection does not keep them.
    identity.claims = undefined;
    const session = new Session(conn, identity);
    const client: Client = session;
    this.live.add(session);
    if (identity.expiresAt !== null) this.ctx.expiries.add(session, identity.expiresAt);
    this.metrics.connectionsOpened.inc();
    const ready = (client.inboxReady = openInbox(this.ctx, client, identity, since));
    // Kept only while pending (and when it failed): a live connection's inbox is client.inbox. Nothing it does may
    // reject unhandled; inbox() awaits it again and answers its failure.
    ready.then(
      (sub) => {
        if (sub && client.inboxReady === ready) client.inboxReady = undefined;
      },
      (err: unknown) => this.log.error({ err, conn: client.id }, 'welcome failed'),
    );
    return client;
  }

  closed(client: Client, code: number): void {
    const session = this.sessionOf(client);
    if (!session) return;
    this.live.delete(session);
    client.closed = true;
    if (session.identity.expiresAt !== null) this.ctx.expiries.remove(session, session.identity.expiresAt);
    this.hub.forget(client);
    this.metrics.connectionsClosed.inc({ code: closeBucket(code) });
    for (const room of [...client.rooms.keys()]) leaveRoom(this.ctx, client, room);
    if (client.inbox) this.hub.remove(client, client.inbox.ref);
    this.engine
      .connectionRemove(client.user, client.id)
      .catch((err: Error) =>
        this.log.warn({ err: err.message, conn: client.id }, 'connection registry removal failed'),
      );
  }

  /**
   * A frame from the client: text on a JSON connection, binary on a MessagePack one (`data` is only valid during
   * the call). Never throws: every outcome is a reply.
   */
  message(client: Client, frame: string | Uint8Array, bytes: number): void {
    try {
      this.handle(client, frame, bytes);
    } catch (err) {
      // A bug must cost one reply, not the node.
      this.log.error({ err, conn: client.id }, 'frame handling failed');
      const session = this.sessionOf(client);
      if (session) this.fail(session, null, 'internal', 'internal error');
    }
  }

  private handle(client: Client, frame: string | Uint8Array, bytes: number): void {
    this.stats.bytesIn += bytes;
    const session = this.sessionOf(client);
    if (!session) return;
    let command: ParsedCommand;
    try {
      command = this.parse(client, frame);
    } catch (err) {
      this.metrics.messagesIn.inc({ type: 'invalid' });
      if (err instanceof FrameError) this.fail(session, err.id, err.code, err.message);
      else if (err instanceof DecodeError) this.fail(session, null, 'bad_request', err.message);
      else this.fail(session, null, 'bad_request', 'frame could not be processed (too deeply nested?)');
      return;
    }
    this.metrics.messagesIn.inc({ type: command.type });
    session.bucket ??= new TokenBucket(this.config.limits.cmdRate, this.config.limits.cmdBurst);
    const wait = session.bucket.take();
    if (wait > 0) {
      this.metrics.rateLimited.inc({ scope: 'connection' });
      this.fail(session, command.id, 'rate_limited', 'too many commands on this connection', wait);
      return;
    }
    if (!this.admit(session, command)) return;
    const reserved = this.reserve(session, command);
    session.inflight++;
    this.dispatch(session, command)
      .then(
        (result) => {
          session.inflight--;
          let frame: string;
          try {
            const { reply, frames } = result;
            frame = frames
              ? okReplyWithFrames(command.id, reply, frames.name, frames.frames)
              : okReply(command.id, reply as ResultMap[CommandType]);
          } catch (err) {
            this.log.error({ err, conn: client.id, type: command.type }, 'reply could not be built');
            this.fail(session, command.id, 'internal', 'internal error');
            return;
          }
          if (reserved > 0) this.budget(session).spend(frame.length - reserved);
          this.send(client, frame, 'reply');
          result.after?.();
        },
        (err: unknown) => {
          session.inflight--;
          if (reserved > 0) this.budget(session).spend(-reserved);
          if (err instanceof ProtocolError)
            this.fail(session, command.id, err.code, err.message, err.retryAfterMs);
          else if (err instanceof UnavailableError)
            this.fail(session, command.id, 'unavailable', 'storage unavailable, retry');
          else {
            this.log.error({ err, conn: client.id, type: command.type }, 'command failed');
            this.fail(session, command.id, 'internal', 'internal error');
          }
        },
      )
      // Nothing a reply does may reject unhandled: a failure here costs one `internal` reply at most.
      .catch((err: unknown) => {
        this.log.error({ err, conn: client.id, type: command.type }, 'reply failed');
        try {
          this.fail(session, command.id, 'internal', 'internal error');
        } catch {
          // The connection is gone; nothing to answer.
        }
      });
  }

  /**
   * The per-connection budgets: commands in flight, and for heavy commands the send buffer and the reply byte
   * budget. Answers rate_limited (with retryAfterMs) and returns false when the command may not run now.
   */
  private admit(session: Session, command: ParsedCommand): boolean {
    const { limits } = this.config;
    const refuse = (scope: string, message: string, retryAfterMs: number) => {
      this.metrics.rateLimited.inc({ scope });
      this.fail(session, command.id, 'rate_limited', message, retryAfterMs);
      return false;
    };
    if (session.inflight >= limits.maxInflight)
      return refuse(
        'inflight',
        `at most ${limits.maxInflight} commands in flight per connection`,
        INFLIGHT_RETRY_MS,
      );
    if (!heavy(command)) return true;
    if (session.client.conn.bufferedAmount() > limits.heavyCommandBufferBytes)
      return refuse(
        'send_buffer',
        'the connection is not reading its replies; read them first',
        BUFFER_RETRY_MS,
      );
    const wait = this.budget(session).wait();
    if (wait > 0) return refuse('reply_bytes', 'reply byte budget spent on this connection', wait);
    return true;
  }

  /** Reserves a heavy command's worst-case reply size from the byte budget; returns the amount reserved. */
  private reserve(session: Session, command: ParsedCommand): number {
    let bytes = 0;
    if (command.type === 'history') bytes = command.limit * (this.config.limits.maxMessageBytes + 256);
    else if (command.type === 'presence')
      bytes = this.config.limits.presenceReplyMax * PRESENCE_RESERVE_BYTES_PER_USER;
    if (bytes > 0) this.budget(session).spend(bytes);
    return bytes;
  }

  /** Bytes replayed to the client from history (join/inbox with since, catch-ups): spent from its budget. */
  replayed(client: Client, bytes: number): void {
    const session = this.sessionOf(client);
    if (session) this.budget(session).spend(bytes);
  }

  /**
   * The connection's reply byte budget, created at its first use: a new budget holds a full second's worth, which
   * is what one created at open would hold by then (it refills up to that and nothing was spent from it).
   */
  private budget(session: Session): ByteBudget {
    return (session.replyBudget ??= new ByteBudget(this.config.limits.replyBytesPerS));
  }

  /** One frame into a command through the one validator; each encoding accepts only its own frame kind. */
  private parse(client: Client, frame: string | Uint8Array): ParsedCommand {
    if (client.conn.encoding === 'json') {
      if (typeof frame !== 'string')
        throw new FrameError(null, 'bad_request', 'binary frames need relaychat.v1.msgpack; send JSON text');
      return parseCommand(frame, this.config.limits);
    }
    if (typeof frame === 'string')
      throw new FrameError(null, 'bad_request', 'text frames are not accepted on relaychat.v1.msgpack');
    return validateCommand(decodeMsgpack(frame, this.config.limits.maxFrameDepth), this.config.limits);
  }

  private fail(
    session: Session,
    re: number | null,
    code: ErrorCode,
    message: string,
    retryAfterMs?: number,
  ): void {
    const { client } = session;
    this.metrics.errorReplies.inc({ code });
    this.send(client, errorReply(re, code, message, retryAfterMs), 'reply');
    if (!ERROR_CODES[code].violation) return;
    if ((session.violations ??= new Violations()).add() >= this.config.limits.maxViolations) {
      this.log.info({ conn: client.id, user: client.user }, 'closing connection after repeated bad frames');
      client.conn.close(CLOSE.policy, 'too many bad frames');
    }
  }

  /** Replies and session events go out through the hub's egress, the same as room events and replays. */
  private send(client: Client, frame: string, type: string): void {
    this.ctx.send(client, frame, type);
  }

  /** Closes a connection that holds more than MAX_BUFFERED_BYTES of unsent frames (replies and events together). */
  overBuffered(client: Client): void {
    if (client.closed) return;
    this.log.info(
      { conn: client.id, user: client.user, buffered: client.conn.bufferedAmount() },
      'send buffer over MAX_BUFFERED_BYTES; closing',
    );
    client.conn.close(CLOSE.slowConsumer, 'not reading: send buffer over the limit');
  }

  private async dispatch(session: Session, c: ParsedCommand): Promise<Handled<CommandType>> {
    const ctx = this.ctx;
    switch (c.type) {
      case 'join':
        return join(ctx, session, c.room, c.since);
      case 'leave':
        return leave(ctx, session, c.room);
      case 'publish':
        return publish(ctx, session, c.room, c.body, c.key);
      case 'dm':
        return dm(ctx, session, c.to, c.body, c.key);
      case 'presence':
        return presenceOf(ctx, session, c.room);
      case 'history':
        return history(ctx, session, c.room, c.limit, c.before);
      case 'inbox':
        return inbox(ctx, session, c.since);
      case 'refresh':
        return refresh(ctx, session, c.token);
      case 'ping':
        return Promise.resolve({ reply: { pong: true, ts: Date.now() } });
    }
  }

  /** Closes every local connection of the user (server API disconnect, any node). */
  disconnectUser(user: string): void {
    for (const client of [...this.live])
      if (client.user === user) client.conn.close(CLOSE.kicked, 'disconnected by server');
  }

  /** Closes every local connection whose current token `r` revokes, with 4004. */
  closeRevoked(r: Revocation): void {
    for (const client of [...this.live])
      if (revokes(r, client.identity)) {
        this.log.info({ conn: client.id, user: client.user }, 'token revoked; closing');
        client.conn.close(CLOSE.tokenRevoked, 'token revoked');
      }
  }

  /**
   * Server API join/leave, on this node: every local connection of the user joins (or leaves) the room and is told
   * with a `joined` (`left`) event. Connections that are already members, or at MAX_ROOMS_PER_CONNECTION, are
   * left as they are.
   */
  roomForUser(user: string, kind: 'join' | 'leave', room: string): void {
    for (const session of this.live) {
      const client: Client = session;
      if (client.user !== user || client.closed) continue;
      if (kind === 'leave') {
        if (!client.rooms.has(room)) continue;
        leaveRoom(this.ctx, client, room);
        this.send(client, leftEvent([room], 'server'), 'left');
        continue;
      }
      if (client.rooms.has(room)) continue;
      join(this.ctx, session, room, undefined, true).then(
        (result) => {
          const { room: r, presence, offset, epoch } = result.reply;
          this.send(client, joinedEvent({ room: r, by: 'server', presence, offset, epoch }), 'joined');
          result.after?.();
        },
        (err: Error) =>
          this.log.info({ conn: client.id, room, err: err.message }, 'server-side join not applied'),
      );
    }
  }

  /** Drain: tell every client to reconnect elsewhere and close it with 1001. */
  goAway(): void {
    for (const client of [...this.live]) {
      this.send(client, reconnectEvent('draining'), 'reconnect');
      client.conn.close(CLOSE.goingAway, 'node draining');
    }
  }
}
