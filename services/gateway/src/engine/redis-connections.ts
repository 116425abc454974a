// The bus side of the Redis engine: the connections that receive pub/sub traffic. Two shapes behind one
// interface:
//  - PlainBus: one subscriber connection (single Redis, or the primary behind Sentinel) with SUBSCRIBE.
//  - ShardedBus: Redis Cluster with sharded pub/sub: one subscriber connection per primary, each channel
//    SSUBSCRIBEd on the primary that owns its hash slot, re-placed when the slot moves (resharding, failover).
// Both resubscribe themselves after a loss and only then report a resync, so a catch-up from history that the
// resync starts overlaps live delivery instead of leaving a hole between them.
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../logger';

/** Called with every message on a subscribed channel, in the order the server sent them. */
export type RawHandler = (channel: string, payload: Buffer) => void;

export interface Bus {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Receiving now. */
  ready(): boolean;
  /** Resolves once messages published afterwards on the channel reach the handler. */
  subscribe(channel: string): Promise<void>;
  unsubscribe(channel: string): Promise<void>;
}

export interface BusCallbacks {
  message: RawHandler;
  /** The bus was cut off and is subscribed again: messages in between may have been missed. */
  resync(): void;
}

// ---------------------------------------------------------------------------------------------------------------
// Cluster hash slots (CRC16/XMODEM of the key, or of its {hash tag}, mod 16384), as Redis computes them.

const CRC16 = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let j = 0; j < 8; j++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

export function keySlot(key: string): number {
  let bytes = Buffer.from(key);
  const open = bytes.indexOf(0x7b); // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  let crc = 0;
  for (const b of bytes) crc = ((crc << 8) & 0xffff) ^ CRC16[((crc >> 8) ^ b) & 0xff]!;
  return crc % 16384;
}

// ---------------------------------------------------------------------------------------------------------------

/**
 * Connects the client again whenever it ends while it is still wanted. ioredis gives up on a connection for
 * good (status 'end') when a Sentinel connect attempt is cut short: the failover detector's +switch-master
 * calls the connector's disconnect() while a reconnect is resolving the primary from a sentinel (or waiting to
 * retry the sentinels), that attempt rejects with "Connection is closed." and no retry follows. A gateway that
 * hits this window is left with dead connections after a failover. `wanted` says whether to revive it (false
 * once we quit it ourselves).
 */
export function keepConnected(client: Redis, name: string, log: Logger, wanted: () => boolean): void {
  let attempt = 0;
  client.on('ready', () => (attempt = 0));
  client.on('end', () => {
    if (!wanted()) return;
    const delay = Math.min(50 * 2 ** Math.min(attempt++, 4), 500);
    log.warn({ client: name, delayMs: delay }, 'redis connection ended; connecting again');
    setTimeout(() => {
      if (wanted() && client.status === 'end') client.connect().catch(() => undefined);
    }, delay).unref();
  });
}

/** One SUBSCRIBE connection; single Redis or Sentinel (the options say which). */
export class PlainBus implements Bus {
  private readonly sub: Redis;
  private readonly channels = new Set<string>();
  private connectedOnce = false;
  private stopped = false;
  /** (UN)SUBSCRIBEs waiting for the end of this turn of the event loop, in the order asked. */
  private readonly queue: {
    kind: 'subscribe' | 'unsubscribe';
    channels: string[];
    settle(p: Promise<unknown>): void;
    done: Promise<void>;
  }[] = [];
  private flushing = false;

  constructor(
    options: RedisOptions,
    private readonly cb: BusCallbacks,
    private readonly log: Logger,
    url?: string,
  ) {
    // Resubscribing is ours (below), so that the resync is reported only once it is done.
    const all: RedisOptions = { ...options, lazyConnect: true, autoResubscribe: false };
    this.sub = url ? new Redis(url, all) : new Redis(all);
    this.sub.on('error', (err: Error) => log.warn({ err: err.message, client: 'redis-sub' }, 'redis error'));
    this.sub.on('messageBuffer', (channel: Buffer, payload: Buffer) =>
      cb.message(channel.toString(), payload),
    );
    keepConnected(this.sub, 'redis-sub', log, () => !this.stopped);
    this.sub.on('ready', () => {
      if (!this.connectedOnce) {
        this.connectedOnce = true;
        return;
      }
      void this.resubscribe();
    });
  }

