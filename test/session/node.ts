// An in-process gateway node for tests of the session layer and the hub: the real Gateway, Hub and MemoryEngine,
// wired as server.ts wires them, with fake Connections in place of sockets (no processes, no ports). Every frame a
// connection receives is checked by the shared protocol validator, as the SDK checks it.
import { pino } from 'pino';
import { loadConfig, type Config } from '../../services/gateway/src/config';
import { MemoryEngine } from '../../services/gateway/src/engine/memory-engine';
import { Gateway } from '../../services/gateway/src/session/gateway';
import { Hub } from '../../services/gateway/src/hub/hub';
import { hubEvents, hubOptions, uwsMaxBackpressure } from '../../services/gateway/src/server';
import {
  SendStatus,
  type Client,
  type Connection,
  type TopicPublisher,
} from '../../services/gateway/src/hub/client';
import { createMetrics, Stats } from '../../services/gateway/src/metrics';
import { mintDevToken, TokenVerifier } from '../../services/gateway/src/auth/tokens';
import { Packed, type OutFrame } from '../../services/gateway/src/protocol/encoding';
import {
  validateResult,
  validateServerFrame,
  type CommandType,
  type ReplyFrame,
  type ResultMap,
  type ServerEvent,
} from '../../protocol';
import { until } from '../helpers/harness';

const SECRET = 'in-process-test-secret-0123456789';
let nodes = 0;

/**
 * Native topics as uWS keeps them: a publish is queued per subscribed socket and written at the end of the turn or
 * before that socket's next send (so per socket the order of publishes and sends holds, across an unsubscribe too);
 * a socket over `maxBackpressure` is skipped without a word, which is counted in `silentlyDropped` (tests assert 0).
 */
export class FakeTopics implements TopicPublisher {
  readonly topics = new Map<string, Set<FakeConnection>>();
  private readonly queued = new Set<FakeConnection>();
  private flushing = false;
  constructor(readonly maxBackpressure: number) {}
  publish(topic: string, frame: string | Uint8Array, binary: boolean): void {
    if (binary) throw new Error('the in-process node has JSON connections only');
    for (const conn of this.topics.get(topic) ?? []) {
      conn.queue.push(frame);
      this.queued.add(conn);
    }
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => {
        this.flushing = false;
        for (const conn of this.queued) conn.flush();
        this.queued.clear();
      });
    }
  }
}

/** A socket as the gateway sees it: records what it was sent; `status` and `buffered` play backpressure. */
export class FakeConnection implements Connection {
  readonly encoding = 'json' as const;
  /** Every frame written, parsed (the shared validator has checked it). */
  readonly frames: Record<string, unknown>[] = [];
  readonly bytes: number[] = [];
  closedWith?: { code: number; reason: string };
  /** Frames published to a topic of this socket, not yet written. */
  readonly queue: (string | Uint8Array)[] = [];
  /** Published frames skipped because `buffered` was over maxBackpressure (uWS drops them silently). */
  silentlyDropped = 0;
  readonly subscribed = new Set<string>();
  /** What the next send returns. */
  status: SendStatus = SendStatus.SENT;
  /** A reader that stopped: every frame written (sent or published) stays in `buffered`, and sends say BUFFERED. */
  stalled = false;
  buffered = 0;
  onClose?: (code: number) => void;

  constructor(
    readonly id: string,
    private readonly topics?: FakeTopics,
  ) {}

  subscribe(topic: string): void {
    if (this.closedWith || !this.topics) return;
    let set = this.topics.topics.get(topic);
    if (!set) this.topics.topics.set(topic, (set = new Set()));
    set.add(this);
    this.subscribed.add(topic);
  }

  unsubscribe(topic: string): void {
    this.topics?.topics.get(topic)?.delete(this);
    this.subscribed.delete(topic);
  }

  /** Writes the published frames queued for this socket, as uWS does before a send and at the end of a turn. */
  flush(): void {
    const frames = this.queue.splice(0);
    for (const frame of frames) {
      if (this.closedWith) return;
      if (this.buffered > this.topics!.maxBackpressure) {
        this.silentlyDropped++;
        continue;
      }
      this.record(frame);
    }
  }

  private record(frame: OutFrame): void {
    if (frame instanceof Packed) throw new Error('a JSON connection was sent MessagePack bytes');
    const text = typeof frame === 'string' ? frame : Buffer.from(frame).toString('utf8');
    const parsed = JSON.parse(text) as unknown;
    validateServerFrame(parsed); // throws on a malformed frame
    this.frames.push(parsed as Record<string, unknown>);
    this.bytes.push(Buffer.byteLength(text));
    if (this.stalled) this.buffered += Buffer.byteLength(text) + 2;
  }

