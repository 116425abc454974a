// Cluster engine on one Redis: history in streams, presence and connections in sorted sets that expire unless
// the owning node heartbeats, traffic on pub/sub channels the node subscribes only while it serves them.
import { Redis, type RedisOptions } from 'ioredis';
import type {
  AppendInput,
  AppendResult,
  BusHandler,
  BusMessage,
  Engine,
  LocalState,
  ReadResult,
  StoredEvent,
  StreamRef,
} from './engine';
import { UnavailableError } from './engine';
import { newEpoch } from './epoch';
import { Keys } from './keys';
import { APPEND, CONNECTIONS, PRESENCE, RATE, READ } from './scripts';
import type { Logger } from '../logger';

export interface RedisEngineOptions {
  url: string;
  nodeId: string;
  keyPrefix: string;
  commandTimeoutMs: number;
  historySize: number;
  historyTtlS: number;
  inboxSize: number;
  inboxTtlS: number;
  dedupWindowS: number;
  presenceTtlMs: number;
}

/** Told about every Redis command: which, how long, and whether it failed. */
export type CommandObserver = (command: string, seconds: number, ok: boolean) => void;

type Scripted = Redis & {
  rcAppend(...args: (string | number)[]): Promise<[number, number | string, string?]>;
  rcRead(...args: (string | number)[]): Promise<[string, string, [string, string[]][]]>;
  rcPresence(...args: (string | number)[]): Promise<string[]>;
  rcConnections(...args: (string | number)[]): Promise<number>;
  rcRate(...args: (string | number)[]): Promise<number>;
};

const PIPE = 0x7c; // '|'

/** Parses a bus payload: e|offset|epoch|ts|skip|frame, p|frame or c|disconnect. */
export function parseBusPayload(buf: Buffer): BusMessage | undefined {
  const kind = buf[0];
  if (kind === 0x70 /* p */) return { kind: 'presence', frame: buf.subarray(2) };
  if (kind === 0x63 /* c */) return { kind: 'disconnect' };
  if (kind !== 0x65 /* e */) return undefined;
  const a = buf.indexOf(PIPE, 2);
  const b = a < 0 ? -1 : buf.indexOf(PIPE, a + 1);
  const c = b < 0 ? -1 : buf.indexOf(PIPE, b + 1);
  const d = c < 0 ? -1 : buf.indexOf(PIPE, c + 1);
  if (d < 0) return undefined;
  return {
    kind: 'event',
    offset: Number(buf.toString('latin1', 2, a)),
    epoch: buf.toString('latin1', a + 1, b),
    ts: Number(buf.toString('latin1', b + 1, c)),
    skip: buf.toString('latin1', c + 1, d),
    frame: buf.subarray(d + 1),
  };
}

export class RedisEngine implements Engine {
  readonly kind = 'redis';
  private readonly keys: Keys;
  private readonly redis: Scripted;
  private readonly sub: Redis;
  private handler: BusHandler = () => {};
  private resync: () => void = () => {};
  private subReadyOnce = false;
  private pingOk = false;
  private pinger?: NodeJS.Timeout;
  private readonly publishCommand = 'publish';

  constructor(
    private readonly opts: RedisEngineOptions,
    private readonly log: Logger,
    private readonly observe: CommandObserver = () => {},
  ) {
    this.keys = new Keys(opts.keyPrefix);
    const common: RedisOptions = {
      lazyConnect: true,
      connectionName: `gateway:${opts.nodeId}`,
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    };
    this.redis = new Redis(opts.url, {
      ...common,
      commandTimeout: opts.commandTimeoutMs,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      enableAutoPipelining: true,
    }) as Scripted;
    this.sub = new Redis(opts.url, { ...common, connectionName: `gateway-sub:${opts.nodeId}` });
    this.redis.defineCommand('rcAppend', { numberOfKeys: 3, lua: APPEND });
    this.redis.defineCommand('rcRead', { numberOfKeys: 2, lua: READ });
    this.redis.defineCommand('rcPresence', { numberOfKeys: 2, lua: PRESENCE });
    this.redis.defineCommand('rcConnections', { numberOfKeys: 2, lua: CONNECTIONS });
    this.redis.defineCommand('rcRate', { numberOfKeys: 1, lua: RATE });
    for (const [name, client] of [
      ['redis', this.redis],
      ['redis-sub', this.sub],
    ] as const) {
      client.on('error', (err: Error) => this.log.warn({ err: err.message, client: name }, 'redis error'));
    }
    this.sub.on('messageBuffer', (channel: Buffer, payload: Buffer) => {
      const message = parseBusPayload(payload);
      if (message) this.handler(channel.toString(), message);
    });
    this.sub.on('ready', () => {
      if (this.subReadyOnce) {
        this.log.info('redis subscriber reconnected; resyncing streams');
        this.resync();
      }
      this.subReadyOnce = true;
    });
    this.redis.on('ready', () => {
      this.pingOk = true;
    });
    this.redis.on('close', () => {
      this.pingOk = false;
    });
  }

