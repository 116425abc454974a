// Policy hooks: the gateway asks the application's backend whether a connection may open, a user may join a
// room, a message may be stored (and in what form). The gateway sees only the typed `Hooks` interface; HttpHooks
// implements it over HTTP (docs/INTEGRATION.md is the backend's side of the contract).
import type { HookConfig, HooksConfig } from '../config';
import type { Logger } from '../logger';
import { BackendClient, type CallFailure } from './backend-client';

/** What the connect hook is told about an upgrade. */
export interface ConnectInput {
  ip: string;
  origin?: string;
  /** The verified JWT's claims (when a key is configured; the token itself is not forwarded). */
  claims?: Record<string, unknown>;
  /** Backend-authenticated mode only (no JWT key): the credentials the client presented. */
  credentials?: { token?: string; cookie?: string; authorization?: string; userAgent?: string };
}

export type ConnectDecision =
  | { kind: 'allow'; user?: string; rooms?: string[]; info?: Record<string, unknown> }
  | { kind: 'deny'; status: number; reason: string }
  /** The hook failed and its policy is fail-closed: refuse with 503, the client may retry. */
  | { kind: 'unavailable'; failure: CallFailure };

export type JoinDecision =
  { kind: 'allow' } | { kind: 'deny'; reason: string } | { kind: 'unavailable'; failure: CallFailure };

export type PublishDecision =
  | { kind: 'allow'; body?: string }
  | { kind: 'deny'; reason: string }
  | { kind: 'unavailable'; failure: CallFailure };

/** The seam the core calls. An absent method means no hook: allow. */
export interface Hooks {
  connect?(input: ConnectInput): Promise<ConnectDecision>;
  join?(input: { user: string; room: string; conn: string }): Promise<JoinDecision>;
  publish?(input: { user: string; room: string; conn: string; body: string }): Promise<PublishDecision>;
  close(): Promise<void>;
}

export type HookName = 'connect' | 'join' | 'publish';
export type HookOutcome = 'allow' | 'deny' | 'error' | 'cached';

export interface HookObserver {
  call(hook: HookName, seconds: number, outcome: HookOutcome): void;
  error(hook: HookName, kind: CallFailure): void;
}

const MAX_REASON = 200;
const MAX_ROOM_PATTERNS = 1000;