  send(frame: OutFrame): SendStatus {
    if (this.closedWith) return SendStatus.DROPPED;
    this.flush();
    if (this.status === SendStatus.DROPPED) return SendStatus.DROPPED;
    this.record(frame);
    return this.stalled ? SendStatus.BUFFERED : this.status;
  }

  bufferedAmount(): number {
    return this.buffered;
  }

  close(code: number, reason: string): void {
    if (this.closedWith) return;
    this.closedWith = { code, reason };
    for (const topic of this.subscribed) this.topics?.topics.get(topic)?.delete(this);
    this.onClose?.(code);
  }

  events<T extends ServerEvent['type']>(type: T): Extract<ServerEvent, { type: T }>[] {
    return this.frames.filter((f) => f.type === type && !('re' in f)) as unknown as Extract<
      ServerEvent,
      { type: T }
    >[];
  }
}

export interface TestConn {
  conn: FakeConnection;
  client: Client;
  /** Sends one raw text frame. */
  raw(text: string): void;
  /** Sends a command and resolves with its reply frame. */
  reply(command: Record<string, unknown>): Promise<ReplyFrame>;
  /** Sends a command and resolves with its result, checked against the command's result type; throws on an error reply. */
  ok<T extends CommandType>(command: { type: T } & Record<string, unknown>): Promise<ResultMap[T]>;
}

export interface TestNode {
  config: Readonly<Config>;
  engine: MemoryEngine;
  hub: Hub;
  gateway: Gateway;
  token(user: string, rooms?: string[]): string;
  /** Opens a connection for `user` and waits for its welcome. */
  connect(user: string, opts?: { rooms?: string[] }): Promise<TestConn>;
  stop(): Promise<void>;
}

export async function startNode(env: Record<string, string> = {}): Promise<TestNode> {
  const config = loadConfig({ JWT_SECRET: SECRET, NODE_ID: `inproc-${++nodes}`, ...env }, () => SECRET);
  const log = pino({ level: 'silent' });
  const stats = new Stats();
  const engine = new MemoryEngine({
    historySize: config.history.size,
    historyTtlS: config.history.ttlS,
    inboxSize: config.history.inboxSize,
    inboxTtlS: config.history.inboxTtlS,
    dedupWindowS: config.history.dedupWindowS,
  });
  await engine.start();
  // The hub's and the metrics' callbacks reach the gateway, built after them (as in server.ts).
  const metrics = createMetrics(config.nodeId, stats, () => ({
    connections: gateway.sessions.size,
    rooms: hub.roomCount,
    channels: hub.channelCount,
    slow: hub.slowConsumers,
    native: hub.nativeMembers,
    historyReadsRunning: hub.historyReads.running,
    historyReadsWaiting: hub.historyReads.waiting,
    ready: true,
    draining: false,
    sameNodeIdPeers: 0,
  }));
  const hub: Hub = new Hub(
    engine,
    hubOptions(config),
    stats,
    hubEvents(metrics, () => gateway),
    log,
  );
  const topics = new FakeTopics(uwsMaxBackpressure(config));
  hub.useTopics(topics);
  const verifier = new TokenVerifier(config.jwt, (identity) => engine.isRevoked(identity));
  const gateway = new Gateway(config, engine, hub, verifier, metrics, stats, log);
  const gw = gateway;
  let conns = 0;

  const token = (user: string, rooms?: string[]) => mintDevToken(SECRET, user, rooms, 3600);

  async function connect(user: string, opts: { rooms?: string[] } = {}): Promise<TestConn> {
    const conn = new FakeConnection(`c${++conns}`, topics);
    const client = gw.open(conn, verifier.verify(token(user, opts.rooms)));
    conn.onClose = (code) => gw.closed(client, code);
    await until(`welcome of ${user}`, () => conn.frames.some((f) => f.type === 'welcome') || conn.closedWith);
    let nextId = 1;
    const reply = async (command: Record<string, unknown>): Promise<ReplyFrame> => {
      const id = nextId++;
      const text = JSON.stringify({ ...command, id });
      gw.message(client, text, Buffer.byteLength(text));
      const found = await until(`reply ${id}`, () => conn.frames.find((f) => f.re === id));
      return found as unknown as ReplyFrame;
    };
    return {
      conn,
      client,
      raw: (text) => gw.message(client, text, Buffer.byteLength(text)),
      reply,
      ok: async (command) => {
        const r = await reply(command);
        if (!r.ok) throw new Error(`${command.type}: ${r.error.code}: ${r.error.message}`);
        const { re: _re, ok: _ok, ...fields } = r;
        return validateResult(command.type, fields);
      },
    };
  }

  return {
    config,
    engine,
    hub,
    gateway: gw,
    token,
    connect,
    stop: async () => {
      for (const client of [...gw.sessions.keys()]) client.conn.close(1001, 'test over');
      await engine.stop();
    },
  };
}