  async start(): Promise<void> {
    // Both connections keep retrying in the background if Redis is down now; /readyz says so meanwhile.
    const connect = (c: Redis) => c.connect().catch(() => undefined);
    await Promise.all([connect(this.redis), connect(this.sub)]);
    this.pinger = setInterval(() => {
      this.timed('ping', () => this.redis.ping()).then(
        () => (this.pingOk = true),
        () => (this.pingOk = false),
      );
    }, 1000).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.pinger);
    await Promise.allSettled([this.redis.quit(), this.sub.quit()]);
  }

  ready(): boolean {
    return this.pingOk && this.redis.status === 'ready' && this.sub.status === 'ready';
  }

  channel(stream: StreamRef): string {
    return this.keys.channel(stream);
  }

  onMessage(handler: BusHandler): void {
    this.handler = handler;
  }

  onResync(handler: () => void): void {
    this.resync = handler;
  }

  async subscribe(channel: string): Promise<void> {
    await this.sub.subscribe(channel);
  }

  async unsubscribe(channel: string): Promise<void> {
    await this.sub.unsubscribe(channel);
  }

  /** Runs a command, reporting its latency; any failure becomes UnavailableError. */
  private async timed<T>(command: string, run: () => Promise<T>): Promise<T> {
    const start = performance.now();
    try {
      const result = await run();
      this.observe(command, (performance.now() - start) / 1000, true);
      return result;
    } catch (err) {
      this.observe(command, (performance.now() - start) / 1000, false);
      throw new UnavailableError(`redis ${command} failed: ${(err as Error).message}`);
    }
  }

  private bounds(ref: StreamRef): { size: number; ttlS: number } {
    return ref.kind === 'room'
      ? { size: this.opts.historySize, ttlS: this.opts.historyTtlS }
      : { size: this.opts.inboxSize, ttlS: this.opts.inboxTtlS };
  }

  async append(ref: StreamRef, input: AppendInput): Promise<AppendResult> {
    const { size, ttlS } = this.bounds(ref);
    const dedupKey = input.dedup
      ? this.keys.dedup(ref, input.dedup.scope, input.dedup.key)
      : this.keys.dedup(ref, '-', '-');
    const reply = await this.timed('append', () =>
      this.redis.rcAppend(
        this.keys.meta(ref),
        this.keys.history(ref),
        dedupKey,
        input.type,
        input.tail,
        input.ts,
        input.skip ?? '',
        size,
        ttlS,
        this.opts.dedupWindowS,
        newEpoch(),
        this.keys.channel(ref),
        input.dedup ? '1' : '0',
        this.publishCommand,
        input.id,
      ),
    );
    if (reply[0] === 1) {
      return {
        offset: Number(reply[1]),
        epoch: String(reply[2]),
        id: input.id,
        ts: input.ts,
        duplicate: false,
      };
    }
    const [offset, epoch, id, ts] = String(reply[1]).split('|');
    return { offset: Number(offset), epoch: epoch!, id: id!, ts: Number(ts), duplicate: true };
  }

  private async readMode(
    ref: StreamRef,
    mode: 'after' | 'before',
    at: string,
    limit: number,
  ): Promise<ReadResult> {
    const [epoch, top, entries] = await this.timed('read', () =>
      this.redis.rcRead(
        this.keys.meta(ref),
        this.keys.history(ref),
        mode,
        at,
        limit,
        newEpoch(),
        this.bounds(ref).ttlS,
      ),
    );
    const events: StoredEvent[] = entries.map(([id, fields]) => ({
      offset: parseInt(id, 10),
      frame: fields[1]!,
    }));
    if (mode === 'before') events.reverse();
    return { epoch, top: Number(top), events };
  }

  read(ref: StreamRef, after: number, limit: number): Promise<ReadResult> {
    return this.readMode(ref, 'after', String(after), limit);
  }

  readBefore(ref: StreamRef, before: number | undefined, limit: number): Promise<ReadResult> {
    return this.readMode(ref, 'before', before === undefined ? '' : String(before), limit);
  }

  private presenceCall(mode: string, room: string, user: string): Promise<string[]> {
    const now = Date.now();
    return this.timed('presence', () =>
      this.redis.rcPresence(
        this.keys.presence(room),
        this.keys.presenceUsers(room),
        mode,
        room,
        user,
        this.opts.nodeId,
        now,
        now + this.opts.presenceTtlMs,
        this.opts.presenceTtlMs * 2,
        this.keys.channel({ kind: 'room', name: room }),
        this.publishCommand,
      ),
    );
  }

  presenceAdd(room: string, user: string): Promise<string[]> {
    return this.presenceCall('add', room, user);
  }

  async presenceRemove(room: string, user: string): Promise<void> {
    await this.presenceCall('remove', room, user);
  }

  presence(room: string): Promise<string[]> {
    return this.presenceCall('list', room, '');
  }

  private connectionsCall(mode: string, user: string, connId: string, info = ''): Promise<number> {
    const now = Date.now();
    return this.timed('connections', () =>
      this.redis.rcConnections(
        this.keys.connections(user),
        this.keys.sessions(user),
        mode,
        this.opts.nodeId,
        connId,
        now,
        now + this.opts.presenceTtlMs,
        this.opts.presenceTtlMs * 2,
        info,
      ),
    );
  }

  async connectionAdd(user: string, connId: string, info: Record<string, unknown>): Promise<void> {
    await this.connectionsCall('add', user, connId, JSON.stringify(info));
  }

  async connectionRemove(user: string, connId: string): Promise<void> {
    await this.connectionsCall('remove', user, connId);
  }

  connectionCount(user: string): Promise<number> {
    return this.connectionsCall('count', user, '');
  }

  async disconnectUser(user: string): Promise<void> {
    await this.timed('publish', () =>
      this.redis.publish(this.keys.channel({ kind: 'inbox', name: user }), 'c|disconnect'),
    );
  }

  userRate(user: string, perSecond: number): Promise<number> {
    return this.timed('rate', () => this.redis.rcRate(this.keys.rate(user), perSecond));
  }

  async heartbeat(local: LocalState): Promise<void> {
    const now = Date.now();
    const work: Promise<unknown>[] = [
      this.timed('nodes', () => this.redis.zadd(this.keys.nodes(), now, this.opts.nodeId)),
      this.timed('nodes', () =>
        this.redis.zremrangebyscore(this.keys.nodes(), '-inf', now - this.opts.presenceTtlMs),
      ),
    ];
    for (const [room, users] of local.rooms)
      for (const user of users) work.push(this.presenceAdd(room, user));
    for (const [user, conns] of local.users)
      for (const c of conns) work.push(this.connectionsCall('touch', user, c));
    await Promise.all(work);
  }

  async removeNode(local: LocalState): Promise<void> {
    const work: Promise<unknown>[] = [
      this.timed('nodes', () => this.redis.zrem(this.keys.nodes(), this.opts.nodeId)),
    ];
    for (const [room, users] of local.rooms)
      for (const user of users) work.push(this.presenceRemove(room, user));
    for (const [user, conns] of local.users) for (const c of conns) work.push(this.connectionRemove(user, c));
    await Promise.allSettled(work);
  }
}
