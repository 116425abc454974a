// The node's local state: which connections serve which streams, and delivery to them. A stream's channel is
// subscribed while at least one local connection reads it. Every connection tracks its offset per stream;
// a live event is written only if it is exactly the next offset, otherwise the connection is caught up from
// history first. The same path serves recovery after reconnect, slow consumers that drained, and events the bus
// lost while Redis was unreachable, so ordering and exactly-once delivery per connection hold in all of them.
//
// Connections that are in sync on a stream receive it through a native topic of the transport instead (one per
// stream and encoding, one publish per event written to every member in C++): see "Native topics" below.
import type { BusMessage, Engine, LocalState, StreamRef } from '../engine/engine';
import { gapEvent, presenceBatchEvent } from '../../../../protocol';
import { Packed, Prepared, type OutFrame } from '../protocol/encoding';
import type { Logger } from '../logger';
import type { Stats } from '../metrics';
import { Client, SendStatus, type Sub, type TopicPublisher } from './client';

/** The most a WebSocket frame header adds to a server frame (unmasked, 64-bit length). */
const FRAME_HEADER_MAX = 10;

function memberNamed(nt: NativeTopic, id: string): boolean {
  for (const client of nt.members.keys()) if (client.id === id) return true;
  return false;
}

/**
 * A stream's native topic: the connections in sync on the stream, one transport topic per encoding; it exists while
 * it has members. Its position is the stream's live position (Topic.liveEpoch, liveOffset), and every member's
 * position is exactly that (a member's own Sub.offset is stale until it leaves).
 */
class NativeTopic {
  readonly members = new Map<Client, Sub>();
  json = 0;
  msgpack = 0;
  /** The transport topics. The channel plus a fixed 2-character suffix: distinct channels, distinct names. */
  readonly names: { json: string; msgpack: string };
  constructor(readonly topic: Topic) {
    this.names = { json: `${topic.channel}|j`, msgpack: `${topic.channel}|m` };
  }
  get epoch(): string {
    return this.topic.liveEpoch;
  }
  get offset(): number {
    return this.topic.liveOffset;
  }
}

interface Topic {
  ref: StreamRef;
  channel: string;
  subs: Map<Client, Sub>;
  /**
   * Local connections per user (rooms only: presence is marked per node, not per connection). An inbox topic is
   * one user's, so it needs no count (its last connection leaves when subs is empty).
   */
  users?: Map<string, number>;
  /**
   * The last event that went out live on this node (through the native topic or per connection), and its epoch;
   * -1 before the first, so that no sub is level with it.
   */
  liveEpoch: string;
  liveOffset: number;
  /** Connections in sync, while there are any. */
  native?: NativeTopic;
  /** While `native` exists: the subs not in it, deliver()'s per-connection path (without it, that is `subs`). */
  direct?: Map<Client, Sub>;
  /** The SUBSCRIBE while it is pending (or failed); undefined once the channel is subscribed. */
  subscribed?: Promise<void>;
  /** Presence changes waiting for the batch window (rooms only): user -> last change. */
  presence?: { changes: Map<string, 'join' | 'leave'>; timer: NodeJS.Timeout };
}

const SUBSCRIBED: Promise<void> = Promise.resolve();

export interface HubOptions {
  slowConsumerBytes: number;
  catchUpPage: number;
  /**
   * Presence changes of a room reach its local members as one frame per window of this many ms (0: one frame per
   * change, at once). Filling a room of n members one join at a time costs O(n^2) frames unbatched.
   */
  presenceBatchMs: number;
  /** A socket whose send buffer passes this is handed to events.overBuffered (the gateway closes it). */
  maxBufferedBytes: number;
  /** Reads of stored history (catch-ups, and `history` pages through readHistory) running at once; more wait. */
  historyReadConcurrency: number;
  /** Deliver to connections in sync through native topics (NATIVE_TOPICS), once useTopics() gave a publisher. */
  nativeTopics: boolean;
  /**
   * Bytes published through native topics between two checks of every member's send buffer (at most
   * maxBufferedBytes - slowConsumerBytes: see "Native topics").
   */
  nativeCheckBytes: number;
}

