// The messages between the coordinating process and its generator processes, and the layout both sides use to
// derive each connection's user, node, room and source address from its index alone.
import type { HistogramJson } from './histogram';
import type { Encoding, System } from './clients';

export type ScenarioKind = 'idle' | 'rooms' | 'dm';

/**
 * Everything a generator needs to know about the connections of a scenario. Connection i (0-based, global
 * across generators) is user `${userPrefix}${i}`, connects to urls[i % urls.length] from
 * localAddresses[i % localAddresses.length]; in 'rooms' it joins room floor(i / roomSize); in 'dm' its partner is
 * connection i ^ 1.
 */
export interface Layout {
  system: System;
  /** Gateway clients' wire encoding (default json). */
  encoding?: Encoding;
  kind: ScenarioKind;
  urls: string[];
  secret: string;
  userPrefix: string;
  roomPrefix: string;
  roomSize: number;
  /** Total connections of the scenario (the last room may be smaller than roomSize). */
  total: number;
  localAddresses: string[];
  payloadBytes: number;
  /** Connection attempts each generator keeps in flight. */
  connectConcurrency: number;
  timeoutMs: number;
}

export function userOf(layout: Layout, i: number): string {
  return `${layout.userPrefix}${i}`;
}

export function roomIndexOf(layout: Layout, i: number): number {
  return Math.floor(i / layout.roomSize);
}

/** Members of the room connection i belongs to, less those in `absent` (connections that failed). */
export function roomMembers(layout: Layout, i: number, absent?: ReadonlySet<number>): number {
  const start = roomIndexOf(layout, i) * layout.roomSize;
  const end = Math.min(start + layout.roomSize, layout.total);
  let n = end - start;
  if (absent && absent.size > 0) for (let j = start; j < end; j++) if (absent.has(j)) n -= 1;
  return n;
}

export interface PhaseStatsJson {
  /** Messages the server acknowledged (ok reply or ack). */
  published: number;
  /** Deliveries the acknowledged messages should cause (one per room member, one per DM). */
  expected: number;
  /** Distinct deliveries received. */
  delivered: number;
  duplicates: number;
  publishErrors: number;
  /** Bytes of the WebSocket frames (payload) that carried the distinct deliveries; 0 when not measured. */
  wireBytes: number;
  /** End-to-end latency of every delivery, µs. */
  latency: HistogramJson;
  /** Per second of send time (monotonic clock, whole seconds): [second, deliveries, worst latency µs]. */
  timeline: Array<[number, number, number]>;
}

export type Request =
  | { type: 'init'; genId: number; layout: Layout }
  | { type: 'connect'; from: number; to: number; join: boolean }
  | { type: 'absent'; indices: number[] }
  /** The node at `url` is about to be killed: its connections' closes are expected, and they stop publishing. */
  | { type: 'arm'; url: string }
  /** Reconnects every armed connection to `url` once its socket has closed, rejoining its room from its position. */
  | { type: 'reconnect'; url: string }
  | { type: 'phase'; phase: number; ratePerSec: number; durationMs: number }
  | { type: 'progress' }
  | { type: 'collect'; phases: number[] }
  | { type: 'close' };

export interface ConnectResult {
  connected: number;
  failed: number;
  /** Indices of the connections that failed to connect or join (they receive nothing). */
  failedIndices: number[];
  errors: string[];
  elapsedMs: number;
  /** connect call -> welcome (relay) or connect event (Socket.IO), µs. */
  connectLatency: HistogramJson;
  /** connect call -> join reply, µs (empty without joins). */
  joinLatency: HistogramJson;
  /** Resumed joins the server answered with `recovered: false` (relaychat; the history no longer reached back). */
  unrecovered: number;
}

export interface PhaseSent {
  published: number;
  publishErrors: number;
  expected: number;
  errors: string[];
  /** When the last publish was sent, ms after the phase started (lower than durationMs when the generator lagged). */
  sentForMs: number;
}

export type Reply =
  | { type: 'ok' }
  | ({ type: 'connected' } & ConnectResult)
  | ({ type: 'sent' } & PhaseSent)
  | { type: 'progress'; delivered: Record<number, number> }
  | { type: 'collected'; phases: Record<number, PhaseStatsJson> }
  | { type: 'error'; message: string };

/**
 * Every reply also says how many connections were lost (closed by the other side) so far, and how many messages
 * the server declared undeliverable with `gap` events.
 */
export interface Envelope<T> {
  seq: number;
  lost: number;
  gapped: number;
  body: T;
}
