// Cluster engine on Redis: history in streams, presence and connections in sorted sets that expire unless
// the owning node heartbeats, traffic on pub/sub channels the node subscribes only while it serves them.
// Three topologies: one Redis (REDIS_URL), a primary with replicas behind Sentinel (REDIS_SENTINELS), and Redis
// Cluster (REDIS_CLUSTER_NODES), where every stream's keys and channel share a hash tag and channels are sharded
// (SPUBLISH/SSUBSCRIBE), so a stream's store-and-publish and its fanout stay on the shard that owns it.
import { randomBytes } from 'node:crypto';
import { Cluster, Redis, type ClusterNode, type RedisOptions } from 'ioredis';
import type {
  Activity,
  AppendInput,
  AppendResult,
  BusHandler,
  BusMessage,
  DirectMessageInput,
  DirectMessageResult,
  Engine,
  LocalState,
  RatedAppendResult,
  ReadResult,
  Revocation,
  StoredEvent,
  StreamRef,
  TokenRef,
  WebhookQueue,
} from './engine';
import { dmFrameParts, UnavailableError } from './engine';
import { Denylist } from './denylist';
import { RedisWebhookQueue } from './redis-webhook-queue';
import { newEpoch } from './epoch';
import { Keys } from './keys';
import {
  keepConnected,
  PlainBus,
  ShardedBus,
  splitHostPort,
  type Bus,
  type SlotsReply,
} from './redis-connections';
import { APPEND, CONNECTIONS, DM, PRESENCE, RATE, RATED_APPEND, READ, REVOKE } from './scripts';
import { presenceEvent } from '../../../../protocol';
import type { Logger } from '../logger';

export interface RedisEngineOptions {
  /** Single Redis. With cluster or sentinels set, only its credentials and TLS (rediss:) are used. */
  url?: string;
  /** Redis Cluster seed nodes, host:port. */
  cluster?: string[];
  /** Sentinels, host:port, and the name of the primary they monitor. */
  sentinels?: string[];
  sentinelName?: string;
  /**
   * Durability: after each append, WAIT until this many replicas acknowledged it (0 = do not wait). Fewer acks
   * within waitTimeoutMs reject the append with UnavailableError (the client may retry with the same key).
   */
  waitReplicas?: number;
  waitTimeoutMs?: number;
  nodeId: string;
  /**
   * This process's identity in the lease, the node index and every presence and connection entry: NODE_ID plus
   * a random suffix ("<NODE_ID>#<hex>"), so a process restarted under the same NODE_ID takes nothing over from
   * the one that died; that one's entries are swept like any dead node's. Default: NODE_ID#<random>.
   */
  instanceId?: string;
  keyPrefix: string;
  /** /readyz: a PING unanswered this long makes the engine not ready (probed every half of it). */
  probeTimeoutMs?: number;
  commandTimeoutMs: number;
  historySize: number;
  historyTtlS: number;
  inboxSize: number;
  inboxTtlS: number;
  dedupWindowS: number;
  presenceTtlMs: number;
}

/**
 * Told about every Redis command: which, how long, and whether it failed. seconds is undefined for failures
 * counted without a latency (sharded subscribes that could not be placed during a failover).
 */
export type CommandObserver = (command: string, seconds: number | undefined, ok: boolean) => void;

type AppendReply = [number, number | string, string?];
/** The script calls that write a stream, which REDIS_WAIT_REPLICAS makes wait for replicas. */
type DurableScript = 'rcAppend' | 'rcRatedAppend' | 'rcDm';
/** {1, offset, epoch, connections}, {0, "offset|epoch|id|ts", '', connections}, or {-1, ms to wait}. */
type DmReply = [number, number | string, string?, string[]?];

type Scripted = (Redis | Cluster) & {
  rcAppend(...args: (string | number)[]): Promise<AppendReply>;
  /** APPEND's reply, or {-1, ms to wait} over the rate. */
  rcRatedAppend(...args: (string | number)[]): Promise<AppendReply>;
  /** The number of keys first: DM takes the keys of one or of both inboxes. */
  rcDm(...args: (string | number)[]): Promise<DmReply>;
  rcRead(...args: (string | number)[]): Promise<[string, string, [string, string[]][]]>;
  rcPresence(...args: (string | number)[]): Promise<[string, string[]]>;
  rcConnections(...args: (string | number)[]): Promise<[number, number]>;
  rcRate(...args: (string | number)[]): Promise<number>;
  rcRevoke(...args: (string | number)[]): Promise<number>;
};

const PIPE = 0x7c; // '|'