export interface HubEvents {
  backpressure(): void;
  delivered(latencySeconds: number): void;
  disconnectUser(user: string): void;
  /** Server API join/leave for every local connection of the user. */
  roomForUser(user: string, kind: 'join' | 'leave', room: string): void;
  /** The send buffer passed maxBufferedBytes. */
  overBuffered(client: Client): void;
  /** Bytes of stored events a catch-up wrote to the client. */
  replayed(client: Client, bytes: number): void;
}

/**
 * Bounds the reads of stored history in flight on a node (catch-ups and history pages): many slow consumers resuming
 * at once, or many clients paging large histories, cannot spike the node's memory or Redis's output.
 */
class Semaphore {
  running = 0;
  private readonly queue: (() => void)[] = [];
  constructor(private readonly max: number) {}
  get waiting(): number {
    return this.queue.length;
  }
  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((go) => this.queue.push(go));
    else this.running++;
    try {
      return await work();
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.running--;
    }
  }
}

export class Hub {
  private readonly topics = new Map<string, Topic>();
  private slow = 0;
  private readonly historyReadSlots: Semaphore;
  private publisher?: TopicPublisher;
  /** Connections in at least one native topic. */
  private readonly members = new Set<Client>();
  /** Bytes published through native topics since every member's send buffer was last checked. */
  private unchecked = 0;

  constructor(
    private readonly engine: Engine,
    private readonly opts: HubOptions,
    private readonly stats: Stats,
    private readonly events: HubEvents,
    private readonly log: Logger,
  ) {
    this.historyReadSlots = new Semaphore(opts.historyReadConcurrency);
    engine.onMessage((channel, message) => this.onBus(channel, message));
    engine.onResync(() => this.resyncAll());
  }

  get roomCount(): number {
    let n = 0;
    for (const t of this.topics.values()) if (t.ref.kind === 'room') n++;
    return n;
  }

  get channelCount(): number {
    return this.topics.size;
  }

  get slowConsumers(): number {
    return this.slow;
  }

  /** Turns native topics on (when NATIVE_TOPICS allows): call before the first connection is added. */
  useTopics(publisher: TopicPublisher): void {
    if (this.opts.nativeTopics) this.publisher = publisher;
  }

  /** Connections receiving at least one stream through its native topic. */
  get nativeMembers(): number {
    return this.members.size;
  }

  /** The sub's position: what it was sent up to (a member's is its topic's). */
  position(sub: Sub): { epoch: string; offset: number } {
    const at = sub.native ?? sub;
    return { epoch: at.epoch, offset: at.offset };
  }

  /** Runs a read of stored history under the node's cap on concurrent history reads (HISTORY_READ_CONCURRENCY). */
  readHistory<T>(read: () => Promise<T>): Promise<T> {
    return this.historyReadSlots.run(read);
  }

  /** History reads running now, and waiting for a turn (HISTORY_READ_CONCURRENCY). */
  get historyReads(): { running: number; waiting: number } {
    return { running: this.historyReadSlots.running, waiting: this.historyReadSlots.waiting };
  }

  /**
   * Adds the client to the stream, paused, and returns its sub at once (callers record it before awaiting, so a
   * concurrent second add for the same connection cannot happen). `ready` resolves once the channel is
   * subscribed: every event published afterwards reaches the sub (or is read by its catch-up). Call start() to
   * set its position.
   */
  add(client: Client, ref: StreamRef): { sub: Sub; ready: Promise<void> } {
    const channel = this.engine.channel(ref);
    let topic = this.topics.get(channel);
    if (!topic) {
      const subscribed = this.engine.subscribe(channel);
      const created: Topic = (topic = {
        ref,
        channel,
        subs: new Map(),
        users: ref.kind === 'room' ? new Map() : undefined,
        liveEpoch: '',
        liveOffset: -1,
        subscribed,
      });
      this.topics.set(channel, topic);
      subscribed.then(
        () => {
          if (created.subscribed === subscribed) created.subscribed = undefined;
        },
        () => {
          if (this.topics.get(channel) === created && created.subs.size === 0) this.topics.delete(channel);
        },
      );
    }
    const sub: Sub = { ref, epoch: '', offset: 0, start: 0, catchingUp: true, seen: 0, gen: 0 };
    topic.subs.set(client, sub);
    topic.direct?.set(client, sub);
    topic.users?.set(client.user, (topic.users.get(client.user) ?? 0) + 1);
    const ready = topic.subscribed
      ? topic.subscribed.catch((err: unknown) => {
          this.remove(client, ref);
          throw err;
        })
      : SUBSCRIBED;
    return { sub, ready };
  }

