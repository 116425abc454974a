// Per-connection protocol logic: the welcome, command dispatch with its limits, replies, and the server API.
// Transport-agnostic: it sees Connections, never uWS sockets.
import type { Config } from '../config';
import type { Engine, ReadResult, Revocation, StreamRef } from '../engine/engine';
import { revokes, UnavailableError } from '../engine/engine';
import { Client, type Connection, type Sub } from '../hub/client';
import type { Hub } from '../hub/hub';
import { PresenceMarks } from '../hub/presence-marks';
import type { Logger } from '../logger';
import type { Metrics, Stats } from '../metrics';
import { AuthError, roomAllowed, type Identity, type TokenVerifier } from '../auth/tokens';
import { ExpiryQueue } from '../auth/expiry-queue';
import {
  CLOSE,
  closeBucket,
  ERROR_CODES,
  errorReply,
  FrameError,
  joinedEvent,
  leftEvent,
  MAX_USER_LENGTH,
  okReply,
  okReplyWithFrames,
  parseCommand,
  ProtocolError,
  RawJson,
  reconnectEvent,
  storedEventParts,
  validateCommand,
  validUserId,
  welcomeFrame,
  type CommandType,
  type DirectMessageReply,
  type ErrorCode,
  type HistoryResult,
  type ParsedCommand,
  type PublishReply,
  type ResultMap,
  type Since,
} from '../../../../protocol';
import { DecodeError, decodeMsgpack } from '../protocol/encoding';
import type { Hooks } from '../hooks/hooks';
import { newMessageId } from './ids';
import { ByteBudget, TokenBucket, Violations } from './limits';

interface Session {
  client: Client;
  identity: Identity;
  /** Created at the first command (an idle connection never needs one). */
  bucket?: TokenBucket;
  violations: Violations;
  /** Commands received and not yet answered. */
  inflight: number;
  replyBudget: ByteBudget;
}

/** Commands whose reply (or replay) can be large: admitted against the send buffer and the byte budget. */
function heavy(c: ParsedCommand): boolean {
  return (
    c.type === 'history' ||
    c.type === 'presence' ||
    ((c.type === 'join' || c.type === 'inbox') && c.since !== undefined)
  );
}

/** A reply may carry work that must run right after the reply is written (JSON.stringify skips symbols). */
const AFTER_REPLY = Symbol('afterReply');
/** A reply may carry stored frames, spliced into it as stored: `{name, frames}`. */
const FRAMES = Symbol('frames');
/**
 * What a handler returns: the command's result (docs/PROTOCOL.md), optionally with work to run right after the
 * reply is written; a history result carries its messages as stored frames, spliced into the reply unparsed.
 */
type Reply<T extends CommandType> = (T extends 'history'
  ? Omit<ResultMap[T], 'messages'> & { [FRAMES]: { name: 'messages'; frames: string[] } }
  : ResultMap[T]) & { [AFTER_REPLY]?: () => void };
/** retryAfterMs for a command refused because too many of the connection's commands are in flight. */
const INFLIGHT_RETRY_MS = 100;
/** retryAfterMs for a heavy command refused while the send buffer is above HEAVY_COMMAND_BUFFER_BYTES. */
const BUFFER_RETRY_MS = 500;
/** What a presence reply reserves per listed user from the byte budget before its real size is known. */
const PRESENCE_RESERVE_BYTES_PER_USER = 64;

export class Gateway {
  readonly sessions = new Map<Client, Session>();
  /** Token expiries of every session, behind one timer. */
  private readonly expiries = new ExpiryQueue<Session>((session) => {
    this.log.info({ conn: session.client.id, user: session.client.user }, 'token expired; closing');
    session.client.conn.close(CLOSE.tokenExpired, 'token expired');
  });
  readonly marks: PresenceMarks;

