// Webhooks out, at least once. The recorder turns what this node observed (engine activity, stored messages of
// chosen rooms) into events appended to the cluster-wide queue; the sender on every node takes events from the
// queue, POSTs them signed to WEBHOOK_URL, retries with backoff until a 2xx, and only then acks. A node that
// crashes mid-delivery leaves its events pending; another node claims them after WEBHOOK_CLAIM_IDLE_MS.
// Duplicates are possible (a delivery whose 2xx was lost, a claim after a slow node): receivers dedupe by `id`.
import { randomBytes } from 'node:crypto';
import type { WebhookEventType, WebhooksConfig } from '../config';
import type { Activity, QueuedWebhook, WebhookQueue } from '../engine/engine';
import type { Logger } from '../logger';
import { RoomPattern } from '../auth/room-pattern';
import { BackendClient } from './backend-client';

export interface WebhookEvent {
  /** Unique per event; the same on every delivery attempt of it. */
  id: string;
  type: WebhookEventType;
  /** When the node observed it (ms since epoch). */
  ts: number;
  /** The node that observed it. */
  node: string;
  data: Record<string, unknown>;
}

export interface WebhookObserver {
  recorded(type: WebhookEventType): void;
  attempt(result: 'delivered' | 'failed' | 'expired', seconds: number): void;
}

export class WebhookRecorder {
  private readonly events: Set<WebhookEventType>;
  private readonly messageRooms: RoomPattern[];

  constructor(
    config: Readonly<WebhooksConfig>,
    private readonly queue: WebhookQueue,
    private readonly nodeId: string,
    private readonly observer: WebhookObserver,
    private readonly log: Logger,
  ) {
    this.events = new Set(config.events);
    this.messageRooms = config.messageRooms.map((r) => new RoomPattern(r));
  }

  activity(a: Activity): void {
    if (!this.events.has(a.type)) return;
    this.record(a.type, 'user' in a ? { user: a.user } : { room: a.room });
  }

  /** A room message was stored (not a duplicate): recorded when the room matches WEBHOOK_MESSAGE_ROOMS. */
  message(room: string, message: Record<string, unknown>): void {
    if (!this.messageRooms.some((r) => r.matches(room))) return;
    this.record('message', { room, message });
  }

  private record(type: WebhookEventType, data: Record<string, unknown>): void {
    const event: WebhookEvent = {
      id: `evt_${randomBytes(12).toString('base64url')}`,
      type,
      ts: Date.now(),
      node: this.nodeId,
      data,
    };
    this.queue.append(JSON.stringify(event)).then(
      () => this.observer.recorded(type),
      (err: Error) => this.log.error({ err: err.message, event }, 'could not record a webhook event'),
    );
  }
}

const POLL_MS = 250;
const FIRST_RETRY_MS = 250;

export class WebhookSender {
  private readonly client: BackendClient;
  /** Entries this node is delivering (an entry read again by XAUTOCLAIM while still here is skipped). */
  private readonly inflight = new Set<string>();
  private running = false;
  private wake?: () => void;
  private loop?: Promise<void>;

  constructor(
    private readonly config: Readonly<WebhooksConfig>,
    private readonly queue: WebhookQueue,
    private readonly nodeId: string,
    private readonly observer: WebhookObserver,
    private readonly log: Logger,
  ) {
    this.client = new BackendClient({
      maxConcurrency: config.concurrency,
      maxResponseBytes: 65536,
      secret: config.secret,
      userAgent: `relaychat-gateway (${nodeId})`,
    });
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stops taking events; deliveries in flight are abandoned (still pending: another node claims them). */
  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    await this.client.close();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      t.unref();
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (this.running) {
      const room = this.config.concurrency - this.inflight.size;
      if (room <= 0) {
        await this.sleep(POLL_MS);
        continue;
      }
      let batch: QueuedWebhook[];
      try {
        batch = await this.queue.read(this.nodeId, room, this.config.claimIdleMs);
        failures = 0;
      } catch (err) {
        if (failures++ === 0) this.log.warn({ err: (err as Error).message }, 'webhook queue read failed');
        await this.sleep(Math.min(POLL_MS * 2 ** failures, 5000));
        continue;
      }
      let started = 0;
      for (const item of batch) {
        if (this.inflight.has(item.entry)) continue;
        this.inflight.add(item.entry);
        started++;
        void this.deliver(item).finally(() => {
          this.inflight.delete(item.entry);
          this.wake?.();
        });
      }
      if (started === 0) await this.sleep(POLL_MS);
    }
  }

  /** Delivers one event until a 2xx, with exponential backoff (capped at WEBHOOK_RETRY_MAX_MS), then acks it. */
  private async deliver(item: QueuedWebhook): Promise<void> {
    let event: WebhookEvent;
    try {
      event = JSON.parse(item.payload) as WebhookEvent;
    } catch {
      this.log.error({ entry: item.entry }, 'unreadable webhook entry dropped');
      await this.queue.ack([item.entry]).catch(() => undefined);
      return;
    }
    for (let attempt = 0; this.running; attempt++) {
      if (Date.now() - event.ts > this.config.maxAgeS * 1000) {
        this.observer.attempt('expired', 0);
        this.log.error(
          { id: event.id, type: event.type },
          'webhook event older than WEBHOOK_MAX_AGE_S dropped',
        );
        await this.queue.ack([item.entry]).catch(() => undefined);
        return;
      }
      const start = performance.now();
      const result = await this.client.post(this.config.url, item.payload, this.config.timeoutMs, {
        'x-relaychat-event': event.type,
        'x-relaychat-id': event.id,
      });
      const seconds = (performance.now() - start) / 1000;
      const delivered =
        result.ok ||
        (result.failure === 'bad_response' && result.status !== undefined && result.status < 300);
      if (delivered) {
        this.observer.attempt('delivered', seconds);
        // Not acked (Redis down): the entry stays pending and is delivered again later (a duplicate).
        await this.queue
          .ack([item.entry])
          .catch((err: Error) => this.log.warn({ err: err.message, id: event.id }, 'webhook ack failed'));
        return;
      }
      this.observer.attempt('failed', seconds);
      if (attempt === 0)
        this.log.warn(
          { id: event.id, type: event.type, failure: result.failure },
          'webhook delivery failed; retrying',
        );
      const backoff = Math.min(FIRST_RETRY_MS * 2 ** attempt, this.config.retryMaxMs);
      await this.sleepFor(backoff * (0.5 + Math.random() / 2));
      // Still ours: reset the idle time so no other node claims it while this one retries.
      await this.queue.touch(this.nodeId, [item.entry]).catch(() => undefined);
    }
  }

  /** A retry wait that stop() does not cut short for other waits (each delivery has its own timer). */
  private sleepFor(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms).unref());
  }
}
