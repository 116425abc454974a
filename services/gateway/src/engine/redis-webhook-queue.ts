// The webhook queue on Redis: one stream, one consumer group ("gateway") that every node reads as a consumer
// named after itself. XREADGROUP hands each new entry to one node; an entry stays pending until XACK; a node that
// crashed leaves its entries pending, and XAUTOCLAIM gives them to another node once idle for claimIdleMs. A node
// still retrying an entry resets its idle time with XCLAIM ... JUSTID, so no other node takes it meanwhile.
import type { Cluster, Redis } from 'ioredis';
import type { QueuedWebhook, WebhookQueue } from './engine';

const GROUP = 'gateway';

type Entry = [string, string[]];

export class RedisWebhookQueue implements WebhookQueue {
  private grouped = false;

  constructor(
    private readonly redis: Redis | Cluster,
    private readonly key: string,
    private readonly retention: number,
    private readonly timed: <T>(command: string, run: () => Promise<T>) => Promise<T>,
  ) {}

  async append(payload: string): Promise<void> {
    await this.timed('webhook', () => this.redis.xadd(this.key, 'MAXLEN', this.retention, '*', 'e', payload));
  }

  /** Creates the group (and the stream) once; again after a Redis that lost it (NOGROUP). */
  private async group(): Promise<void> {
    if (this.grouped) return;
    try {
      await this.timed('webhook', () => this.redis.xgroup('CREATE', this.key, GROUP, '0', 'MKSTREAM'));
    } catch (err) {
      if (!String((err as Error).message).includes('BUSYGROUP')) throw err;
    }
    this.grouped = true;
  }

  async read(consumer: string, count: number, claimIdleMs: number): Promise<QueuedWebhook[]> {
    await this.group();
    try {
      const claimed = (await this.timed('webhook', () =>
        this.redis.xautoclaim(this.key, GROUP, consumer, claimIdleMs, '0-0', 'COUNT', count),
      )) as [string, Entry[], string[]?];
      const out = toQueued(claimed[1]);
      if (out.length >= count) return out;
      const fresh = (await this.timed('webhook', () =>
        this.redis.xreadgroup(
          'GROUP',
          GROUP,
          consumer,
          'COUNT',
          count - out.length,
          'STREAMS',
          this.key,
          '>',
        ),
      )) as [string, Entry[]][] | null;
      return out.concat(toQueued(fresh?.[0]?.[1] ?? []));
    } catch (err) {
      if (String((err as Error).message).includes('NOGROUP')) this.grouped = false;
      throw err;
    }
  }

  async touch(consumer: string, entries: string[]): Promise<void> {
    if (entries.length === 0) return;
    await this.timed('webhook', () => this.redis.xclaim(this.key, GROUP, consumer, 0, ...entries, 'JUSTID'));
  }

  async ack(entries: string[]): Promise<void> {
    if (entries.length === 0) return;
    await this.timed('webhook', () => this.redis.xack(this.key, GROUP, ...entries));
    await this.timed('webhook', () => this.redis.xdel(this.key, ...entries));
  }
}

/** Entries trimmed away while pending come back from XAUTOCLAIM without fields: skipped. */
function toQueued(entries: Entry[]): QueuedWebhook[] {
  const out: QueuedWebhook[] = [];
  for (const [entry, fields] of entries) {
    const i = fields?.indexOf('e') ?? -1;
    if (i >= 0 && fields[i + 1] !== undefined) out.push({ entry, payload: fields[i + 1]! });
  }
  return out;
}