  constructor(
    private readonly config: Readonly<Config>,
    private readonly engine: Engine,
    private readonly hub: Hub,
    private readonly verifier: TokenVerifier,
    private readonly metrics: Metrics,
    private readonly stats: Stats,
    private readonly log: Logger,
    private readonly hooks: Hooks = { close: async () => undefined },
    /** Told about every room message stored (not a duplicate), from a client or the server API. */
    private readonly onRoomMessage?: (room: string, message: Record<string, unknown>) => void,
  ) {
    this.marks = new PresenceMarks(engine, (room, user) => hub.hasUser(room, user), log);
  }

  get clients(): Iterable<Client> {
    return this.sessions.keys();
  }

  /**
   * A socket opened with a verified identity: welcome it, register it, and make it live on its inbox, from the
   * client's inbox position when it gave one (`?inbox=<offset>:<epoch>` on the upgrade).
   */
  open(conn: Connection, identity: Identity, inbox?: Since): Client {
    const client = new Client(conn.id, identity.user, conn);
    const session: Session = {
      client,
      identity,
      bucket: undefined,
      violations: new Violations(),
      inflight: 0,
      replyBudget: new ByteBudget(this.config.limits.replyBytesPerS),
    };
    this.sessions.set(client, session);
    if (identity.expiresAt !== null) this.expiries.add(session, identity.expiresAt);
    this.metrics.connectionsOpened.inc();
    client.inboxReady = this.openInbox(client, identity, inbox);
    // Nothing it does may reject unhandled; inbox() awaits it again and answers its failure.
    client.inboxReady.catch((err: unknown) => this.log.error({ err, conn: client.id }, 'welcome failed'));
    return client;
  }

  /**
   * Subscribes the user's inbox (paused), registers the connection and writes the welcome; only then starts the
   * inbox, from `since` (with a replay) or from the latest offset. So no DM reaches the connection before its
   * welcome, a DM sent after the client saw its welcome is delivered live and counted in the sender's
   * `delivered`, and every DM after `since` arrives once, in order, with a gap event for what is no longer kept.
   * Resolves with the sub once it runs; undefined when the connection could not be set up or closed first.
   */
  private async openInbox(client: Client, identity: Identity, since?: Since): Promise<Sub | undefined> {
    const ref: StreamRef = { kind: 'inbox', name: client.user };
    const { sub, ready } = this.hub.add(client, ref);
    // Set before any await so that closed() removes it; paused until started below, so nothing is sent.
    client.inbox = sub;
    let head: ReadResult;
    try {
      await ready;
      if (client.closed) return undefined;
      const info = { node: this.config.nodeId, connectedAt: Date.now() };
      // MAX_CONNECTIONS_PER_USER is enforced here, after the upgrade, rather than with an HTTP 429: deciding an
      // upgrade asynchronously (it needs Redis) made uWebSockets.js drop about 1 in 300 accepted sockets with 1006.
      const cap = this.config.limits.maxConnectionsPerUser;
      let admitted: boolean;
      [head, admitted] = await Promise.all([
        this.engine.read(ref, since?.offset ?? Number.MAX_SAFE_INTEGER, 1),
        cap === 0
          ? this.engine.connectionAdd(identity.user, client.id, info).then(() => true)
          : this.engine.connectionReserve(identity.user, client.id, cap, info),
      ]);
      if (!admitted) {
        this.metrics.rateLimited.inc({ scope: 'user_connections' });
        client.conn.close(CLOSE.tooManyConnections, `more than ${cap} connections for this user`);
        return undefined;
      }
    } catch (err) {
      this.log.warn(
        { err: (err as Error).message, conn: client.id },
        'could not set up the connection; closing',
      );
      client.conn.close(CLOSE.internal, 'storage unavailable, reconnect');
      return undefined;
    }
    if (client.closed) return undefined;
    const from: { epoch: string; offset: number; recovered?: boolean } = since
      ? resume(since, head)
      : { epoch: head.epoch, offset: head.top };
    if (from.recovered !== undefined)
      this.metrics.recoveries.inc({ result: from.recovered ? 'recovered' : 'gap' });
    const frame = welcomeFrame({
      user: identity.user,
      node: this.config.nodeId,
      session: client.id,
      expiresAt: identity.expiresAt,
      info: identity.info,
      inbox: { offset: from.offset, epoch: from.epoch, recovered: from.recovered },
    });
    this.send(client, frame, 'welcome');
    this.hub.start(client, sub, from.epoch, from.offset, since !== undefined);
    return sub;
  }