  /**
   * Sets the sub's position and lets it run: live from `offset`, after a catch-up from history when `replay`
   * is set or events past `offset` arrived while it was paused.
   */
  start(client: Client, sub: Sub, epoch: string, offset: number, replay: boolean): void {
    sub.epoch = epoch;
    sub.offset = offset;
    sub.start = offset;
    const missed = sub.seen > offset || (sub.seenEpoch !== undefined && sub.seenEpoch !== epoch);
    if (replay || missed) this.catchUp(client, sub);
    else sub.catchingUp = false;
  }

  /**
   * Moves a running sub back to (epoch, offset) to replay what it has not sent yet: what this connection was
   * already sent since the sub started is held (passed over, neither sent again nor announced as a gap), so each
   * event reaches the connection once. A position at or after where the sub started needs nothing.
   */
  rewind(client: Client, sub: Sub, epoch: string, offset: number): void {
    if (client.closed || !this.isCurrent(client, sub)) return;
    if (epoch === sub.epoch && offset >= sub.start) return;
    if (sub.native) this.leave(sub.native as NativeTopic, client, sub);
    const sent = Math.max(sub.offset, sub.hold?.epoch === sub.epoch ? sub.hold.to : 0);
    sub.hold = sent > sub.start ? { epoch: sub.epoch, from: sub.start + 1, to: sent } : undefined;
    sub.epoch = epoch;
    sub.offset = offset;
    sub.start = offset;
    // A new catch-up generation: one still reading from the old position stops at its next step.
    this.catchUp(client, sub);
  }

  /** Whether the user has a local connection in the room (presence is marked per node and user). */
  hasUser(room: string, user: string): boolean {
    return this.topics.get(this.engine.channel({ kind: 'room', name: room }))?.users?.has(user) ?? false;
  }

  /** Removes the client from the stream; returns true when it was the user's last local connection there. */
  remove(client: Client, ref: StreamRef): boolean {
    const channel = this.engine.channel(ref);
    const topic = this.topics.get(channel);
    const sub = topic?.subs.get(client);
    if (!topic || !sub) return false;
    if (sub.native) this.leave(sub.native as NativeTopic, client, sub);
    topic.subs.delete(client);
    topic.direct?.delete(client);
    let left = topic.subs.size;
    if (topic.users) {
      left = (topic.users.get(client.user) ?? 1) - 1;
      if (left > 0) topic.users.set(client.user, left);
      else topic.users.delete(client.user);
    }
    if (topic.subs.size === 0) {
      this.topics.delete(channel);
      if (topic.presence) clearTimeout(topic.presence.timer);
      this.engine
        .unsubscribe(channel)
        .catch((err: Error) => this.log.warn({ err: err.message, channel }, 'unsubscribe failed'));
    }
    return left === 0;
  }

  /** Local users per room and connections per user, for the engine's heartbeat. */
  localState(clients: Iterable<Client>): LocalState {
    const rooms = new Map<string, Set<string>>();
    for (const t of this.topics.values()) if (t.users) rooms.set(t.ref.name, new Set(t.users.keys()));
    const users = new Map<string, Set<string>>();
    for (const c of clients) {
      let set = users.get(c.user);
      if (!set) users.set(c.user, (set = new Set()));
      set.add(c.id);
    }
    return { rooms, users };
  }

  /** The socket drained below half the bound: resume live pushes and catch up what was held back. */
  drained(client: Client): void {
    if (!client.lagging || client.conn.bufferedAmount() > this.opts.slowConsumerBytes / 2) return;
    client.lagging = false;
    this.slow--;
    for (const sub of this.subsOf(client)) if (!sub.catchingUp) this.catchUp(client, sub);
  }

  /** The client is gone: stop counting it as slow. */
  forget(client: Client): void {
    if (client.lagging) {
      client.lagging = false;
      this.slow--;
    }
  }

  private *subsOf(client: Client): Iterable<Sub> {
    yield* client.rooms.values();
    if (client.inbox) yield client.inbox;
  }

  private markSlow(client: Client): void {
    if (client.lagging) return;
    client.lagging = true;
    this.slow++;
    this.events.backpressure();
    if (client.nativeTopics > 0)
      for (const sub of this.subsOf(client))
        if (sub.native) this.leave(sub.native as NativeTopic, client, sub);
  }