  private async resubscribe(): Promise<void> {
    const all = [...this.channels];
    try {
      for (let i = 0; i < all.length; i += 1000) await this.sub.subscribe(...all.slice(i, i + 1000));
      this.log.info({ channels: all.length }, 'redis subscriber reconnected; resyncing streams');
      this.cb.resync();
    } catch (err) {
      // The connection dropped again; its next 'ready' tries again.
      this.log.warn({ err: (err as Error).message }, 'resubscribe failed');
    }
  }

  async start(): Promise<void> {
    await this.sub.connect().catch(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.sub.quit().catch(() => this.sub.disconnect());
  }

  ready(): boolean {
    return this.sub.status === 'ready';
  }

  async subscribe(channel: string): Promise<void> {
    this.channels.add(channel);
    await this.batched('subscribe', channel);
  }

  async unsubscribe(channel: string): Promise<void> {
    this.channels.delete(channel);
    await this.batched('unsubscribe', channel);
  }

  /**
   * (UN)SUBSCRIBEs asked for within one turn of the event loop go out as one command per run of the same kind, in
   * the order asked (a connect storm subscribes one inbox channel per connection: one SUBSCRIBE of many channels
   * instead of one each).
   */
  private batched(kind: 'subscribe' | 'unsubscribe', channel: string): Promise<void> {
    let batch = this.queue[this.queue.length - 1];
    if (!batch || batch.kind !== kind || batch.channels.length >= SUBSCRIBE_BATCH) {
      let settle!: (p: Promise<unknown>) => void;
      const done = new Promise<unknown>((resolve) => (settle = resolve)) as Promise<void>;
      batch = { kind, channels: [], settle, done };
      this.queue.push(batch);
    }
    batch.channels.push(channel);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => {
        this.flushing = false;
        for (const b of this.queue.splice(0)) b.settle(this.sub[b.kind](...b.channels));
      });
    }
    return batch.done;
  }
}

/** Most channels in one batched (UN)SUBSCRIBE. */
const SUBSCRIBE_BATCH = 1000;

// ---------------------------------------------------------------------------------------------------------------

/** CLUSTER SLOTS reply: [start, end, [host, port, id, ...] primary, ...replicas]. */
export type SlotsReply = [number, number, [string, number, ...unknown[]], ...unknown[]][];

interface Placement {
  slot: number;
  /** The primary (host:port) the channel is SSUBSCRIBEd on now; undefined while it is not subscribed anywhere. */
  on?: string;
}

interface ShardConn {
  key: string;
  redis: Redis;
  /** Set when the connection is no longer trusted (closed, or the server moved its channels away). */
  broken: boolean;
}

export interface ShardedBusOptions {
  /** Asks the cluster who owns which slots (CLUSTER SLOTS through the command client). */
  slots(): Promise<SlotsReply>;
  /** Options for each per-primary subscriber connection (host and port are added). */
  connection: RedisOptions;
  /** How often the slot map is re-read to notice resharding and failovers. */
  refreshMs: number;
  /** Told the number of channels that could not be placed in a pass (counted in metrics, not logged each). */
  failed?(count: number): void;
}

/**
 * Sharded pub/sub over Redis Cluster. A channel is SSUBSCRIBEd on the connection to the primary owning its slot,
 * only while the node wants it. The slot map is re-read every refreshMs and whenever a subscriber connection
 * breaks or the server unsubscribes us (a slot migrated); every channel whose owner changed or whose connection
 * broke is subscribed on its current owner, and then a resync is reported.
 */