  closed(client: Client, code: number): void {
    const session = this.sessions.get(client);
    if (!session) return;
    this.sessions.delete(client);
    client.closed = true;
    if (session.identity.expiresAt !== null) this.expiries.remove(session, session.identity.expiresAt);
    this.hub.forget(client);
    this.metrics.connectionsClosed.inc({ code: closeBucket(code) });
    for (const room of [...client.rooms.keys()]) this.leaveRoom(client, room);
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
      const session = this.sessions.get(client);
      if (session) this.fail(session, null, 'internal', 'internal error');
    }
  }

  private handle(client: Client, frame: string | Uint8Array, bytes: number): void {
    this.stats.bytesIn += bytes;
    const session = this.sessions.get(client);
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
        (fields) => {
          session.inflight--;
          let frame: string;
          try {
            const spliced = FRAMES in fields ? fields[FRAMES] : undefined;
            frame = spliced
              ? okReplyWithFrames(command.id, fields, spliced.name, spliced.frames)
              : okReply(command.id, fields as ResultMap[CommandType]);
          } catch (err) {
            this.log.error({ err, conn: client.id, type: command.type }, 'reply could not be built');
            this.fail(session, command.id, 'internal', 'internal error');
            return;
          }
          if (reserved > 0) session.replyBudget.spend(frame.length - reserved);
          this.send(client, frame, 'reply');
          fields[AFTER_REPLY]?.();
        },
        (err: unknown) => {
          session.inflight--;
          if (reserved > 0) session.replyBudget.spend(-reserved);
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
    const wait = session.replyBudget.wait();
    if (wait > 0) return refuse('reply_bytes', 'reply byte budget spent on this connection', wait);
    return true;
  }

  /** Reserves a heavy command's worst-case reply size from the byte budget; returns the amount reserved. */
  private reserve(session: Session, command: ParsedCommand): number {
    let bytes = 0;
    if (command.type === 'history') bytes = command.limit * (this.config.limits.maxMessageBytes + 256);
    else if (command.type === 'presence')
      bytes = this.config.limits.presenceReplyMax * PRESENCE_RESERVE_BYTES_PER_USER;
    if (bytes > 0) session.replyBudget.spend(bytes);
    return bytes;
  }

  /** Bytes replayed to the client from history (join/inbox with since, catch-ups): spent from its budget. */
  replayed(client: Client, bytes: number): void {
    this.sessions.get(client)?.replyBudget.spend(bytes);
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
    if (session.violations.add() >= this.config.limits.maxViolations) {
      this.log.info({ conn: client.id, user: client.user }, 'closing connection after repeated bad frames');
      client.conn.close(CLOSE.policy, 'too many bad frames');
    }
  }

  /** The egress for replies. A socket whose send buffer passed MAX_BUFFERED_BYTES is closed with 4008. */
  /** Replies and session events go out through the hub's egress, the same as room events and replays. */
  private send(client: Client, frame: string, type: string): void {
    this.hub.write(client, frame, type);
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

  private async dispatch(session: Session, c: ParsedCommand): Promise<Reply<CommandType>> {
    switch (c.type) {
      case 'join':
        return this.join(session, c.room, c.since);
      case 'leave':
        return this.leave(session, c.room);
      case 'publish':
        return this.publish(session, c.room, c.body, c.key);
      case 'dm':
        return this.dm(session, c.to, c.body, c.key);
      case 'presence':
        return this.presenceOf(session, c.room);
      case 'history':
        return this.history(session, c.room, c.limit, c.before);
      case 'inbox':
        return this.inbox(session, c.since);
      case 'refresh':
        return this.refresh(session, c.token);
      case 'ping':
        return Promise.resolve({ pong: true, ts: Date.now() });
    }
  }

  private checkRoom(session: Session, room: string): void {
    if (!roomAllowed(session.identity, room))
      throw new ProtocolError('forbidden', `not allowed to join ${room}`);
  }

  private async join(
    session: Session,
    room: string,
    since?: Since,
    byServer = false,
  ): Promise<Reply<'join'>> {
    const { client } = session;
    // A join by the server API is trusted: neither the rooms limits nor the join hook apply.
    if (!byServer) this.checkRoom(session, room);
    if (!byServer && this.hooks.join && !client.rooms.has(room)) {
      const decision = await this.hooks.join({ user: client.user, room, conn: client.id });
      if (decision.kind === 'deny') throw new ProtocolError('forbidden', decision.reason);
      if (decision.kind === 'unavailable')
        throw new ProtocolError('unavailable', 'the join hook is unavailable, retry');
      if (client.closed) throw new ProtocolError('not_member', 'closed while joining');
    }
    const existing = client.rooms.get(room);
    if (existing) {
      return {
        room,
        ...this.presenceFields(await this.engine.presence(room)),
        offset: existing.offset,
        epoch: existing.epoch,
      };
    }
    if (client.rooms.size >= this.config.limits.maxRoomsPerConnection)
      throw new ProtocolError(
        'too_many_rooms',
        `at most ${this.config.limits.maxRoomsPerConnection} rooms per connection`,
      );
    const ref: StreamRef = { kind: 'room', name: room };
    // Recorded before any await: a second join of the same room meanwhile takes the `existing` path above.
    const { sub, ready } = this.hub.add(client, ref);
    client.addRoom(room, sub);
    try {
      await ready;
      const [presence, head] = await Promise.all([
        this.marks.sync(room, client.user).then((marked) => marked ?? this.engine.presence(room)),
        this.engine.read(ref, since?.offset ?? Number.MAX_SAFE_INTEGER, 1),
      ]);
      if (client.closed || client.rooms.get(room) !== sub)
        throw new ProtocolError('not_member', 'left while joining');
      const reply: Reply<'join'> = {
        room,
        ...this.presenceFields(presence),
        offset: head.top,
        epoch: head.epoch,
      };
      if (!since) {
        reply[AFTER_REPLY] = () => this.hub.start(client, sub, head.epoch, head.top, false);
        return reply;
      }
      const from = resume(since, head);
      this.metrics.recoveries.inc({ result: from.recovered ? 'recovered' : 'gap' });
      reply.recovered = from.recovered;
      // The reply goes out before the replay: a gap event for what is no longer kept, then every kept message.
      reply[AFTER_REPLY] = () => this.hub.start(client, sub, from.epoch, from.offset, true);
      return reply;
    } catch (err) {
      if (client.rooms.get(room) === sub) this.leaveRoom(client, room);
      throw err;
    }
  }

  private leaveRoom(client: Client, room: string): void {
    const sub = client.rooms.get(room);
    if (!sub) return;
    client.dropRoom(room);
    // The user's last local connection in the room: the mark goes (after any write still in flight).
    if (this.hub.remove(client, sub.ref)) this.marks.sync(room, client.user).catch(() => undefined);
  }

  private async leave(session: Session, room: string): Promise<Reply<'leave'>> {
    if (!session.client.rooms.has(room)) throw new ProtocolError('not_member', `not a member of ${room}`);
    this.leaveRoom(session.client, room);
    return { room };
  }

  private async userRate(user: string): Promise<void> {
    if (this.config.limits.userMsgRate === 0) return;
    const wait = await this.engine.userRate(user, this.config.limits.userMsgRate);
    if (wait > 0) {
      this.metrics.rateLimited.inc({ scope: 'user' });
      throw new ProtocolError('rate_limited', 'too many messages from this user', wait);
    }
  }

  private async publish(
    session: Session,
    room: string,
    body: string,
    key?: string,
  ): Promise<Reply<'publish'>> {
    const { client } = session;
    if (!client.rooms.has(room)) throw new ProtocolError('not_member', `join ${room} before publishing`);
    await this.userRate(client.user);
    if (this.hooks.publish) {
      const decision = await this.hooks.publish({ user: client.user, room, conn: client.id, body });
      if (decision.kind === 'deny') throw new ProtocolError('rejected', decision.reason);
      if (decision.kind === 'unavailable')
        throw new ProtocolError('unavailable', 'the publish hook is unavailable, retry');
      if (decision.body !== undefined) body = decision.body;
    }
    return this.store({ kind: 'room', name: room }, 'message', client.user, { room }, body, key);
  }

  /** Stores and fans out one room message; shared by `publish` and the server API. */
  private async store(
    ref: StreamRef,
    type: 'message' | 'dm',
    from: string,
    extra: { room?: string; to?: string },
    body: string,
    key?: string,
    skip?: string,
  ): Promise<PublishReply> {
    const id = newMessageId();
    const ts = Date.now();
    const result = await this.engine.append(ref, {
      id,
      ts,
      frame: storedEventParts(type, { ...extra, id, from, ts }, body),
      dedup: key ? { scope: from, key } : undefined,
      skip,
    });
    if (this.onRoomMessage && ref.kind === 'room' && !result.duplicate)
      this.onRoomMessage(ref.name, {
        id: result.id,
        offset: result.offset,
        epoch: result.epoch,
        from,
        ts: result.ts,
        body: JSON.parse(body) as unknown,
      });
    return {
      id: result.id,
      offset: result.offset,
      epoch: result.epoch,
      ts: result.ts,
      duplicate: result.duplicate,
    };
  }

  /**
   * A DM is two copies in two inboxes (two Cluster slots): the recipient's, deduplicated on (sender, key), and
   * the sender's, deduplicated on the message id. Each write is idempotent on its own key, so `ok` means both
   * are stored, and a retry with the same key writes whichever is missing and answers the first result.
   */
  private async dm(session: Session, to: string, body: string, key?: string): Promise<Reply<'dm'>> {
    const { client } = session;
    await this.userRate(client.user);
    const reply = await this.store({ kind: 'inbox', name: to }, 'dm', client.user, { to }, body, key);
    if (to !== client.user) {
      // The sender's copy, for the sender's other connections and their recovery; the sending one has the reply.
      const { id, ts } = reply;
      await this.engine.append(
        { kind: 'inbox', name: client.user },
        {
          id,
          ts,
          frame: storedEventParts('dm', { id, from: client.user, to, ts }, body),
          // Without a key a retry is a new DM anyway: no dedup record to keep.
          dedup: key === undefined ? undefined : { scope: '', key: id },
          skip: client.id,
        },
      );
    }
    const delivered = await this.engine.connectionCount(to);
    return { ...reply, delivered, live: delivered > 0, stored: true };
  }

  private async presenceOf(session: Session, room: string): Promise<Reply<'presence'>> {
    this.checkRoom(session, room);
    return { room, ...this.presenceFields(await this.engine.presence(room)) };
  }

  /** At most PRESENCE_REPLY_MAX users, and how many there are in all. */
  private presenceFields(users: string[]): { presence: string[]; total: number } {
    const max = this.config.limits.presenceReplyMax;
    if (users.length <= max) return { presence: users, total: users.length };
    this.metrics.presenceTruncated.inc();
    return { presence: users.slice(0, max), total: users.length };
  }

  private async history(
    session: Session,
    room: string,
    limit: number,
    before?: number,
  ): Promise<Reply<'history'>> {
    this.checkRoom(session, room);
    const page = await this.hub.readHistory(() =>
      this.engine.readBefore({ kind: 'room', name: room }, before, limit),
    );
    return {
      room,
      offset: page.top,
      epoch: page.epoch,
      [FRAMES]: { name: 'messages', frames: page.events.map((e) => e.frame) },
    };
  }

  /**
   * `inbox {since}` (clients that did not give their position at connect): replays what this connection has not
   * been sent of the DMs after since.offset, then continues live. DMs the connection already received live since
   * its welcome are not sent again, so each DM arrives once.
   */
  private async inbox(session: Session, since?: Since): Promise<Reply<'inbox'>> {
    const { client } = session;
    const sub = await client.inboxReady;
    if (!sub) throw new UnavailableError('the connection could not be set up');
    const ref: StreamRef = { kind: 'inbox', name: client.user };
    const head = await this.engine.read(ref, since?.offset ?? Number.MAX_SAFE_INTEGER, 1);
    if (!since) return { offset: head.top, epoch: head.epoch };
    const from = resume(since, head);
    this.metrics.recoveries.inc({ result: from.recovered ? 'recovered' : 'gap' });
    return {
      offset: head.top,
      epoch: head.epoch,
      recovered: from.recovered,
      [AFTER_REPLY]: () => this.hub.rewind(client, sub, from.epoch, from.offset),
    };
  }

  private async refresh(session: Session, token: string): Promise<Reply<'refresh'>> {
    let identity: Identity;
    try {
      identity = this.verifier.verify(token);
    } catch (err) {
      const reason = err instanceof AuthError ? err.reason : 'malformed';
      this.metrics.authFailures.inc({ reason });
      throw new ProtocolError('unauthorized', `token rejected: ${reason}`);
    }
    if (identity.user !== session.identity.user)
      throw new ProtocolError('unauthorized', 'token is for another user');
    if (session.identity.expiresAt !== null) this.expiries.remove(session, session.identity.expiresAt);
    session.identity = identity;
    if (identity.expiresAt !== null) this.expiries.add(session, identity.expiresAt);
    // The new token's `rooms` claim applies now: rooms it no longer allows are left (a normal leave).
    const left = [...session.client.rooms.keys()].filter((room) => !roomAllowed(identity, room));
    for (const room of left) this.leaveRoom(session.client, room);
    if (left.length === 0) return { expiresAt: identity.expiresAt };
    return {
      expiresAt: identity.expiresAt,
      [AFTER_REPLY]: () => this.send(session.client, leftEvent(left, 'token'), 'left'),
    };
  }

  /** Closes every local connection of the user (server API disconnect, any node). */
  disconnectUser(user: string): void {
    for (const client of [...this.sessions.keys()])
      if (client.user === user) client.conn.close(CLOSE.kicked, 'disconnected by server');
  }

  /** Closes every local connection whose current token `r` revokes, with 4004. */
  closeRevoked(r: Revocation): void {
    for (const [client, session] of [...this.sessions])
      if (revokes(r, session.identity)) {
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
    for (const [client, session] of this.sessions) {
      if (client.user !== user || client.closed) continue;
      if (kind === 'leave') {
        if (!client.rooms.has(room)) continue;
        this.leaveRoom(client, room);
        this.send(client, leftEvent([room], 'server'), 'left');
        continue;
      }
      if (client.rooms.has(room)) continue;
      this.join(session, room, undefined, true).then(
        (result) => {
          const { room: r, presence, offset, epoch } = result;
          this.send(client, joinedEvent({ room: r, by: 'server', presence, offset, epoch }), 'joined');
          result[AFTER_REPLY]?.();
        },
        (err: Error) =>
          this.log.info({ conn: client.id, room, err: err.message }, 'server-side join not applied'),
      );
    }
  }

  /** Server API validation: the socket command's own parser and limits, so both answer the same errors. */
  validate(command: Record<string, unknown>): ParsedCommand {
    // The decoded value is checked as it is (depth before any JSON.stringify of it): no text round trip.
    return validateCommand({ ...command, id: 0 }, this.config.limits);
  }

  validUser(user: unknown, field = 'user'): string {
    if (!validUserId(user))
      throw new ProtocolError('bad_request', `${field} must be a user id of 1-${MAX_USER_LENGTH} characters`);
    return user;
  }

  /** Server API DM, as `from` (a user: its other connections get the sender's copy) or as "server". */
  async apiDm(to: string, body: string, key: string | undefined, from: string): Promise<DirectMessageReply> {
    const reply = await this.store({ kind: 'inbox', name: to }, 'dm', from, { to }, body, key);
    if (from !== 'server' && from !== to && !reply.duplicate) {
      const { id, ts } = reply;
      await this.engine.append(
        { kind: 'inbox', name: from },
        { id, ts, frame: storedEventParts('dm', { id, from, to, ts }, body) },
      );
    }
    const delivered = await this.engine.connectionCount(to);
    return { ...reply, delivered, live: delivered > 0, stored: true };
  }

  async apiHistory(
    room: string,
    limit: number,
    before?: number,
  ): Promise<Omit<HistoryResult, 'messages'> & { messages: RawJson[] }> {
    const page = await this.engine.readBefore({ kind: 'room', name: room }, before, limit);
    return {
      room,
      offset: page.top,
      epoch: page.epoch,
      // Stored frames go out as stored (never parsed and serialized again; see routes' JSON writer).
      messages: page.events.map((e) => new RawJson(e.frame)),
    };
  }

  /** Server API publish (validated JSON body text): the same store-then-fan-out as a client publish. */
  async apiPublish(room: string, body: string, key: string | undefined, from: string): Promise<PublishReply> {
    return this.store({ kind: 'room', name: room }, 'message', from, { room }, body, key);
  }

  /** Drain: tell every client to reconnect elsewhere and close it with 1001. */
  goAway(): void {
    for (const client of [...this.sessions.keys()]) {
      this.send(client, reconnectEvent('draining'), 'reconnect');
      client.conn.close(CLOSE.goingAway, 'node draining');
    }
  }
}

/**
 * Where a stream resumes for a client at `since`, given the stream's head read after since.offset: from the
 * client's position, with a replay (a gap event first when part of it is no longer kept or the epoch changed), or
 * from the latest offset when the position is ahead of the store (it lost events after a crash or a failover
 * without replica acknowledgement). `recovered`: every event after `since` is still kept and follows.
 */
function resume(since: Since, head: ReadResult): { epoch: string; offset: number; recovered: boolean } {
  // Offset 0 continues into any epoch, and "" or no epoch means the current one (see recoverable below).
  const current = since.offset === 0 || since.epoch === undefined || since.epoch === '';
  const epoch = current ? head.epoch : since.epoch!;
  if (epoch === head.epoch && since.offset > head.top) return { epoch, offset: head.top, recovered: false };
  return { epoch, offset: since.offset, recovered: recoverable(since, head) };
}

/**
 * Whether a position can be continued from the stream's head without a gap. Offset 0 has seen nothing, so it
 * continues into any epoch. An epoch of "" (a stream that was empty when the client read it) names no epoch, like an
 * omitted one: the stream's current epoch is meant.
 */
function recoverable(
  since: { offset: number; epoch?: string },
  head: { epoch: string; top: number; events: { offset: number }[] },
): boolean {
  if (since.offset !== 0 && since.epoch !== undefined && since.epoch !== '' && since.epoch !== head.epoch)
    return false;
  if (since.offset > head.top) return false;
  if (since.offset === head.top) return true;
  const first = head.events[0];
  return first !== undefined && first.offset === since.offset + 1;
}