  /**
   * Writes one frame; false if it was not written (the connection is then marked slow). Not counted. A member of a
   * native topic has its send buffer checked after every write, written or not (see "Native topics").
   */
  private send(client: Client, frame: OutFrame): boolean {
    if (client.closed) return false;
    const status = client.conn.send(frame);
    if (status === SendStatus.SENT && client.nativeTopics === 0) return true;
    const buffered = client.conn.bufferedAmount();
    if (status === SendStatus.DROPPED || buffered > this.opts.slowConsumerBytes) this.markSlow(client);
    if (buffered > this.opts.maxBufferedBytes) this.events.overBuffered(client);
    return status !== SendStatus.DROPPED;
  }

  /**
   * The one egress point of a connection for single frames: replies, the welcome, events and replays all come
   * here (the fan-out in deliver() shares send() and counts once per bus message). It respects backpressure (a
   * dropped write or a buffer over SLOW_CONSUMER_BYTES pauses live pushes until drained(); over MAX_BUFFERED_BYTES
   * the gateway closes the connection) and counts what was written. False if the frame was not written.
   */
  write(client: Client, frame: OutFrame, type: string): boolean {
    if (!this.send(client, frame)) return false;
    this.stats.countOut(type, frame instanceof Packed ? frame.bytes.length : frame.length);
    return true;
  }

  private onBus(channel: string, message: BusMessage): void {
    const topic = this.topics.get(channel);
    if (!topic) return;
    if (message.kind === 'event') this.deliver(topic, message);
    else if (message.kind === 'presence') this.presenceChanged(topic, message.frame);
    else if (message.kind === 'disconnect') this.events.disconnectUser(topic.ref.name);
    else if (message.kind === 'join' || message.kind === 'leave')
      this.events.roomForUser(topic.ref.name, message.kind, message.room);
  }

  /** Collects one presence change of the room; the batch goes out when its window closes. */
  private presenceChanged(topic: Topic, frame: string | Uint8Array): void {
    let change: { event?: unknown; user?: unknown };
    try {
      change = JSON.parse(
        typeof frame === 'string' ? frame : Buffer.from(frame).toString('utf8'),
      ) as typeof change;
    } catch {
      return;
    }
    if ((change.event !== 'join' && change.event !== 'leave') || typeof change.user !== 'string') return;
    let batch = topic.presence;
    if (!batch) {
      if (this.opts.presenceBatchMs === 0) {
        this.sendPresence(topic, new Map([[change.user, change.event]]));
        return;
      }
      const timer = setTimeout(() => {
        const changes = topic.presence?.changes;
        topic.presence = undefined;
        if (changes && this.topics.get(topic.channel) === topic) this.sendPresence(topic, changes);
      }, this.opts.presenceBatchMs);
      batch = topic.presence = { changes: new Map(), timer };
    }
    // The last change of a user wins: a join then a leave in one window is a leave (state, not history).
    batch.changes.delete(change.user);
    batch.changes.set(change.user, change.event);
  }

  private sendPresence(topic: Topic, changes: Map<string, 'join' | 'leave'>): void {
    const joined: string[] = [];
    const left: string[] = [];
    for (const [user, event] of changes) (event === 'join' ? joined : left).push(user);
    if (topic.ref.kind !== 'room') return;
    // Encoded once for every member: as JSON, and for the first MessagePack member once as MessagePack.
    const frame = new Prepared(Buffer.from(presenceBatchEvent(topic.ref.name, joined, left)));
    for (const client of topic.subs.keys())
      if (!client.lagging) this.write(client, frame.for(client.conn.encoding), 'presence');
  }

