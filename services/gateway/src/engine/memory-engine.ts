// Single-node engine: everything in this process, nothing survives a restart (a restart is a new epoch).
import type {
  Activity,
  AppendInput,
  AppendResult,
  BusHandler,
  BusMessage,
  DirectMessageInput,
  DirectMessageResult,
  Engine,
  RatedAppendResult,
  ReadResult,
  Revocation,
  StoredEvent,
  TokenRef,
  StreamRef,
  WebhookQueue,
  QueuedWebhook,
} from './engine';
import { Denylist } from './denylist';
import { dmFrameParts } from './engine';
import { newEpoch } from './epoch';
import { presenceEvent, storedEvent } from '../../../../protocol';

interface Stream {
  epoch: string;
  top: number;
  events: StoredEvent[];
  expiresAt: number;
}

export interface MemoryEngineOptions {
  historySize: number;
  historyTtlS: number;
  inboxSize: number;
  inboxTtlS: number;
  dedupWindowS: number;
}

export class MemoryEngine implements Engine {
  readonly kind = 'memory';
  private handler: BusHandler = () => {};
  private readonly subscribed = new Set<string>();
  private readonly streams = new Map<string, Stream>();
  private readonly dedup = new Map<string, { result: AppendResult; expiresAt: number }>();
  private readonly rooms = new Map<string, Set<string>>();
  private readonly conns = new Map<string, Map<string, Record<string, unknown>>>();
  private readonly rates = new Map<string, { window: number; count: number }>();
  private readonly denylist = new Denylist();
  private revokedHandler: (r: Revocation) => void = () => {};
  private sweeper?: NodeJS.Timeout;
  private activity: (a: Activity) => void = () => {};

  constructor(private readonly opts: MemoryEngineOptions) {}

  onActivity(handler: (activity: Activity) => void): void {
    this.activity = handler;
  }

  webhookQueue(retention: number): WebhookQueue {
    // One per call: the composition root makes one and shares it between recorder and sender.
    return new MemoryWebhookQueue(retention);
  }

