// This node's presence marks, kept equal to the truth: a user is marked in a room (through this node) exactly
// while one of the user's local connections is in it. Joins, leaves and closes only say "look again"; one write
// per (room, user) is in flight at a time and the next one is decided by the state after it, so a leave that
// overtakes a join's mark (or a close during a join's subscription) cannot leave a mark behind.
import type { Engine } from '../engine/engine';
import type { Logger } from '../logger';

interface Mark {
  /** What Redis holds for this node; undefined after a failed write (it may or may not have been applied). */
  marked: boolean | undefined;
  /** The write loop in flight, if any. */
  running: Promise<string[] | undefined> | undefined;
  retry?: NodeJS.Timeout;
}

const RETRY_MS = 1000;

export class PresenceMarks {
  private readonly marks = new Map<string, Mark>();

  constructor(
    private readonly engine: Engine,
    /** Whether the user has a local connection in the room now. */
    private readonly wanted: (room: string, user: string) => boolean,
    private readonly log: Logger,
  ) {}

  /** Pairs with a mark in Redis or a write in flight (for tests and metrics). */
  get size(): number {
    return this.marks.size;
  }

  /**
   * Brings the mark of (room, user) in line with `wanted`. Resolves with the room's presence when this call's
   * loop ended with a mark it wrote, undefined when nothing had to be written (or the last write removed it).
   * Rejects when a write failed; the mark is then retried every second until it holds.
   */
  sync(room: string, user: string): Promise<string[] | undefined> {
    // Unambiguous: room names never contain a newline (protocol/commands.ts validRoom).
    const key = `${room}\n${user}`;
    let mark = this.marks.get(key);
    if (!mark) this.marks.set(key, (mark = { marked: false, running: undefined }));
    clearTimeout(mark.retry);
    mark.retry = undefined;
    // The loop starts in a microtask, after `running` is set, so a call made while it runs joins it.
    mark.running ??= Promise.resolve().then(() => this.run(key, mark, room, user));
    return mark.running;
  }

  private async run(key: string, mark: Mark, room: string, user: string): Promise<string[] | undefined> {
    let presence: string[] | undefined;
    for (;;) {
      const want = this.wanted(room, user);
      if (want === mark.marked) {
        // Decided synchronously with the check: a sync() after this starts a new loop.
        mark.running = undefined;
        if (!want) this.marks.delete(key);
        return presence;
      }
      try {
        if (want) {
          presence = await this.engine.presenceAdd(room, user);
          mark.marked = true;
        } else {
          await this.engine.presenceRemove(room, user);
          mark.marked = false;
          presence = undefined;
        }
      } catch (err) {
        // Logged once per failure streak; the retries are quiet.
        if (mark.marked !== undefined)
          this.log.warn({ err: (err as Error).message, room }, 'presence write failed; retrying');
        mark.marked = undefined;
        mark.running = undefined;
        mark.retry = setTimeout(() => {
          mark.retry = undefined;
          if (this.marks.get(key) === mark) this.sync(room, user).catch(() => undefined);
        }, RETRY_MS);
        mark.retry.unref();
        throw err;
      }
    }
  }
}