  /**
   * The hot path: one bus event to every local connection of the stream. The native topic's members get it from one
   * publish per encoding when it is exactly the topic's next event; otherwise (a gap, a new epoch, a `skip`) every
   * member first goes back to the per-connection path at the topic's position, which then handles the event as for
   * any connection. A connection the per-connection path leaves level with the event joins the topic.
   */
  private deliver(topic: Topic, m: Extract<BusMessage, { kind: 'event' }>): void {
    let sentJson = 0;
    let sentPacked = 0;
    // Converted for MessagePack at most once, for the first MessagePack subscriber, and reused for the rest.
    const frame = new Prepared(m.frame);
    const nt = topic.native;
    if (nt) {
      // A `skip` (a DM's sender connection, which gets the reply instead) goes per connection when it is a member.
      const next =
        m.epoch === nt.epoch && m.offset === nt.offset + 1 && (m.skip === '' || !memberNamed(nt, m.skip));
      if (next && this.publish(nt, frame)) {
        sentJson = nt.json;
        sentPacked = nt.msgpack;
      } else this.leaveAll(nt);
    }
    topic.liveEpoch = m.epoch;
    topic.liveOffset = m.offset;
    const native = this.publisher !== undefined;
    for (const [client, sub] of topic.direct ?? topic.subs) {
      // The first event of a stream that was empty (epoch "") when this connection started on it: take its epoch.
      if (sub.epoch === '' && sub.offset === 0 && m.offset === 1 && !sub.catchingUp) sub.epoch = m.epoch;
      if (sub.catchingUp || client.lagging || m.epoch !== sub.epoch || m.offset > sub.offset + 1) {
        // Not the next event for this connection: note it; history will supply it in order.
        if (m.epoch !== sub.epoch) sub.seenEpoch = m.epoch;
        if (m.offset > sub.seen) sub.seen = m.offset;
        if (!sub.catchingUp && !client.lagging) this.catchUp(client, sub);
        continue;
      }
      if (m.offset <= sub.offset) {
        // Already delivered by a catch-up.
      } else if (m.skip === client.id) {
        sub.offset = m.offset;
      } else if (this.send(client, frame.for(client.conn.encoding))) {
        sub.offset = m.offset;
        if (client.conn.encoding === 'json') sentJson++;
        else sentPacked++;
      }
      if (native && sub.offset === m.offset) this.join(topic, client, sub);
    }
    const type = topic.ref.kind === 'room' ? 'message' : 'dm';
    this.stats.countOut(type, frame.size('json'), sentJson);
    this.stats.countOut(type, frame.size('msgpack'), sentPacked);
    this.events.delivered((Date.now() - m.ts) / 1000);
  }

  // Native topics. A member's frames are written by the transport (uWS app.publish), which neither reports a status
  // per socket nor lets us see a refused write: with closeOnBackpressureLimit off, uWS silently skips a socket whose
  // send buffer is over its maxBackpressure (and, draining a batch, the rest of that batch for it). That must never
  // happen to a member, so membership holds these invariants:
  // 1. Position. A sub is a member only while not catching up, its connection not lagging, and its position equal
  //    to the topic's. It joins only in the synchronous turn in which its offset became equal to the topic's (after
  //    the per-connection path wrote it the event the topic is at, or a catch-up ended there), and only an event
  //    that is exactly the topic's next goes out through the publish; anything else first sends every member back
  //    to the per-connection path at the topic's position. So each event reaches each connection through exactly
  //    one of the two paths, chosen synchronously, and the transport keeps the order of publishes and sends per
  //    socket (frames published before a send or an unsubscribe are written first; see uws-server.ts).
  // 2. Send buffer. A connection joins only with at most SLOW_CONSUMER_BYTES buffered, and leaves (marked slow)
  //    when a check finds more: after every frame the hub writes to it directly (send()), after uWS answered a ping
  //    of its (checkBuffer()), and, for all members at once, before the bytes published through native topics since
  //    the last such check would pass nativeCheckBytes. Between checks a member's buffer grows only by what the
  //    topics published (counted with each frame's largest encoding and header), so it stays under
  //    SLOW_CONSUMER_BYTES + nativeCheckBytes <= MAX_BUFFERED_BYTES, below uWS's maxBackpressure (server.ts keeps
  //    that above MAX_BUFFERED_BYTES by a catch-up page and two frames, which also covers uWS's own pings).
  //    A member therefore never reaches the point where uWS drops, and a slow member is still paused and caught up
  //    from history like any slow consumer, at most nativeCheckBytes (at most a catch-up page) later.

  /**
   * Publishes the frame to the topic's members, once per encoding that has members; false (nothing published) if
   * one frame is more than nativeCheckBytes, which the per-connection path then writes.
   */
  private publish(nt: NativeTopic, frame: Prepared): boolean {
    const json = frame.json;
    const packed = nt.msgpack > 0 ? (frame.for('msgpack') as Packed).bytes : undefined;
    const bytes =
      Math.max(
        nt.json > 0 ? (typeof json === 'string' ? Buffer.byteLength(json) : json.length) : 0,
        packed ? packed.length : 0,
      ) + FRAME_HEADER_MAX;
    if (bytes > this.opts.nativeCheckBytes) return false;
    if (this.unchecked + bytes > this.opts.nativeCheckBytes) this.checkMembers();
    this.unchecked += bytes;
    if (nt.json > 0) this.publisher!.publish(nt.names.json, json, false);
    if (packed && nt.msgpack > 0) this.publisher!.publish(nt.names.msgpack, packed, true);
    return true;
  }