export class ShardedBus implements Bus {
  private owners: (string | undefined)[] = [];
  private readonly conns = new Map<string, ShardConn>();
  private readonly wanted = new Map<string, Placement>();
  private timer?: NodeJS.Timeout;
  private refreshing?: Promise<void>;
  private again = false;
  private stopped = false;
  /** A subscription that was established broke or moved: report a resync once all are placed again. */
  private lost = false;
  private retryTimer?: NodeJS.Timeout;
  /**
   * An outage episode (a failover, a lost shard): placements have been failing since `since`. It is logged once
   * when it starts and once when every channel is placed again; the attempts in between only count.
   */
  private outage?: { since: number; failures: number; lastError: string };

  constructor(
    private readonly opts: ShardedBusOptions,
    private readonly cb: BusCallbacks,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), this.opts.refreshMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    await Promise.allSettled([...this.conns.values()].map((c) => c.redis.quit()));
    for (const c of this.conns.values()) c.redis.disconnect();
    this.conns.clear();
  }

  ready(): boolean {
    return this.owners.length === 16384;
  }

  /** The primary (host:port) that owns the channel's slot, per the last slot map read. */
  ownerOf(channel: string): string | undefined {
    return this.owners[keySlot(channel)];
  }

  async subscribe(channel: string): Promise<void> {
    let p = this.wanted.get(channel);
    if (!p) this.wanted.set(channel, (p = { slot: keySlot(channel) }));
    if (p.on) return;
    try {
      await this.place(channel, p);
    } catch (err) {
      // A refresh retries it while it is wanted; the caller learns it is not subscribed now.
      this.scheduleRefresh();
      throw err;
    }
  }

  async unsubscribe(channel: string): Promise<void> {
    const p = this.wanted.get(channel);
    if (!p) return;
    this.wanted.delete(channel);
    const conn = p.on ? this.conns.get(p.on) : undefined;
    p.on = undefined;
    if (conn && !conn.broken) await conn.redis.sunsubscribe(channel);
  }

  /** SSUBSCRIBE on the owner of the slot; resolves once subscribed there. */
  private async place(channel: string, p: Placement): Promise<void> {
    if (this.owners.length === 0) await this.refresh();
    const owner = this.owners[p.slot];
    if (!owner) throw new Error(`no primary owns slot ${p.slot}`);
    const conn = this.conn(owner);
    await new Promise<void>((resolve, reject) => {
      // ioredis leaves an SSUBSCRIBE answered with MOVED pending forever and emits 'moved' instead.
      const moved = () => reject(new Error(`MOVED: slot ${p.slot} is not on ${owner}`));
      conn.redis.once('moved', moved);
      conn.redis.ssubscribe(channel).then(
        () => {
          conn.redis.off('moved', moved);
          resolve();
        },
        (err: Error) => {
          conn.redis.off('moved', moved);
          reject(err);
        },
      );
    });
    if (conn.broken) throw new Error(`subscriber connection to ${owner} broke`);
    if (this.wanted.get(channel) !== p) {
      await conn.redis.sunsubscribe(channel).catch(() => undefined); // unsubscribed meanwhile
      return;
    }
    p.on = owner;
  }

  private conn(key: string): ShardConn {
    const existing = this.conns.get(key);
    if (existing && !existing.broken) return existing;
    const [host, port] = splitHostPort(key);
    const redis = new Redis({
      ...this.opts.connection,
      host,
      port,
      autoResubscribe: false,
      enableOfflineQueue: true,
      connectionName: `${this.opts.connection.connectionName ?? 'gateway-sub'}:${key}`,
    });
    const conn: ShardConn = { key, redis, broken: false };
    this.conns.set(key, conn);
    // Every place() in flight on this connection waits on 'moved' once: as many as the channels of a shard.
    redis.setMaxListeners(0);
    redis.on('smessageBuffer', (channel: Buffer, payload: Buffer) =>
      this.cb.message(channel.toString(), payload),
    );
    const breakIt = (why: string) => {
      if (conn.broken) return;
      conn.broken = true;
      this.log.info({ node: key, why }, 'shard subscriber lost; re-placing its channels');
      for (const p of this.wanted.values())
        if (p.on === key) {
          p.on = undefined;
          this.lost = true;
        }
      redis.disconnect();
      if (this.conns.get(key) === conn) this.conns.delete(key);
      this.scheduleRefresh();
    };
    redis.on('close', () => breakIt('closed'));
    redis.on('moved', () => breakIt('moved'));
    redis.on('error', (err: Error) => {
      // An SUNSUBSCRIBE the server pushed (its slot migrated away) reaches ioredis with no command waiting.
      if (err.message.includes('sunsubscribe')) breakIt('server unsubscribed');
      // A failover refuses connections to the old primary until the slot map moves on: one outage, one line.
      else this.failing(0, `${key}: ${err.message}`);
    });
    return conn;
  }

  private scheduleRefresh(): void {
    if (this.stopped) return;
    setTimeout(() => void this.refresh(), 50).unref();
  }

  /** Re-reads the slot map and re-places channels; concurrent calls share one pass (plus one after it). */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = this.runRefresh().finally(() => {
      this.refreshing = undefined;
      if (this.again && !this.stopped) {
        this.again = false;
        void this.refresh();
      }
    });
    return this.refreshing;
  }

  private async runRefresh(): Promise<void> {
    if (this.stopped) return;
    let reply: SlotsReply;
    try {
      reply = await this.opts.slots();
    } catch (err) {
      this.failing(1, `CLUSTER SLOTS failed: ${(err as Error).message}`);
      return;
    }
    const owners: (string | undefined)[] = new Array<string | undefined>(16384);
    let covered = 0;
    for (const [start, end, primary] of reply) {
      const key = `${primary[0]}:${primary[1]}`;
      for (let s = start; s <= end; s++) owners[s] = key;
      covered += end - start + 1;
    }
    if (covered === 16384) this.owners = owners;
    else if (this.owners.length === 0) this.owners = [];

    let failed = 0;
    let lastError = '';
    const work: Promise<void>[] = [];
    for (const [channel, p] of this.wanted) {
      const owner = this.owners[p.slot];
      if (p.on && p.on === owner) continue;
      if (p.on) {
        // The slot moved while our connection stayed up: leave the old owner, join the new one.
        const old = this.conns.get(p.on);
        if (old && !old.broken) void old.redis.sunsubscribe(channel).catch(() => undefined);
        p.on = undefined;
        this.lost = true;
      }
      work.push(
        this.place(channel, p).catch((err: Error) => {
          failed++;
          lastError = err.message;
        }),
      );
    }
    await Promise.all(work);
    if (failed > 0) this.failing(failed, lastError);
    // Connections to nodes that own nothing any more (a failed-over primary) go.
    const live = new Set(this.owners);
    for (const [key, conn] of this.conns)
      if (!live.has(key)) {
        conn.broken = true;
        conn.redis.disconnect();
        this.conns.delete(key);
      }
    const unplaced = [...this.wanted.values()].some((p) => !p.on);
    if (!unplaced && this.outage) {
      this.log.warn(
        {
          ms: Date.now() - this.outage.since,
          failedAttempts: this.outage.failures,
          channels: this.wanted.size,
        },
        'sharded subscriptions placed again after failures',
      );
      this.outage = undefined;
    }
    if (unplaced) this.scheduleRetry();
    else if (this.lost) {
      this.lost = false;
      this.log.info(
        { channels: this.wanted.size },
        'sharded subscriptions re-established; resyncing streams',
      );
      this.cb.resync();
    }
  }

  /** Records `count` failed placements (0: a subscriber connection error), logging only an outage's start. */
  private failing(count: number, err: string): void {
    if (count > 0) this.opts.failed?.(count);
    if (this.outage) {
      this.outage.failures += count;
      this.outage.lastError = err;
      return;
    }
    this.outage = { since: Date.now(), failures: count, lastError: err };
    this.log.warn(
      { err, channels: this.wanted.size },
      'sharded subscriptions failing (a failover or a lost shard?); retrying quietly until all are placed',
    );
  }

  private scheduleRetry(): void {
    if (this.stopped || this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      void this.refresh();
    }, 200);
    this.retryTimer.unref();
  }
}

export function splitHostPort(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  if (i <= 0) throw new Error(`not host:port: ${addr}`);
  const host = addr.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new Error(`bad port in ${addr}`);
  return [host, port];
}