  async start(): Promise<void> {
    this.sweeper = setInterval(() => this.sweep(), 10_000).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.sweeper);
  }

  sameNodeIdPeers(): number {
    return 0;
  }

  ready(): boolean {
    return true;
  }

  channel(stream: StreamRef): string {
    return `${stream.kind === 'room' ? 'r' : 'u'}:${stream.name}`;
  }

  onMessage(handler: BusHandler): void {
    this.handler = handler;
  }

  onResync(): void {
    // The in-process bus never loses messages.
  }

  async subscribe(channel: string): Promise<void> {
    this.subscribed.add(channel);
  }

  async unsubscribe(channel: string): Promise<void> {
    this.subscribed.delete(channel);
  }

  private publish(channel: string, message: BusMessage): void {
    // Delivered in a later microtask, in order, like a message arriving from Redis.
    queueMicrotask(() => {
      if (this.subscribed.has(channel)) this.handler(channel, message);
    });
  }

  private stream(ref: StreamRef): Stream {
    const key = this.channel(ref);
    let s = this.streams.get(key);
    if (!s || s.expiresAt < Date.now()) {
      s = { epoch: newEpoch(), top: 0, events: [], expiresAt: 0 };
      this.streams.set(key, s);
    }
    s.expiresAt = Date.now() + (ref.kind === 'room' ? this.opts.historyTtlS : this.opts.inboxTtlS) * 1000;
    return s;
  }

  async append(ref: StreamRef, input: AppendInput): Promise<AppendResult> {
    const channel = this.channel(ref);
    const dedupKey = input.dedup && JSON.stringify([channel, input.dedup.scope, input.dedup.key]);
    if (dedupKey) {
      const prev = this.dedup.get(dedupKey);
      if (prev && prev.expiresAt > Date.now()) return { ...prev.result, duplicate: true };
    }
    const s = this.stream(ref);
    const offset = ++s.top;
    const frame = storedEvent(input.frame, offset, s.epoch);
    s.events.push({ offset, frame });
    const max = ref.kind === 'room' ? this.opts.historySize : this.opts.inboxSize;
    if (s.events.length > max) s.events.splice(0, s.events.length - max);
    const result: AppendResult = { offset, epoch: s.epoch, id: input.id, ts: input.ts, duplicate: false };
    if (dedupKey) this.dedup.set(dedupKey, { result, expiresAt: Date.now() + this.opts.dedupWindowS * 1000 });
    this.publish(channel, {
      kind: 'event',
      offset,
      epoch: s.epoch,
      ts: input.ts,
      skip: input.skip ?? '',
      frame,
    });
    return result;
  }

  async appendRated(
    ref: StreamRef,
    input: AppendInput,
    rate: { user: string; perSecond: number },
  ): Promise<RatedAppendResult> {
    const waitMs = rate.perSecond > 0 ? await this.userRate(rate.user, rate.perSecond) : 0;
    if (waitMs > 0) return { limited: true, waitMs };
    return { limited: false, message: await this.append(ref, input) };
  }

  async dm(input: DirectMessageInput): Promise<DirectMessageResult> {
    const { from, to, key } = input;
    if (input.rate) {
      const waitMs = await this.userRate(from, input.rate);
      if (waitMs > 0) return { limited: true, waitMs };
    }
    const message = await this.append(
      { kind: 'inbox', name: to },
      {
        id: input.id,
        ts: input.ts,
        frame: dmFrameParts('recipient', input),
        dedup: key ? { scope: from, key } : undefined,
      },
    );
    if (input.senderCopy && from !== to) {
      const { id, ts } = message;
      await this.append(
        { kind: 'inbox', name: from },
        {
          id,
          ts,
          frame: dmFrameParts('sender', { ...input, id, ts }),
          dedup: key ? { scope: '', key: id } : undefined,
          skip: input.skip,
        },
      );
    }
    return { limited: false, message, delivered: this.conns.get(to)?.size ?? 0 };
  }

  /** The stream if it exists and has not expired; reads never create one. */
  private existing(ref: StreamRef): Stream | undefined {
    const s = this.streams.get(this.channel(ref));
    return s && s.expiresAt >= Date.now() ? s : undefined;
  }

  async read(ref: StreamRef, after: number, limit: number): Promise<ReadResult> {
    const s = this.existing(ref);
    if (!s) return { epoch: '', top: 0, events: [] };
    const events: StoredEvent[] = [];
    for (const e of s.events) {
      if (e.offset > after) events.push(e);
      if (events.length === limit) break;
    }
    return { epoch: s.epoch, top: s.top, events };
  }

  async readBefore(ref: StreamRef, before: number | undefined, limit: number): Promise<ReadResult> {
    const s = this.existing(ref);
    if (!s) return { epoch: '', top: 0, events: [] };
    const older = s.events.filter((e) => before === undefined || e.offset < before);
    return { epoch: s.epoch, top: s.top, events: older.slice(-limit) };
  }

  async presenceAdd(room: string, user: string): Promise<string[]> {
    let users = this.rooms.get(room);
    if (!users) this.rooms.set(room, (users = new Set()));
    if (!users.has(user)) {
      users.add(user);
      this.publish(`r:${room}`, { kind: 'presence', frame: presenceEvent(room, 'join', user) });
      if (users.size === 1) this.activity({ type: 'room.occupied', room });
    }
    return [...users];
  }

  async presenceRemove(room: string, user: string): Promise<void> {
    const users = this.rooms.get(room);
    if (!users?.delete(user)) return;
    if (users.size === 0) this.rooms.delete(room);
    this.publish(`r:${room}`, { kind: 'presence', frame: presenceEvent(room, 'leave', user) });
    if (users.size === 0) this.activity({ type: 'room.vacated', room });
  }

  async presence(room: string): Promise<string[]> {
    return [...(this.rooms.get(room) ?? [])];
  }

  async connectionAdd(user: string, connId: string, info: Record<string, unknown>): Promise<void> {
    let set = this.conns.get(user);
    if (!set) this.conns.set(user, (set = new Map()));
    if (set.has(connId)) return;
    set.set(connId, info);
    if (set.size === 1) this.activity({ type: 'user.online', user });
  }

  async connectionReserve(
    user: string,
    connId: string,
    limit: number,
    info: Record<string, unknown>,
  ): Promise<boolean> {
    if ((this.conns.get(user)?.size ?? 0) >= limit) return false;
    await this.connectionAdd(user, connId, info);
    return true;
  }

  async connectionRemove(user: string, connId: string): Promise<void> {
    const set = this.conns.get(user);
    if (!set?.delete(connId)) return;
    if (set.size === 0) {
      this.conns.delete(user);
      this.activity({ type: 'user.offline', user });
    }
  }

  async connectionCount(user: string): Promise<number> {
    return this.conns.get(user)?.size ?? 0;
  }

  async disconnectUser(user: string): Promise<void> {
    this.publish(`u:${user}`, { kind: 'disconnect' });
  }

  async revoke(r: Revocation): Promise<void> {
    const entry = this.denylist.add(r);
    if (entry) queueMicrotask(() => this.revokedHandler(entry));
  }

  isRevoked(token: TokenRef): boolean {
    return this.denylist.has(token);
  }

  onRevoked(handler: (r: Revocation) => void): void {
    this.revokedHandler = handler;
  }

  async roomForUser(user: string, kind: 'join' | 'leave', room: string): Promise<void> {
    this.publish(`u:${user}`, { kind, room });
  }

  async connections(user: string): Promise<{ id: string; info: Record<string, unknown> }[]> {
    return [...(this.conns.get(user) ?? [])].map(([id, info]) => ({ id, info }));
  }

  async userRate(user: string, perSecond: number): Promise<number> {
    const now = Date.now();
    const window = Math.floor(now / 1000);
    let r = this.rates.get(user);
    if (!r || r.window !== window) this.rates.set(user, (r = { window, count: 0 }));
    r.count++;
    return r.count > perSecond ? (window + 1) * 1000 - now : 0;
  }

  async heartbeat(): Promise<void> {}

  async removeNode(): Promise<void> {}

  private sweep(): void {
    const now = Date.now();
    for (const [k, v] of this.dedup) if (v.expiresAt < now) this.dedup.delete(k);
    for (const [k, v] of this.streams) if (v.expiresAt < now) this.streams.delete(k);
    const window = Math.floor(now / 1000);
    for (const [k, v] of this.rates) if (v.window < window) this.rates.delete(k);
    this.denylist.prune(now);
  }
}