  /** Adds the sub to the native topic if it is level with it and may join (invariants 1 and 2 above). */
  private join(topic: Topic, client: Client, sub: Sub): void {
    if (sub.native || sub.catchingUp || client.lagging || client.closed) return;
    // A stream with one local connection (most users' inboxes) gains nothing from a topic of one, and each uWS
    // topic and subscription costs native memory: it stays on the per-connection path.
    if (topic.subs.size < 2) return;
    if (sub.epoch !== topic.liveEpoch || sub.offset !== topic.liveOffset) return;
    if (client.conn.bufferedAmount() > this.opts.slowConsumerBytes) return;
    // (Iterating `subs` in deliver() meanwhile is fine: the copy is what later loops iterate.)
    const direct = (topic.direct ??= new Map(topic.subs));
    direct.delete(client);
    const nt = (topic.native ??= new NativeTopic(topic));
    const encoding = client.conn.encoding;
    client.conn.subscribe(nt.names[encoding]);
    sub.native = nt;
    nt.members.set(client, sub);
    if (encoding === 'json') nt.json++;
    else nt.msgpack++;
    if (client.nativeTopics++ === 0) this.members.add(client);
  }

  /** Back to the per-connection path, at the topic's position (everything published so far reaches the socket). */
  private leave(nt: NativeTopic, client: Client, sub: Sub): void {
    if (sub.native !== nt) return;
    sub.epoch = nt.epoch;
    sub.offset = nt.offset;
    sub.native = undefined;
    const encoding = client.conn.encoding;
    client.conn.unsubscribe(nt.names[encoding]);
    nt.members.delete(client);
    if (encoding === 'json') nt.json--;
    else nt.msgpack--;
    nt.topic.direct?.set(client, sub);
    if (--client.nativeTopics === 0) this.members.delete(client);
    if (nt.members.size === 0 && nt.topic.native === nt) {
      nt.topic.native = undefined;
      nt.topic.direct = undefined; // every sub again
    }
  }

  private leaveAll(nt: NativeTopic): void {
    for (const [client, sub] of nt.members) this.leave(nt, client, sub);
  }

  /** Checks every member's send buffer (invariant 2); the bytes published since start counting again. */
  private checkMembers(): void {
    this.unchecked = 0;
    for (const client of this.members) this.checkBuffer(client);
  }

  /**
   * Checks a member's send buffer: over SLOW_CONSUMER_BYTES it leaves its topics as a slow consumer (over
   * MAX_BUFFERED_BYTES it is closed). The transport calls it after writing a frame of its own (a pong).
   */
  checkBuffer(client: Client): void {
    if (client.nativeTopics === 0 || client.closed) return;
    const buffered = client.conn.bufferedAmount();
    if (buffered > this.opts.slowConsumerBytes) this.markSlow(client);
    if (buffered > this.opts.maxBufferedBytes) this.events.overBuffered(client);
  }

  /**
   * Reads history after sub.offset page by page and writes it, until the sub is level with everything seen
   * live meanwhile; then live pushes resume. Stops early (to resume on drain) if the socket backs up.
   */
  private catchUp(client: Client, sub: Sub): void {
    if (sub.native) this.leave(sub.native as NativeTopic, client, sub);
    sub.catchingUp = true;
    const gen = sub.gen + 1;
    void this.runCatchUp(client, sub).catch((err: Error) => {
      if (sub.gen !== gen) return;
      sub.catchingUp = false;
      if (client.closed) return;
      this.log.warn({ err: err.message, conn: client.id }, 'catch-up failed; retrying');
      setTimeout(() => {
        if (!client.closed && !sub.catchingUp && this.isCurrent(client, sub)) this.catchUp(client, sub);
      }, 1000).unref();
    });
  }

  private isCurrent(client: Client, sub: Sub): boolean {
    return sub.ref.kind === 'room' ? client.rooms.get(sub.ref.name) === sub : client.inbox === sub;
  }

