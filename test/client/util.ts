// Helpers for SDK tests: build a ChatClient over `ws`, record what it emits, wait on it.
import WebSocket from 'ws';
import { ChatClient, type ChatClientEvents, type ChatClientOptions } from '../../client/src';
import { token } from '../helpers/harness';

export type Recorded = { [K in keyof ChatClientEvents]: ChatClientEvents[K][] };

export interface TestSdkClient {
  client: ChatClient;
  seen: Recorded;
}

const live: ChatClient[] = [];

/** A ChatClient with `ws`, a harness token for `user` (unless `token` is given), and every event recorded. */
export function sdk(
  user: string,
  opts: Partial<ChatClientOptions> & Pick<ChatClientOptions, 'url'>,
): TestSdkClient {
  const client = new ChatClient({
    token: token(user),
    WebSocket,
    backoff: { initialMs: 50, maxMs: 500 },
    ...opts,
  });
  const seen: Recorded = {
    state: [],
    connected: [],
    disconnected: [],
    message: [],
    dm: [],
    presence: [],
    gap: [],
    draining: [],
    error: [],
    signedOut: [],
    left: [],
  };
  for (const name of Object.keys(seen) as (keyof ChatClientEvents)[]) {
    client.on(name, (payload) => (seen[name] as unknown[]).push(payload));
  }
  live.push(client);
  return { client, seen };
}

export function closeAll(): void {
  for (const c of live.splice(0)) c.close();
}

/** Resolves with the first event (already seen or future) matching pred. */
export function waitEvent<K extends keyof ChatClientEvents>(
  t: TestSdkClient,
  name: K,
  pred: (e: ChatClientEvents[K]) => boolean = () => true,
  timeoutMs = 10_000,
): Promise<ChatClientEvents[K]> {
  const already = (t.seen[name] as ChatClientEvents[K][]).find(pred);
  if (already !== undefined) return Promise.resolve(already);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${String(name)} event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = t.client.on(name, (e) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

/** The message bodies a client received in a room, in delivery order. */
export function bodies(t: TestSdkClient, room: string): unknown[] {
  return t.seen.message.filter((m) => m.room === room).map((m) => m.body);
}