/** Parses a bus payload: e|offset|epoch|ts|skip|frame, p|frame, c|disconnect, j|room or l|room. */
export function parseBusPayload(buf: Buffer): BusMessage | undefined {
  const kind = buf[0];
  if (kind === 0x70 /* p */) return { kind: 'presence', frame: buf.subarray(2) };
  if (kind === 0x63 /* c */) return { kind: 'disconnect' };
  if (kind === 0x6a /* j */) return { kind: 'join', room: buf.toString('utf8', 2) };
  if (kind === 0x6c /* l */) return { kind: 'leave', room: buf.toString('utf8', 2) };
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

/** The result of a stored append: {1, offset, epoch} with the input's id and ts. */
function appended(
  reply: [number, number | string, string?, ...unknown[]],
  input: { id: string; ts: number },
) {
  return { offset: Number(reply[1]), epoch: String(reply[2]), id: input.id, ts: input.ts, duplicate: false };
}

/** The first result a dedup record holds ("offset|epoch|id|ts"), answered to a repeated key. */
function duplicateOf(record: string): AppendResult {
  const [offset, epoch, id, ts] = record.split('|');
  return { offset: Number(offset), epoch: epoch!, id: id!, ts: Number(ts), duplicate: true };
}

/** Credentials and TLS from a redis:// or rediss:// URL, for every node of a cluster or sentinel setup. */
function credentials(url: string | undefined): RedisOptions {
  if (!url) return {};
  const u = new URL(url);
  return {
    username: u.username ? decodeURIComponent(u.username) : undefined,
    password: u.password ? decodeURIComponent(u.password) : undefined,
    tls: u.protocol === 'rediss:' ? {} : undefined,
  };
}

function hostPort(addr: string): { host: string; port: number } {
  const [host, port] = splitHostPort(addr);
  return { host, port };
}

const retryStrategy = (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000);
/** Behind Sentinel a lost primary is replaced within seconds: look again soon (the sentinels are asked first). */
const failoverRetryStrategy = (times: number) => Math.min(50 * 2 ** Math.min(times, 4), 500);

/** Connections per node reserved for appends that WAIT for replicas (each carries one WAIT at a time). */
const WAIT_CONNECTIONS = 4;
/** ioredis's own command timeout is REDIS_COMMAND_TIMEOUT_MS plus this: a backstop, timed() decides first. */
const COMMAND_TIMEOUT_BACKSTOP_MS = 1000;

const REDIRECTED = /^(MOVED|ASK|TRYAGAIN|CLUSTERDOWN)\b/;

export class RedisEngine implements Engine {
  readonly kind = 'redis';
  /** Which Redis topology this engine runs on. */
  readonly topology: 'single' | 'sentinel' | 'cluster';
  private readonly keys: Keys;
  private readonly redis: Scripted;
  private readonly bus: Bus;
  private handler: BusHandler = () => {};
  private resync: () => void = () => {};
  /** This process in the lease, the node index and every entry it writes (see RedisEngineOptions.instanceId). */
  readonly instance: string;
  private readonly probeTimeoutMs: number;
  private activity: (a: Activity) => void = () => {};
  private pingOk = false;
  /** The readiness PING in flight (one at a time), by its sequence number. */
  private probing?: number;
  private probeSeq = 0;
  /** The PING in flight is overdue: no answer read within probeTimeoutMs (see start()). */
  private probeLate = false;
  /** Other live instances that share this NODE_ID (two processes started with the same NODE_ID). */
  private twins: string[] = [];
  /** Nodes whose lease had lapsed at the last heartbeat (their entries await a sweep). */
  private deadNodes = new Set<string>();
  /** This node has held a lease (a lapsed one must be re-registered). */
  private leased = false;
  /** Connections whose removal from the registry failed (Redis unreachable): retried at each heartbeat. */
  private readonly unremoved = new Map<string, string>();
  private pinger?: NodeJS.Timeout;
  private readonly publishCommand: 'publish' | 'spublish';
  /** '1' where a replica can be promoted (cluster, sentinel): see FAILOVER_OFFSET_JUMP. */
  private readonly failoverJump: '0' | '1';
  private readonly writers: Scripted[];
  /**
   * Reads of more than one event (history pages, catch-ups) go over a connection of their own: megabytes of
   * history in flight never delay the small commands (welcomes, joins, presence, appends) queued behind them.
   */
  private readonly reader: Scripted;
  private nextWriter = 0;
  private stopped = false;
  private readonly denylist = new Denylist();
  /** The denylist was read from Redis at least once (ready() waits for it). */
  private denylistLoaded = false;
  private loading?: Promise<void>;
  private revokedHandler: (r: Revocation) => void = () => {};
  private denylistTimer?: NodeJS.Timeout;

  constructor(
    private readonly opts: RedisEngineOptions,
    private readonly log: Logger,
    private readonly observe: CommandObserver = () => {},
  ) {
    this.keys = new Keys(opts.keyPrefix);
    this.instance = opts.instanceId ?? `${opts.nodeId}#${randomBytes(4).toString('hex')}`;
    this.probeTimeoutMs = opts.probeTimeoutMs ?? 500;
    this.topology = opts.cluster?.length ? 'cluster' : opts.sentinels?.length ? 'sentinel' : 'single';
    this.publishCommand = this.topology === 'cluster' ? 'spublish' : 'publish';
    this.failoverJump = this.topology === 'single' ? '0' : '1';
    const common: RedisOptions = { lazyConnect: true, retryStrategy };
    const busCallbacks = {
      message: (channel: string, payload: Buffer) => {
        if (channel === this.keys.revocations()) return this.revokedMessage(payload);
        const message = parseBusPayload(payload);
        if (message) this.handler(channel, message);
      },
      resync: () => {
        // Revocations published while the bus was cut off were missed: read the denylist again.
        void this.loadDenylist();
        this.resync();
      },
    };
    this.redis = this.client(`gateway:${this.instance}`);
    this.reader = this.client(`gateway-r:${this.instance}`);
    if (this.topology === 'cluster') {
      const auth = credentials(opts.url);
      const cluster = this.redis as Cluster;
      this.bus = new ShardedBus(
        {
          slots: () => cluster.call('CLUSTER', 'SLOTS') as Promise<SlotsReply>,
          connection: {
            ...auth,
            connectionName: `gateway-sub:${this.instance}`,
            commandTimeout: opts.commandTimeoutMs + COMMAND_TIMEOUT_BACKSTOP_MS,
            retryStrategy: () => null,
          },
          refreshMs: 1000,
          failed: (count) => {
            for (let i = 0; i < count; i++) this.observe('ssubscribe', undefined, false);
          },
        },
        busCallbacks,
        log,
      );
    } else if (this.topology === 'sentinel') {
      this.bus = new PlainBus(
        { ...common, ...this.sentinelOptions(), connectionName: `gateway-sub:${this.instance}` },
        busCallbacks,
        log,
      );
    } else {
      this.bus = new PlainBus(
        { ...common, connectionName: `gateway-sub:${this.instance}` },
        busCallbacks,
        log,
        opts.url,
      );
    }
    // WAIT blocks the connection it is sent on until the replicas answer, so durable appends get connections of
    // their own: reads, presence and pings never queue behind a WAIT.
    this.writers = opts.waitReplicas
      ? Array.from({ length: WAIT_CONNECTIONS }, (_, i) => this.client(`gateway-w${i}:${this.instance}`))
      : [];
    this.redis.on('ready', () => {
      this.pingOk = true;
    });
    this.redis.on('close', () => {
      this.pingOk = false;
    });
  }

  /** A command client of this engine's topology, scripts defined; lazy (start() connects it). */
  private client(connectionName: string): Scripted {
    const opts = this.opts;
    const commands: RedisOptions = {
      connectionName,
      // A backstop behind timed(), which fails a call at the limit once the event loop has read what arrived.
      commandTimeout: opts.commandTimeoutMs + COMMAND_TIMEOUT_BACKSTOP_MS,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      enableAutoPipelining: true,
    };
    let client: Scripted;
    if (this.topology === 'cluster') {
      client = new Cluster(opts.cluster!.map(hostPort) as ClusterNode[], {
        lazyConnect: true,
        enableOfflineQueue: false,
        enableAutoPipelining: true,
        scaleReads: 'master',
        slotsRefreshInterval: 2000,
        clusterRetryStrategy: retryStrategy,
        redisOptions: { ...credentials(opts.url), ...commands },
      }) as Scripted;
    } else if (this.topology === 'sentinel') {
      client = new Redis({
        lazyConnect: true,
        retryStrategy,
        ...this.sentinelOptions(),
        ...commands,
      }) as Scripted;
    } else {
      if (!opts.url) throw new Error('RedisEngine needs url, cluster or sentinels');
      client = new Redis(opts.url, { lazyConnect: true, retryStrategy, ...commands }) as Scripted;
    }
    client.defineCommand('rcAppend', { numberOfKeys: 3, lua: APPEND });
    client.defineCommand('rcRatedAppend', { numberOfKeys: 4, lua: RATED_APPEND });
    client.defineCommand('rcDm', { lua: DM });
    client.defineCommand('rcRead', { numberOfKeys: 2, lua: READ });
    client.defineCommand('rcPresence', { numberOfKeys: 2, lua: PRESENCE });
    client.defineCommand('rcConnections', { numberOfKeys: 2, lua: CONNECTIONS });
    client.defineCommand('rcRate', { numberOfKeys: 1, lua: RATE });
    client.defineCommand('rcRevoke', { numberOfKeys: 2, lua: REVOKE });
    client.on('error', (err: Error) =>
      this.log.warn({ err: err.message, client: connectionName.split(':')[0] }, 'redis error'),
    );
    if (client instanceof Redis)
      keepConnected(client, connectionName.split(':')[0]!, this.log, () => !this.stopped);
    return client;
  }

  private sentinelOptions(): RedisOptions {
    return {
      ...credentials(this.opts.url),
      sentinels: this.opts.sentinels!.map(hostPort),
      name: this.opts.sentinelName ?? 'mymaster',
      failoverDetector: true,
      retryStrategy: failoverRetryStrategy,
      sentinelRetryStrategy: failoverRetryStrategy,
      // A primary demoted under us answers writes with READONLY: reconnect, asking the sentinels again.
      reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
    };
  }

  /**
   * A script call (APPEND, RATED_APPEND or DM) and a WAIT, pipelined on one writer connection (a pipeline goes to one node, the
   * stream's primary): resolves once waitReplicas replicas hold its writes (and everything before them on that
   * connection).
   */
  private async durably<T>(command: DurableScript, args: (string | number)[]): Promise<T> {
    const writer = this.writers[this.nextWriter++ % this.writers.length]!;
    const want = this.opts.waitReplicas!;
    const timeoutMs = this.opts.waitTimeoutMs ?? 500;
    for (let attempt = 0; ; attempt++) {
      const pipeline = writer.pipeline() as ReturnType<Redis['pipeline']> &
        Record<DurableScript, (...a: (string | number)[]) => unknown>;
      pipeline[command](...args);
      pipeline.wait(want, timeoutMs);
      const results = (await pipeline.exec()) ?? [];
      const [scriptErr, reply] = results[0] ?? [new Error('no reply')];
      if (scriptErr) {
        // A pipeline is not redirected by ioredis: after resharding or a failover, learn the new owner, once.
        if (attempt === 0 && writer instanceof Cluster && REDIRECTED.test(scriptErr.message)) {
          await new Promise<void>((done) => writer.refreshSlotsCache(() => done()));
          continue;
        }
        throw scriptErr;
      }
      const [waitErr, acks] = results[1] ?? [new Error('no WAIT reply')];
      if (waitErr) throw waitErr;
      if (Number(acks) < want)
        throw new Error(`${String(acks)} of ${want} replicas acknowledged within ${timeoutMs} ms`);
      return reply as T;
    }
  }

  async start(): Promise<void> {
    // The connections keep retrying in the background if Redis is down now; /readyz says so meanwhile.
    await Promise.all(
      [this.redis, this.reader, ...this.writers].map((c) => c.connect().catch(() => undefined)),
    );
    await this.bus.start().catch((err: Error) => this.log.warn({ err: err.message }, 'bus start failed'));
    // The readiness probe: one PING in flight at a time; ready() turns false as soon as one is overdue, without
    // waiting for it to time out. Overdue means Redis did not answer, not that this node was late reading the
    // answer: the check runs from setImmediate after the probe's timer, i.e. after the event loop's poll phase
    // has read whatever Redis sent meanwhile. (A wall-clock check made a node busy with a connect storm refuse
    // upgrades with 503 while its PONG sat unread in the socket.)
    this.pinger = setInterval(
      () => {
        if (this.probing !== undefined) return;
        const probe = (this.probing = ++this.probeSeq);
        const settled = (ok: boolean) => {
          this.pingOk = ok;
          this.probing = undefined;
          this.probeLate = false;
        };
        setTimeout(
          () => setImmediate(() => (this.probeLate ||= this.probing === probe)),
          this.probeTimeoutMs,
        ).unref();
        this.timed('ping', () => this.redis.ping()).then(
          () => settled(true),
          () => settled(false),
        );
      },
      Math.max(50, Math.floor(this.probeTimeoutMs / 2)),
    ).unref();
    // Subscribed before the first load, so no revocation falls between the two.
    await this.bus
      .subscribe(this.keys.revocations())
      .catch((err: Error) => this.log.warn({ err: err.message }, 'revocation channel subscribe failed'));
    await this.loadDenylist();
    this.denylistTimer = setInterval(() => {
      if (!this.denylistLoaded) void this.loadDenylist();
      this.denylist.prune();
    }, 1000).unref();
  }

  /** Reads every live revocation from Redis into the in-memory copy; tells onRevoked about each. */
  private loadDenylist(): Promise<void> {
    this.loading ??= (async () => {
      try {
        const now = Date.now();
        const [expiries, users] = await Promise.all([
          this.timed('revoked', () =>
            this.redis.zrangebyscore(this.keys.revokedExpiry(), now, '+inf', 'WITHSCORES'),
          ),
          this.timed('revoked', () => this.redis.hgetall(this.keys.revokedUsers())),
        ]);
        for (let i = 0; i + 1 < expiries.length; i += 2) {
          const member = expiries[i]!;
          const expiresAt = Number(expiries[i + 1]);
          const r: Revocation | undefined = member.startsWith('j:')
            ? { kind: 'jti', jti: member.slice(2), expiresAt }
            : users[member] !== undefined
              ? { kind: 'user', user: member.slice(2), issuedBefore: Number(users[member]), expiresAt }
              : undefined;
          if (r) this.learn(r);
        }
        if (!this.denylistLoaded)
          this.log.info({ entries: this.denylist.size }, 'revocation denylist loaded');
        this.denylistLoaded = true;
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'loading the revocation denylist failed; retrying');
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  private learn(r: Revocation): void {
    const entry = this.denylist.add(r);
    if (entry) this.revokedHandler(entry);
  }

  private revokedMessage(payload: Buffer): void {
    try {
      const r = JSON.parse(payload.toString('utf8')) as Revocation;
      if (r.kind === 'jti' && typeof r.jti === 'string' && typeof r.expiresAt === 'number') this.learn(r);
      else if (
        r.kind === 'user' &&
        typeof r.user === 'string' &&
        typeof r.issuedBefore === 'number' &&
        typeof r.expiresAt === 'number'
      )
        this.learn(r);
    } catch {
      this.log.warn('unreadable revocation message ignored');
    }
  }

  async revoke(r: Revocation): Promise<void> {
    const member = r.kind === 'jti' ? `j:${r.jti}` : `u:${r.user}`;
    await this.timed('revoked', () =>
      this.redis.rcRevoke(
        this.keys.revokedExpiry(),
        this.keys.revokedUsers(),
        member,
        r.expiresAt,
        r.kind === 'user' ? r.issuedBefore : '',
        Date.now(),
        this.keys.revocations(),
        this.publishCommand,
        JSON.stringify(r),
      ),
    );
    // Applied here at once; the bus brings the same entry back (merging it again changes nothing).
    this.learn(r);
  }

  isRevoked(token: TokenRef): boolean {
    return this.denylist.has(token);
  }

  onRevoked(handler: (r: Revocation) => void): void {
    this.revokedHandler = handler;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pinger);
    clearInterval(this.denylistTimer);
    await Promise.allSettled([
      this.redis.quit(),
      this.reader.quit(),
      ...this.writers.map((w) => w.quit()),
      this.bus.stop(),
    ]);
  }

  ready(): boolean {
    if (this.probeLate) return false;
    return this.pingOk && this.redis.status === 'ready' && this.bus.ready() && this.denylistLoaded;
  }

  sameNodeIdPeers(): number {
    return this.twins.length;
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

  /**
   * Fails with UnavailableError within commandTimeoutMs: a SUBSCRIBE has no timeout of its own in ioredis. One
   * that succeeds after the deadline is undone by the caller's unsubscribe (the hub drops a topic whose
   * subscription failed), which the connection runs after it.
   */
  async subscribe(channel: string): Promise<void> {
    await this.timed('subscribe', () => this.bus.subscribe(channel));
  }

  async unsubscribe(channel: string): Promise<void> {
    await this.bus.unsubscribe(channel);
  }

  /**
   * Runs one Redis call the gateway waits on, failing with UnavailableError at REDIS_COMMAND_TIMEOUT_MS at the
   * latest: ioredis's own commandTimeout bounds each command it writes, but not time spent before that (a
   * reconnect's offline queue, a script reloaded after NOSCRIPT), which let a stalled publish wait two timeouts.
   */
  private async timed<T>(command: string, run: () => Promise<T>): Promise<T> {
    const start = performance.now();
    const limitMs = this.opts.commandTimeoutMs;
    let timer: NodeJS.Timeout | undefined;
    // Overdue once the limit passed and the event loop has read what arrived meanwhile: the timer's rejection waits
    // for the check phase, after the poll phase that reads socket data, so a node that was itself busy past the
    // limit does not fail a command whose answer sits unread (ioredis's own commandTimeout is set later, as a
    // backstop: see client()).
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => setImmediate(() => reject(new Error(`no answer within ${limitMs} ms`))),
        limitMs,
      );
    });
    try {
      const result = await Promise.race([run(), deadline]);
      this.observe(command, (performance.now() - start) / 1000, true);
      return result;
    } catch (err) {
      this.observe(command, (performance.now() - start) / 1000, false);
      throw new UnavailableError(`redis ${command} failed: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
    }
  }

  private bounds(ref: StreamRef): { size: number; ttlS: number } {
    return ref.kind === 'room'
      ? { size: this.opts.historySize, ttlS: this.opts.historyTtlS }
      : { size: this.opts.inboxSize, ttlS: this.opts.inboxTtlS };
  }

  /** APPEND's keys and arguments (scripts.ts APPEND_FUNCTION) for one append; DM takes them per copy. */
  private appendCall(ref: StreamRef, input: AppendInput): { keys: string[]; args: (string | number)[] } {
    const { size, ttlS } = this.bounds(ref);
    const dedupKey = input.dedup
      ? this.keys.dedup(ref, input.dedup.scope, input.dedup.key)
      : this.keys.dedup(ref, '', '');
    return {
      keys: [this.keys.meta(ref), this.keys.history(ref), dedupKey],
      args: [
        input.frame.head,
        input.frame.tail,
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
        this.failoverJump,
        input.frame.mid,
      ],
    };
  }

  async append(ref: StreamRef, input: AppendInput): Promise<AppendResult> {
    const { keys, args } = this.appendCall(ref, input);
    const reply = this.opts.waitReplicas
      ? await this.timed('append', () => this.durably<AppendReply>('rcAppend', [...keys, ...args]))
      : await this.timed('append', () => this.redis.rcAppend(...keys, ...args));
    if (reply[0] === 1) return appended(reply, input);
    return duplicateOf(String(reply[1]));
  }

  async appendRated(
    ref: StreamRef,
    input: AppendInput,
    rate: { user: string; perSecond: number },
  ): Promise<RatedAppendResult> {
    if (rate.perSecond <= 0 || this.topology === 'cluster') {
      const waitMs = rate.perSecond > 0 ? await this.userRate(rate.user, rate.perSecond) : 0;
      if (waitMs > 0) return { limited: true, waitMs };
      return { limited: false, message: await this.append(ref, input) };
    }
    const { keys, args } = this.appendCall(ref, input);
    const call = [...keys, this.keys.rate(rate.user), rate.perSecond, ...args];
    const reply = this.opts.waitReplicas
      ? await this.timed('append', () => this.durably<AppendReply>('rcRatedAppend', call))
      : await this.timed('append', () => this.redis.rcRatedAppend(...call));
    if (reply[0] === -1) return { limited: true, waitMs: Number(reply[1]) };
    return {
      limited: false,
      message: reply[0] === 1 ? appended(reply, input) : duplicateOf(String(reply[1])),
    };
  }

  /**
   * Single Redis and Sentinel: one DM script writes both copies, counts the rate and reads the connections.
   * Cluster: the inboxes are in different slots, so the rate (its own call, in the sender's slot) comes first,
   * then the DM script with the recipient's keys alone, then the sender's copy as an append. A duplicate recipient
   * copy is followed by the sender's copy as an append on every topology (its dedup key is named by the first id).
   */
  async dm(input: DirectMessageInput): Promise<DirectMessageResult> {
    const { from, to, key } = input;
    const cluster = this.topology === 'cluster';
    const rate = input.rate ?? 0;
    if (rate > 0 && cluster) {
      const waitMs = await this.userRate(from, rate);
      if (waitMs > 0) return { limited: true, waitMs };
    }
    const senderCopy = (id: string, ts: number): AppendInput => ({
      id,
      ts,
      frame: dmFrameParts('sender', { ...input, id, ts }),
      dedup: key ? { scope: '', key: id } : undefined,
      skip: input.skip,
    });
    const wantSender = input.senderCopy && from !== to;
    const together = wantSender && !cluster;
    const recipient = this.appendCall(
      { kind: 'inbox', name: to },
      {
        id: input.id,
        ts: input.ts,
        frame: dmFrameParts('recipient', input),
        dedup: key ? { scope: from, key } : undefined,
      },
    );
    const keys = [...recipient.keys, this.keys.connections(to)];
    const args = [...recipient.args];
    if (together) {
      const sender = this.appendCall({ kind: 'inbox', name: from }, senderCopy(input.id, input.ts));
      keys.push(...sender.keys);
      args.push(...sender.args);
    }
    const scriptRate = rate > 0 && !cluster;
    if (scriptRate) keys.push(this.keys.rate(from));
    const call = [keys.length, ...keys, scriptRate ? rate : 0, together ? '1' : '0', ...args];
    const reply = this.opts.waitReplicas
      ? await this.timed('dm', () => this.durably<DmReply>('rcDm', call))
      : await this.timed('dm', () => this.redis.rcDm(...call));
    if (reply[0] === -1) return { limited: true, waitMs: Number(reply[1]) };
    const message = reply[0] === 1 ? appended(reply, input) : duplicateOf(String(reply[1]));
    if (wantSender && (message.duplicate || !together))
      await this.append({ kind: 'inbox', name: from }, senderCopy(message.id, message.ts));
    return { limited: false, message, delivered: this.live(reply[3] ?? []) };
  }

  private async readMode(
    ref: StreamRef,
    mode: 'after' | 'before',
    at: string,
    limit: number,
  ): Promise<ReadResult> {
    const [epoch, top, entries] = await this.timed('read', () =>
      (limit > 1 ? this.reader : this.redis).rcRead(
        this.keys.meta(ref),
        this.keys.history(ref),
        mode,
        at,
        limit,
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

  onActivity(handler: (activity: Activity) => void): void {
    this.activity = handler;
  }

  webhookQueue(retention: number): WebhookQueue {
    return new RedisWebhookQueue(this.redis, this.keys.webhooks(), retention, (command, run) =>
      this.timed(command, run),
    );
  }

  private async presenceCall(
    mode: 'add' | 'remove' | 'list',
    room: string,
    user: string,
    node = this.instance,
  ): Promise<string[]> {
    const payload =
      mode === 'list' ? '' : `p|${presenceEvent(room, mode === 'add' ? 'join' : 'leave', user)}`;
    const [transition, users] = await this.timed('presence', () =>
      this.redis.rcPresence(
        this.keys.presence(room),
        this.keys.presenceUsers(room),
        mode,
        payload,
        user,
        node,
        Date.now(),
        this.keys.channel({ kind: 'room', name: room }),
        this.publishCommand,
      ),
    );
    if (transition === 'occupied' || transition === 'vacated')
      this.activity({ type: transition === 'occupied' ? 'room.occupied' : 'room.vacated', room });
    return users;
  }

  /** Records an entry this node wrote, so that a sweep can remove it if the node dies. */
  private index(op: 'sadd' | 'srem', entry: (string | number)[]): Promise<unknown> {
    const key = this.keys.nodeIndex(this.instance);
    const member = JSON.stringify(entry);
    return this.timed('index', () =>
      op === 'sadd' ? this.redis.sadd(key, member) : this.redis.srem(key, member),
    );
  }

  async presenceAdd(room: string, user: string): Promise<string[]> {
    const [users] = await Promise.all([
      this.presenceCall('add', room, user),
      this.index('sadd', ['p', room, user]),
    ]);
    return users;
  }

  async presenceRemove(room: string, user: string): Promise<void> {
    await Promise.all([this.presenceCall('remove', room, user), this.index('srem', ['p', room, user])]);
  }

  presence(room: string): Promise<string[]> {
    return this.presenceCall('list', room, '');
  }

  private async connectionsCall(
    mode: string,
    user: string,
    connId: string,
    info = '',
    node = this.instance,
  ): Promise<number> {
    const [size, changed] = await this.timed('connections', () =>
      this.redis.rcConnections(
        this.keys.connections(user),
        this.keys.sessions(user),
        mode,
        node,
        connId,
        Date.now(),
        info,
      ),
    );
    if (changed === 1 && mode === 'add' && size === 1) this.activity({ type: 'user.online', user });
    if (changed === 1 && mode === 'remove' && size === 0) this.activity({ type: 'user.offline', user });
    return size;
  }

  async connectionAdd(user: string, connId: string, info: Record<string, unknown>): Promise<void> {
    await Promise.all([
      this.connectionsCall('add', user, connId, JSON.stringify(info)),
      this.index('sadd', ['c', user, connId]),
    ]);
  }

  async connectionReserve(
    user: string,
    connId: string,
    limit: number,
    info: Record<string, unknown>,
  ): Promise<boolean> {
    const [size] = await Promise.all([
      this.timed('connections', () =>
        this.redis.rcConnections(
          this.keys.connections(user),
          this.keys.sessions(user),
          'reserve',
          this.instance,
          connId,
          Date.now(),
          JSON.stringify(info),
          limit,
          [...this.deadNodes].join(' '),
        ),
      ),
      this.index('sadd', ['c', user, connId]),
    ]);
    const [count, changed] = size;
    if (count >= 0) {
      if (changed === 1 && count === 1) this.activity({ type: 'user.online', user });
      return true;
    }
    this.index('srem', ['c', user, connId]).catch(() => undefined);
    return false;
  }

  async connectionRemove(user: string, connId: string): Promise<void> {
    try {
      await Promise.all([
        this.connectionsCall('remove', user, connId),
        this.index('srem', ['c', user, connId]),
      ]);
      this.unremoved.delete(connId);
    } catch (err) {
      // Else the entry would count against the user's MAX_CONNECTIONS_PER_USER, and in `delivered` and the
      // connection lists, for as long as this node lives.
      this.unremoved.set(connId, user);
      throw err;
    }
  }

  /** Connections, leaving out those of nodes whose lease lapsed (until the sweep removes them). */
  async connectionCount(user: string): Promise<number> {
    const members = await this.timed('connections', () =>
      this.redis.zrange(this.keys.connections(user), 0, -1),
    );
    return this.live(members);
  }

  /** How many of the connections zset's members ("<node>|<connection>") are on nodes whose lease holds. */
  private live(members: string[]): number {
    let n = 0;
    for (const m of members) {
      const node = m.slice(0, m.lastIndexOf('|'));
      if (!this.deadNodes.has(node)) n++;
    }
    return n;
  }

  async disconnectUser(user: string): Promise<void> {
    await this.timed('publish', () =>
      this.redis.call(this.publishCommand, this.keys.channel({ kind: 'inbox', name: user }), 'c|disconnect'),
    );
  }

  async roomForUser(user: string, kind: 'join' | 'leave', room: string): Promise<void> {
    await this.timed('publish', () =>
      this.redis.call(
        this.publishCommand,
        this.keys.channel({ kind: 'inbox', name: user }),
        `${kind === 'join' ? 'j' : 'l'}|${room}`,
      ),
    );
  }

  async connections(user: string): Promise<{ id: string; info: Record<string, unknown> }[]> {
    const members = await this.timed('connections', () =>
      this.redis.zrange(this.keys.connections(user), 0, -1),
    );
    const ids = members
      .filter((m) => !this.deadNodes.has(m.slice(0, m.lastIndexOf('|'))))
      .map((m) => m.slice(m.lastIndexOf('|') + 1));
    if (ids.length === 0) return [];
    const infos = await this.timed('connections', () => this.redis.hmget(this.keys.sessions(user), ...ids));
    return ids.map((id, i) => {
      let info: Record<string, unknown> = {};
      try {
        info = JSON.parse(infos[i] ?? '{}') as Record<string, unknown>;
      } catch {
        // an unreadable entry: listed without details
      }
      return { id, info };
    });
  }

  userRate(user: string, perSecond: number): Promise<number> {
    return this.timed('rate', () => this.redis.rcRate(this.keys.rate(user), perSecond));
  }

  /**
   * The node lease: one ZADD per beat, whatever the number of connections. Then any dead node (lease older than
   * PRESENCE_TTL_MS) is swept by whichever live node claims it first. If this node's own lease had lapsed and it
   * was swept (paused too long), its entries are written again.
   */
  async heartbeat(local: () => LocalState): Promise<void> {
    const now = Date.now();
    const nodes = this.keys.nodes();
    const added = await this.timed('nodes', () => this.redis.zadd(nodes, now, this.instance));
    if (added === 1 && this.leased) {
      this.log.warn('this node was swept while unreachable; registering its connections and presence again');
      await this.reassert(local());
    }
    this.leased = true;
    await Promise.all(
      [...this.unremoved].map(([connId, user]) => this.connectionRemove(user, connId).catch(() => undefined)),
    );
    const scores = await this.timed('nodes', () => this.redis.zrange(nodes, 0, -1, 'WITHSCORES'));
    const dead: string[] = [];
    const twins: string[] = [];
    const sameId = `${this.opts.nodeId}#`;
    for (let i = 0; i + 1 < scores.length; i += 2) {
      const node = scores[i]!;
      if (Number(scores[i + 1]) < now - this.opts.presenceTtlMs) dead.push(node);
      else if (node !== this.instance && node.startsWith(sameId)) twins.push(node);
    }
    this.deadNodes = new Set(dead);
    this.noteTwins(twins);
    for (const node of dead) {
      const claim = await this.timed('nodes', () =>
        this.redis.set(this.keys.sweepClaim(node), this.instance, 'PX', this.opts.presenceTtlMs, 'NX'),
      );
      if (claim !== 'OK') continue;
      this.log.info({ deadNode: node }, 'sweeping the entries of a node that stopped heartbeating');
      await this.sweep(node);
    }
  }

  /** Two live processes with one NODE_ID make metrics and logs ambiguous: say so loudly while it lasts. */
  private noteTwins(twins: string[]): void {
    const was = this.twins.length;
    this.twins = twins;
    if (twins.length > 0)
      this.log.error(
        { nodeId: this.opts.nodeId, instance: this.instance, others: twins },
        'another live gateway process uses this NODE_ID: give every process its own NODE_ID',
      );
    else if (was > 0)
      this.log.warn({ nodeId: this.opts.nodeId }, 'no other live gateway process uses this NODE_ID any more');
  }

  private async reassert(local: LocalState): Promise<void> {
    const work: Promise<unknown>[] = [];
    for (const [room, users] of local.rooms)
      for (const user of users) work.push(this.presenceAdd(room, user));
    for (const [user, conns] of local.users)
      for (const c of conns)
        work.push(
          this.connectionAdd(user, c, {
            node: this.opts.nodeId,
            instance: this.instance,
            reasserted: Date.now(),
          }),
        );
    await Promise.all(work);
  }

  /** Removes every presence and connection entry `node` wrote (publishing leave events), then the node. */
  private async sweep(node: string): Promise<void> {
    const idx = this.keys.nodeIndex(node);
    let cursor = '0';
    do {
      const [next, members] = await this.timed('index', () => this.redis.sscan(idx, cursor, 'COUNT', 500));
      cursor = next;
      await Promise.all(
        members.map((m) => {
          const [kind, a, b] = JSON.parse(m) as [string, string, string];
          return kind === 'p'
            ? this.presenceCall('remove', a, b, node)
            : this.connectionsCall('remove', a, b, '', node);
        }),
      );
    } while (cursor !== '0');
    await this.timed('index', () => this.redis.del(idx));
    await this.timed('nodes', () => this.redis.zrem(this.keys.nodes(), node));
  }

  /** Graceful shutdown: this node's entries go now rather than after the lease lapses. */
  async removeNode(): Promise<void> {
    await this.sweep(this.instance);
  }
}