  private async runCatchUp(client: Client, sub: Sub): Promise<void> {
    const gen = ++sub.gen;
    const type = sub.ref.kind === 'room' ? 'message' : 'dm';
    const target = sub.ref.kind === 'room' ? { room: sub.ref.name } : { inbox: true as const };
    for (;;) {
      sub.seen = 0;
      sub.seenEpoch = undefined;
      const page = await this.historyReadSlots.run(() =>
        this.engine.read(sub.ref, sub.offset, this.opts.catchUpPage),
      );
      if (client.closed || !this.isCurrent(client, sub) || sub.gen !== gen) return;
      if (page.epoch !== sub.epoch) {
        // The history was lost (e.g. Redis restarted without persistence): say so, restart at offset 0. A position
        // at offset 0 saw nothing (e.g. the stream was empty, epoch "", when the client joined): no gap.
        if (sub.offset > 0 && !this.write(client, gapEvent(target, sub.offset + 1, null, page.epoch), 'gap'))
          return this.pause(sub);
        sub.epoch = page.epoch;
        sub.offset = 0;
        sub.start = 0;
        if (sub.hold && sub.hold.epoch !== page.epoch) sub.hold = undefined;
        continue;
      }
      if (sub.offset > page.top) sub.offset = page.top; // ahead of the store: a claim we cannot honour
      // Every hole before an event (history trimmed, a failover's offset jump) is announced before it.
      let replayed = 0;
      let refused = false;
      for (const e of page.events) {
        if (e.offset > sub.offset + 1 && !this.announce(client, sub, target, e.offset - 1)) {
          refused = true;
          break;
        }
        if (!this.held(sub, e.offset)) {
          if (!this.write(client, e.frame, type)) {
            refused = true;
            break;
          }
          replayed += e.frame.length;
        }
        sub.offset = e.offset;
        if (client.lagging) break;
      }
      if (replayed > 0) this.events.replayed(client, replayed);
      if (refused || client.lagging || client.closed) return this.pause(sub);
      if (page.events.length === 0 && page.top > sub.offset && !this.announce(client, sub, target, page.top))
        return this.pause(sub);
      const behind =
        sub.seenEpoch !== undefined || sub.seen > sub.offset || page.events.length === this.opts.catchUpPage;
      if (!behind) {
        // Held offsets the store no longer reaches were sent already: nothing of them is owed.
        if (sub.hold?.epoch === sub.epoch && sub.hold.to > sub.offset) sub.offset = sub.hold.to;
        sub.hold = undefined;
        sub.catchingUp = false;
        const topic = this.publisher && this.topics.get(this.engine.channel(sub.ref));
        if (topic) this.join(topic, client, sub);
        return;
      }
    }
  }

  /** Whether the offset was already sent on this connection before a rewind (and is passed over). */
  private held(sub: Sub, offset: number): boolean {
    const hold = sub.hold;
    if (!hold || hold.epoch !== sub.epoch) return false;
    if (offset >= hold.to) sub.hold = undefined;
    return offset >= hold.from && offset <= hold.to;
  }

  /**
   * Writes a gap for sub.offset+1..to (leaving out held offsets, which were sent) and moves the sub past it;
   * false, with the sub moved only past what was announced, when the socket refused the frame.
   */
  private announce(
    client: Client,
    sub: Sub,
    target: { room: string } | { inbox: true },
    to: number,
  ): boolean {
    const from = sub.offset + 1;
    const hold = sub.hold?.epoch === sub.epoch ? sub.hold : undefined;
    const ranges: [number, number][] = hold
      ? [
          [from, Math.min(to, hold.from - 1)],
          [Math.max(from, hold.to + 1), to],
        ]
      : [[from, to]];
    for (const [a, b] of ranges) {
      if (a > b) continue;
      if (!this.write(client, gapEvent(target, a, b, sub.epoch), 'gap')) return false;
      sub.offset = b;
    }
    sub.offset = to;
    return true;
  }

  /** Backpressure during a catch-up: stop here; drained() resumes it. */
  private pause(sub: Sub): void {
    sub.catchingUp = false;
  }

  /** The bus may have lost events: catch every sub up from history. */
  private resyncAll(): void {
    for (const topic of this.topics.values())
      for (const [client, sub] of topic.subs)
        if (!sub.catchingUp && !client.lagging) this.catchUp(client, sub);
  }
}