/** A printable reason of at most 200 characters, or the default. */
function reasonOf(v: unknown, fallback: string): string {
  if (typeof v !== 'string' || v.length === 0) return fallback;
  // eslint-disable-next-line no-control-regex
  return v.replace(/[\u0000-\u001f\u007f]/g, ' ').slice(0, MAX_REASON);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

class BadAnswer extends Error {}

export class HttpHooks implements Hooks {
  private readonly client: BackendClient;
  private readonly joinCache = new Map<string, { decision: JoinDecision; expiresAt: number }>();
  connect?: Hooks['connect'];
  join?: Hooks['join'];
  publish?: Hooks['publish'];

  constructor(
    private readonly config: Readonly<HooksConfig>,
    private readonly nodeId: string,
    private readonly maxMessageBytes: number,
    private readonly observer: HookObserver,
    private readonly log: Logger,
  ) {
    this.client = new BackendClient({
      maxConcurrency: config.maxConcurrency,
      maxResponseBytes: config.maxResponseBytes,
      secret: config.secret,
    });
    if (config.connect) this.connect = (input) => this.callConnect(config.connect!, input);
    if (config.join) this.join = (input) => this.callJoin(config.join!, input);
    if (config.publish) this.publish = (input) => this.callPublish(config.publish!, input);
  }

  /**
   * One call: POST {hook, node, ...payload}; `parse` turns a 2xx JSON answer into a decision or throws BadAnswer.
   * A failure (timeout, network, non-2xx, garbage, overload) becomes allow under fail-open, else unavailable.
   */
  private async call<D extends { kind: string }>(
    hook: HookName,
    cfg: HookConfig,
    payload: Record<string, unknown>,
    parse: (answer: Record<string, unknown>) => D,
    openDecision: D,
  ): Promise<{ decision: D | { kind: 'unavailable'; failure: CallFailure }; answered: boolean }> {
    const start = performance.now();
    const body = JSON.stringify({ hook, node: this.nodeId, ...payload });
    const result = await this.client.post(cfg.url, body, cfg.timeoutMs, { 'x-relaychat-hook': hook });
    const seconds = (performance.now() - start) / 1000;
    let failure: CallFailure;
    let detail: string;
    if (result.ok) {
      try {
        if (!isObject(result.json)) throw new BadAnswer('answer is not a JSON object');
        const decision = parse(result.json);
        this.observer.call(hook, seconds, decision.kind === 'deny' ? 'deny' : 'allow');
        return { decision, answered: true };
      } catch (err) {
        if (!(err instanceof BadAnswer)) throw err;
        failure = 'bad_response';
        detail = err.message;
      }
    } else {
      failure = result.failure;
      detail = result.detail;
    }
    this.observer.call(hook, seconds, 'error');
    this.observer.error(hook, failure);
    this.log.warn({ hook, failure, detail, policy: cfg.onFailure }, 'hook call failed');
    return {
      decision: cfg.onFailure === 'open' ? openDecision : { kind: 'unavailable', failure },
      answered: false,
    };
  }

  private allowed(a: Record<string, unknown>): boolean {
    if (typeof a.allow !== 'boolean') throw new BadAnswer('"allow" must be true or false');
    return a.allow;
  }

  private async callConnect(cfg: HookConfig, input: ConnectInput): Promise<ConnectDecision> {
    const payload: Record<string, unknown> = { ip: input.ip };
    if (input.origin !== undefined) payload.origin = input.origin;
    if (input.claims !== undefined) payload.claims = input.claims;
    if (input.credentials !== undefined) payload.credentials = input.credentials;
    const { decision } = await this.call<ConnectDecision>(
      'connect',
      cfg,
      payload,
      (a) => {
        if (!this.allowed(a)) {
          const status = a.status === undefined ? 403 : a.status;
          if (typeof status !== 'number' || !Number.isInteger(status) || status < 400 || status > 499)
            throw new BadAnswer('"status" must be an integer 400-499');
          return { kind: 'deny', status, reason: reasonOf(a.reason, 'denied') };
        }
        const d: ConnectDecision & { kind: 'allow' } = { kind: 'allow' };
        if (a.user !== undefined) {
          if (typeof a.user !== 'string' || a.user.length === 0 || a.user.length > 256)
            throw new BadAnswer('"user" must be a string of 1-256 characters');
          d.user = a.user;
        }
        if (a.rooms !== undefined) {
          if (
            !Array.isArray(a.rooms) ||
            a.rooms.length > MAX_ROOM_PATTERNS ||
            !a.rooms.every((r) => typeof r === 'string' && r.length > 0 && r.length <= 256)
          )
            throw new BadAnswer(`"rooms" must be a list of at most ${MAX_ROOM_PATTERNS} room patterns`);
          d.rooms = a.rooms as string[];
        }
        if (a.info !== undefined) {
          if (!isObject(a.info)) throw new BadAnswer('"info" must be a JSON object');
          d.info = a.info;
        }
        return d;
      },
      { kind: 'allow' },
    );
    return decision;
  }

  private async callJoin(
    cfg: HookConfig,
    input: { user: string; room: string; conn: string },
  ): Promise<JoinDecision> {
    const cacheMs = this.config.joinCacheMs;
    const key = `${input.user}\u0000${input.room}`;
    if (cacheMs > 0) {
      const hit = this.joinCache.get(key);
      if (hit && hit.expiresAt > Date.now()) {
        this.observer.call('join', 0, 'cached');
        return hit.decision;
      }
      if (hit) this.joinCache.delete(key);
    }
    const { decision, answered } = await this.call<JoinDecision>(
      'join',
      cfg,
      input,
      (a) => (this.allowed(a) ? { kind: 'allow' } : { kind: 'deny', reason: reasonOf(a.reason, 'denied') }),
      { kind: 'allow' },
    );
    // Answers are cached, failures (and fail-open allows) are not.
    if (cacheMs > 0 && answered) {
      if (this.joinCache.size >= this.config.joinCacheSize) {
        const oldest = this.joinCache.keys().next().value;
        if (oldest !== undefined) this.joinCache.delete(oldest);
      }
      this.joinCache.set(key, { decision, expiresAt: Date.now() + cacheMs });
    }
    return decision;
  }

  private async callPublish(
    cfg: HookConfig,
    input: { user: string; room: string; conn: string; body: string },
  ): Promise<PublishDecision> {
    // The body goes out as JSON (as stored), not as a string holding JSON.
    const payload = { user: input.user, room: input.room, conn: input.conn, body: JSON.parse(input.body) };
    const { decision } = await this.call<PublishDecision>(
      'publish',
      cfg,
      payload,
      (a) => {
        if (!this.allowed(a)) return { kind: 'deny', reason: reasonOf(a.reason, 'rejected') };
        if (!('body' in a)) return { kind: 'allow' };
        if (a.body === undefined || a.body === null) throw new BadAnswer('"body" must not be null');
        const body = JSON.stringify(a.body);
        if (Buffer.byteLength(body) > this.maxMessageBytes)
          throw new BadAnswer(`replacement body exceeds ${this.maxMessageBytes} bytes`);
        return { kind: 'allow', body };
      },
      { kind: 'allow' },
    );
    return decision;
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

/** Builds the hooks the config asks for (methods absent when their URL is unset). */
export function createHooks(
  config: Readonly<HooksConfig>,
  nodeId: string,
  maxMessageBytes: number,
  observer: HookObserver,
  log: Logger,
): Hooks {
  if (!config.connect && !config.join && !config.publish) return { close: async () => undefined };
  return new HttpHooks(config, nodeId, maxMessageBytes, observer, log);
}