/** The webhook queue in this process: the same hand-out, idle claim and retention rules as the Redis stream. */
class MemoryWebhookQueue implements WebhookQueue {
  private seq = 0;
  /** entry -> payload and who holds it since when; insertion order = append order. */
  private readonly entries = new Map<string, { payload: string; consumer?: string; touched: number }>();

  constructor(private readonly retention: number) {}

  async append(payload: string): Promise<void> {
    this.entries.set(`${Date.now()}-${this.seq++}`, { payload, touched: 0 });
    while (this.entries.size > this.retention) this.entries.delete(this.entries.keys().next().value!);
  }

  async read(consumer: string, count: number, claimIdleMs: number): Promise<QueuedWebhook[]> {
    const now = Date.now();
    const out: QueuedWebhook[] = [];
    for (const pass of ['idle', 'new'] as const)
      for (const [entry, e] of this.entries) {
        if (out.length >= count) return out;
        const take =
          pass === 'new'
            ? e.consumer === undefined
            : e.consumer !== undefined && now - e.touched >= claimIdleMs;
        if (!take) continue;
        e.consumer = consumer;
        e.touched = now;
        out.push({ entry, payload: e.payload });
      }
    return out;
  }

  async touch(consumer: string, entries: string[]): Promise<void> {
    for (const entry of entries) {
      const e = this.entries.get(entry);
      if (e) {
        e.consumer = consumer;
        e.touched = Date.now();
      }
    }
  }

  async ack(entries: string[]): Promise<void> {
    for (const entry of entries) this.entries.delete(entry);
  }
}
