// The one place that reads the environment. Every setting is a row of ENV below: its name, default and check.
// loadConfig() validates everything at start-up and throws ConfigError naming the first bad variable.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { DEFAULT_LIMITS } from '../../../protocol';

export class ConfigError extends Error {}

type Env = Record<string, string | undefined>;

function int(name: string, min: number, max: number) {
  return (raw: string): number => {
    if (!/^-?\d+$/.test(raw.trim())) throw new ConfigError(`${name} must be an integer, got "${raw}"`);
    const n = Number(raw);
    if (n < min || n > max) throw new ConfigError(`${name} must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

function list(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function oneOf<T extends string>(name: string, values: readonly T[]) {
  return (raw: string): T => {
    if (!(values as readonly string[]).includes(raw))
      throw new ConfigError(`${name} must be one of ${values.join(', ')}, got "${raw}"`);
    return raw as T;
  };
}

/** JWT_PUBLIC_KEY may hold the PEM text itself or a path to a PEM file. */
function pem(raw: string): string {
  if (raw.includes('-----BEGIN')) return raw.replace(/\\n/g, '\n');
  try {
    return readFileSync(raw, 'utf8');
  } catch {
    throw new ConfigError(`JWT_PUBLIC_KEY is neither PEM text nor a readable file: ${raw}`);
  }
}

function url(name: string) {
  return (raw: string): string => {
    try {
      const u = new URL(raw);
      if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error();
    } catch {
      throw new ConfigError(`${name} must be a redis:// or rediss:// URL`);
    }
    return raw;
  };
}

/** A comma-separated list of host:port (REDIS_CLUSTER_NODES, REDIS_SENTINELS). */
function hostPorts(name: string) {
  return (raw: string): string[] => {
    const items = list(raw);
    for (const item of items)
      if (!/^[^\s:]+:\d{1,5}$/.test(item) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(item))
        throw new ConfigError(`${name} must be a comma-separated list of host:port, got "${item}"`);
    return items;
  };
}

/** Anything else (a typo such as `Production`) must not quietly run in dev mode with /dev/token open. */
const NODE_ENVS = ['development', 'production', 'test'] as const;
/** An http:// or https:// URL (hooks and webhooks). */
function httpUrl(name: string) {
  return (raw: string): string => {
    try {
      const u = new URL(raw);
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error();
    } catch {
      throw new ConfigError(`${name} must be an http:// or https:// URL`);
    }
    return raw;
  };
}

const FAILURE_POLICIES = ['closed', 'open'] as const;
export const WEBHOOK_EVENTS = ['user.online', 'user.offline', 'room.occupied', 'room.vacated'] as const;
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number] | 'message';

function webhookEvents(raw: string): WebhookEventType[] {
  const items = list(raw);
  for (const item of items)
    if (!(WEBHOOK_EVENTS as readonly string[]).includes(item))
      throw new ConfigError(
        `WEBHOOK_EVENTS must be a comma-separated subset of ${WEBHOOK_EVENTS.join(', ')}`,
      );
  return items as WebhookEventType[];
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** Name, default (undefined = unset) and parser of every environment variable the gateway reads. */
const ENV = {
  PORT: { def: '8080', parse: int('PORT', 0, 65535) },
  HOST: { def: '0.0.0.0', parse: (s: string) => s },
  NODE_ID: {
    def: undefined,
    parse: (s: string) => {
      if (!/^[A-Za-z0-9_.:-]{1,64}$/.test(s))
        throw new ConfigError('NODE_ID must be 1-64 of A-Z a-z 0-9 _ . : -');
      return s;
    },
  },
  NODE_ENV: { def: 'development', parse: oneOf('NODE_ENV', NODE_ENVS) },
  LOG_LEVEL: { def: 'info', parse: oneOf('LOG_LEVEL', LOG_LEVELS) },
  REDIS_URL: { def: undefined, parse: url('REDIS_URL') },
  REDIS_COMMAND_TIMEOUT_MS: { def: '2000', parse: int('REDIS_COMMAND_TIMEOUT_MS', 50, 60000) },
  REDIS_PROBE_TIMEOUT_MS: { def: '500', parse: int('REDIS_PROBE_TIMEOUT_MS', 100, 60000) },
  REDIS_KEY_PREFIX: { def: 'rc', parse: (s: string) => s },
  REDIS_CLUSTER_NODES: { def: undefined, parse: hostPorts('REDIS_CLUSTER_NODES') },
  REDIS_SENTINELS: { def: undefined, parse: hostPorts('REDIS_SENTINELS') },
  REDIS_SENTINEL_NAME: { def: 'mymaster', parse: (s: string) => s },
  REDIS_WAIT_REPLICAS: { def: '0', parse: int('REDIS_WAIT_REPLICAS', 0, 16) },
  REDIS_WAIT_TIMEOUT_MS: { def: '500', parse: int('REDIS_WAIT_TIMEOUT_MS', 1, 60000) },
  JWT_SECRET: { def: undefined, parse: (s: string) => s },
  DEV_TOKENS: { def: 'false', parse: oneOf('DEV_TOKENS', ['true', 'false'] as const) },
  JWT_PUBLIC_KEY: { def: undefined, parse: pem },
  JWT_ISSUER: { def: undefined, parse: (s: string) => s },
  JWT_AUDIENCE: { def: undefined, parse: (s: string) => s },
  JWT_ALLOW_NO_EXP: { def: 'false', parse: oneOf('JWT_ALLOW_NO_EXP', ['true', 'false'] as const) },
  JWT_MAX_LIFETIME_S: { def: '0', parse: int('JWT_MAX_LIFETIME_S', 0, 31536000) },
  MAX_TOKEN_ROOM_PATTERNS: { def: '64', parse: int('MAX_TOKEN_ROOM_PATTERNS', 1, 10000) },
  MAX_TOKEN_ROOM_PATTERN_LENGTH: { def: '256', parse: int('MAX_TOKEN_ROOM_PATTERN_LENGTH', 1, 4096) },
  REVOCATION_TTL_S: { def: undefined, parse: int('REVOCATION_TTL_S', 60, 31536000) },
  MAX_CONNECTIONS_PER_USER: { def: '100', parse: int('MAX_CONNECTIONS_PER_USER', 0, 1000000) },
  API_KEY: { def: undefined, parse: (s: string) => s },
  API_BATCH_MAX: { def: '100', parse: int('API_BATCH_MAX', 1, 10000) },
  ALLOWED_ORIGINS: { def: '', parse: list },
  TOKEN_COOKIE: {
    def: 'relaychat_token',
    parse: (s: string) => {
      if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,64}$/.test(s))
        throw new ConfigError('TOKEN_COOKIE must be a cookie name (1-64 token characters) or empty');
      return s;
    },
  },
  MAX_MESSAGE_BYTES: {
    def: String(DEFAULT_LIMITS.maxMessageBytes),
    parse: int('MAX_MESSAGE_BYTES', 64, 1048576),
  },
  MAX_FRAME_BYTES: { def: '65536', parse: int('MAX_FRAME_BYTES', 1024, 16777216) },
  MAX_FRAME_DEPTH: { def: '64', parse: int('MAX_FRAME_DEPTH', 2, 1000) },
  MAX_ROOM_NAME_LENGTH: {
    def: String(DEFAULT_LIMITS.maxRoomNameLength),
    parse: int('MAX_ROOM_NAME_LENGTH', 1, 1024),
  },
  MAX_ROOMS_PER_CONNECTION: { def: '100', parse: int('MAX_ROOMS_PER_CONNECTION', 1, 100000) },
  CMD_RATE: { def: '50', parse: int('CMD_RATE', 1, 1000000) },
  CMD_BURST: { def: '100', parse: int('CMD_BURST', 1, 1000000) },
  USER_MSG_RATE: { def: '20', parse: int('USER_MSG_RATE', 0, 1000000) },
  CONN_RATE_PER_IP: { def: '50', parse: int('CONN_RATE_PER_IP', 0, 1000000) },
  MAX_VIOLATIONS: { def: '20', parse: int('MAX_VIOLATIONS', 1, 1000000) },
  IDLE_TIMEOUT_S: { def: '60', parse: int('IDLE_TIMEOUT_S', 8, 960) },
  SLOW_CONSUMER_BYTES: { def: '1048576', parse: int('SLOW_CONSUMER_BYTES', 1024, 1073741824) },
  MAX_BODY_DEPTH: { def: '32', parse: int('MAX_BODY_DEPTH', 1, 1000) },
  MAX_INFLIGHT_PER_CONNECTION: { def: '128', parse: int('MAX_INFLIGHT_PER_CONNECTION', 1, 100000) },
  REPLY_BYTES_PER_S: { def: '1048576', parse: int('REPLY_BYTES_PER_S', 1024, 1073741824) },
  HEAVY_COMMAND_BUFFER_BYTES: {
    def: '262144',
    parse: int('HEAVY_COMMAND_BUFFER_BYTES', 1024, 1073741824),
  },
  MAX_BUFFERED_BYTES: { def: '4194304', parse: int('MAX_BUFFERED_BYTES', 4096, 1073741824) },
  HISTORY_READ_CONCURRENCY: { def: '8', parse: int('HISTORY_READ_CONCURRENCY', 1, 100000) },
  PRESENCE_REPLY_MAX: { def: '1000', parse: int('PRESENCE_REPLY_MAX', 1, 1000000) },
  HISTORY_SIZE: { def: '1000', parse: int('HISTORY_SIZE', 1, 10000000) },
  HISTORY_TTL_S: { def: '86400', parse: int('HISTORY_TTL_S', 1, 31536000) },
  INBOX_SIZE: { def: '1000', parse: int('INBOX_SIZE', 1, 10000000) },
  INBOX_TTL_S: { def: '604800', parse: int('INBOX_TTL_S', 1, 31536000) },
  DEDUP_WINDOW_S: { def: '300', parse: int('DEDUP_WINDOW_S', 1, 86400) },
  PRESENCE_TTL_MS: { def: '20000', parse: int('PRESENCE_TTL_MS', 1000, 3600000) },
  PRESENCE_BATCH_MS: { def: '200', parse: int('PRESENCE_BATCH_MS', 0, 10000) },
  NATIVE_TOPICS: { def: 'true', parse: oneOf('NATIVE_TOPICS', ['true', 'false'] as const) },
  SHUTDOWN_GRACE_MS: { def: '10000', parse: int('SHUTDOWN_GRACE_MS', 0, 600000) },
  STATIC_DIR: { def: undefined, parse: (s: string) => s },
  TRUST_PROXY: { def: 'false', parse: oneOf('TRUST_PROXY', ['true', 'false'] as const) },
  HOOK_CONNECT_URL: { def: undefined, parse: httpUrl('HOOK_CONNECT_URL') },
  HOOK_JOIN_URL: { def: undefined, parse: httpUrl('HOOK_JOIN_URL') },
  HOOK_PUBLISH_URL: { def: undefined, parse: httpUrl('HOOK_PUBLISH_URL') },
  HOOK_CONNECT_TIMEOUT_MS: { def: '2000', parse: int('HOOK_CONNECT_TIMEOUT_MS', 10, 60000) },
  HOOK_JOIN_TIMEOUT_MS: { def: '2000', parse: int('HOOK_JOIN_TIMEOUT_MS', 10, 60000) },
  HOOK_PUBLISH_TIMEOUT_MS: { def: '2000', parse: int('HOOK_PUBLISH_TIMEOUT_MS', 10, 60000) },
  HOOK_CONNECT_ON_FAILURE: { def: 'closed', parse: oneOf('HOOK_CONNECT_ON_FAILURE', FAILURE_POLICIES) },
  HOOK_JOIN_ON_FAILURE: { def: 'closed', parse: oneOf('HOOK_JOIN_ON_FAILURE', FAILURE_POLICIES) },
  HOOK_PUBLISH_ON_FAILURE: { def: 'closed', parse: oneOf('HOOK_PUBLISH_ON_FAILURE', FAILURE_POLICIES) },
  HOOK_MAX_CONCURRENCY: { def: '256', parse: int('HOOK_MAX_CONCURRENCY', 1, 100000) },
  HOOK_MAX_RESPONSE_BYTES: { def: '65536', parse: int('HOOK_MAX_RESPONSE_BYTES', 1024, 16777216) },
  HOOK_JOIN_CACHE_MS: { def: '0', parse: int('HOOK_JOIN_CACHE_MS', 0, 86400000) },
  HOOK_JOIN_CACHE_SIZE: { def: '10000', parse: int('HOOK_JOIN_CACHE_SIZE', 1, 10000000) },
  HOOK_SECRET: { def: undefined, parse: (s: string) => s },
  WEBHOOK_URL: { def: undefined, parse: httpUrl('WEBHOOK_URL') },
  WEBHOOK_SECRET: { def: undefined, parse: (s: string) => s },
  WEBHOOK_EVENTS: { def: WEBHOOK_EVENTS.join(','), parse: webhookEvents },
  WEBHOOK_MESSAGE_ROOMS: { def: '', parse: list },
  WEBHOOK_TIMEOUT_MS: { def: '5000', parse: int('WEBHOOK_TIMEOUT_MS', 10, 120000) },
  WEBHOOK_CONCURRENCY: { def: '16', parse: int('WEBHOOK_CONCURRENCY', 1, 10000) },
  WEBHOOK_RETRY_MAX_MS: { def: '20000', parse: int('WEBHOOK_RETRY_MAX_MS', 100, 3600000) },
  WEBHOOK_CLAIM_IDLE_MS: { def: '30000', parse: int('WEBHOOK_CLAIM_IDLE_MS', 1000, 3600000) },
  WEBHOOK_MAX_AGE_S: { def: '86400', parse: int('WEBHOOK_MAX_AGE_S', 60, 31536000) },
  WEBHOOK_RETENTION: { def: '100000', parse: int('WEBHOOK_RETENTION', 100, 100000000) },
  PROFILING: { def: 'false', parse: oneOf('PROFILING', ['true', 'false'] as const) },
  PROFILE_MAX_SECONDS: { def: '60', parse: int('PROFILE_MAX_SECONDS', 1, 600) },
} as const;

type EnvName = keyof typeof ENV;
/** Every environment variable the gateway reads; deploy checks compare manifests against this list. */
export const ENV_NAMES = Object.keys(ENV) as EnvName[];

function read<K extends EnvName>(env: Env, name: K): ReturnType<(typeof ENV)[K]['parse']> | undefined {
  const spec = ENV[name];
  const raw = env[name] ?? spec.def;
  if (raw === undefined || raw === '') return undefined;
  return spec.parse(raw) as ReturnType<(typeof ENV)[K]['parse']>;
}

export interface Config {
  port: number;
  host: string;
  nodeId: string;
  production: boolean;
  logLevel: (typeof LOG_LEVELS)[number];
  redis?: {
    /** Single Redis; with cluster or sentinels, only its credentials and TLS apply. */
    url?: string;
    cluster?: string[];
    sentinels?: string[];
    sentinelName: string;
    waitReplicas: number;
    waitTimeoutMs: number;
    commandTimeoutMs: number;
    /** /readyz answers 503 once a readiness PING has waited this long. */
    probeTimeoutMs: number;
    keyPrefix: string;
  };
  jwt: {
    /** HS256 secret; in dev mode a random one generated at start-up. */
    secret?: string;
    publicKey?: string;
    issuer?: string;
    audience?: string;
    /** true when no key was configured and dev mode minted one. */
    dev: boolean;
    /** /dev/token is served: in dev mode, or with DEV_TOKENS=true and JWT_SECRET (never in production). */
    devTokens: boolean;
    /** Caps on the `rooms` claim (a token over them is refused; /dev/token will not sign one). */
    maxRoomPatterns: number;
    maxRoomPatternLength: number;
    allowNoExp: boolean;
    /** 0 = no limit. */
    maxLifetimeS: number;
  };
  /**
   * How long a revocation is kept when the call gives no expiry: JWT_MAX_LIFETIME_S when set (a token issued
   * before a user revocation has expired by then), else REVOCATION_TTL_S (default one day).
   */
  revocationTtlS: number;
  apiKey?: string;
  /** Commands per POST /api/batch. */
  apiBatchMax: number;
  /** /debug/profile/* served (with API_KEY): PROFILING=true. */
  profiling: { enabled: boolean; maxSeconds: number };
  allowedOrigins: string[];
  /** Cookie that may carry the token; '' when the cookie carrier is off. */
  tokenCookie: string;
  limits: {
    maxMessageBytes: number;
    maxFrameBytes: number;
    /** Nesting depth of a decoded MessagePack frame (objects and arrays, the frame itself included). */
    maxFrameDepth: number;
    maxRoomNameLength: number;
    maxRoomsPerConnection: number;
    /** Connections of one user across all nodes; 0 = no limit. */
    maxConnectionsPerUser: number;
    cmdRate: number;
    cmdBurst: number;
    userMsgRate: number;
    connRatePerIp: number;
    maxViolations: number;
    idleTimeoutS: number;
    slowConsumerBytes: number;
    /** Nesting depth of `body` (arrays and objects) accepted by publish and dm. */
    maxBodyDepth: number;
    /** Commands of one connection being processed at once; beyond, rate_limited. */
    maxInflight: number;
    /** Bytes per second (and burst) of history/presence/replay replies per connection. */
    replyBytesPerS: number;
    /** Heavy commands (history, presence, replays) are refused while the send buffer is above this. */
    heavyCommandBufferBytes: number;
    /** A connection whose send buffer passes this is closed with 4008. */
    maxBufferedBytes: number;
    /** Catch-up reads from history running at once on this node. */
    historyReadConcurrency: number;
    /** Users listed in a presence reply; `total` counts all of them. */
    presenceReplyMax: number;
  };
  history: { size: number; ttlS: number; inboxSize: number; inboxTtlS: number; dedupWindowS: number };
  presenceTtlMs: number;
  /** Presence changes of a room are sent to its local members at most once per this window, as one frame. */
  presenceBatchMs: number;
  /** Connections in sync on a stream get its events through a uWS native topic (one publish per event). */
  nativeTopics: boolean;
  shutdownGraceMs: number;
  staticDir?: string;
  trustProxy: boolean;
  hooks: HooksConfig;
  webhooks?: WebhooksConfig;
}

export interface HookConfig {
  url: string;
  timeoutMs: number;
  /** closed: a failed call refuses (the client gets `unavailable`); open: it is treated as allow. */
  onFailure: (typeof FAILURE_POLICIES)[number];
}

export interface HooksConfig {
  connect?: HookConfig;
  join?: HookConfig;
  publish?: HookConfig;
  maxConcurrency: number;
  maxResponseBytes: number;
  joinCacheMs: number;
  joinCacheSize: number;
  /** When set, hook requests are signed like webhooks (X-Relaychat-Signature). */
  secret?: string;
}

export interface WebhooksConfig {
  url: string;
  secret: string;
  events: WebhookEventType[];
  /** Rooms whose every stored message is a `message` webhook (globs); empty = none. */
  messageRooms: string[];
  timeoutMs: number;
  concurrency: number;
  retryMaxMs: number;
  claimIdleMs: number;
  maxAgeS: number;
  retention: number;
}

export function loadConfig(env: Env, devSecret: () => string): Readonly<Config> {
  // Every variable that is set is checked, also those only read when another one is set (HOOK_JOIN_ON_FAILURE).
  for (const name of ENV_NAMES) read(env, name);
  const production = read(env, 'NODE_ENV') === 'production';
  const secret = read(env, 'JWT_SECRET');
  const publicKey = read(env, 'JWT_PUBLIC_KEY');
  const connectUrl = read(env, 'HOOK_CONNECT_URL');
  // With a connect hook and no key, the backend authenticates every connection: not dev mode.
  const dev = secret === undefined && publicKey === undefined && connectUrl === undefined;
  if (dev && production)
    throw new ConfigError(
      'JWT_SECRET or JWT_PUBLIC_KEY must be set when NODE_ENV=production (or HOOK_CONNECT_URL: the backend authenticates)',
    );
  const devTokens = read(env, 'DEV_TOKENS') === 'true';
  if (devTokens && production)
    throw new ConfigError('DEV_TOKENS=true is not allowed when NODE_ENV=production');
  if (devTokens && secret === undefined) throw new ConfigError('DEV_TOKENS=true needs JWT_SECRET (HS256)');
  if (secret !== undefined && secret.length < 16)
    throw new ConfigError('JWT_SECRET must be at least 16 characters');
  const maxLifetimeS = read(env, 'JWT_MAX_LIFETIME_S')!;
  const revocationTtlS = read(env, 'REVOCATION_TTL_S');
  if (revocationTtlS !== undefined && maxLifetimeS > 0 && revocationTtlS < maxLifetimeS)
    throw new ConfigError(
      'REVOCATION_TTL_S must be at least JWT_MAX_LIFETIME_S (or revoked tokens come back)',
    );
  const redisUrl = read(env, 'REDIS_URL');
  const redisCluster = read(env, 'REDIS_CLUSTER_NODES');
  const redisSentinels = read(env, 'REDIS_SENTINELS');
  if (redisCluster?.length && redisSentinels?.length)
    throw new ConfigError('set REDIS_CLUSTER_NODES or REDIS_SENTINELS, not both');
  if (
    read(env, 'REDIS_WAIT_REPLICAS')! > 0 &&
    read(env, 'REDIS_WAIT_TIMEOUT_MS')! >= read(env, 'REDIS_COMMAND_TIMEOUT_MS')!
  )
    throw new ConfigError('REDIS_WAIT_TIMEOUT_MS must be below REDIS_COMMAND_TIMEOUT_MS');
  const hook = (name: 'CONNECT' | 'JOIN' | 'PUBLISH'): HookConfig | undefined => {
    const url = read(env, `HOOK_${name}_URL`);
    if (url === undefined) return undefined;
    return {
      url,
      timeoutMs: read(env, `HOOK_${name}_TIMEOUT_MS`)!,
      onFailure: read(env, `HOOK_${name}_ON_FAILURE`)!,
    };
  };
  const webhookUrl = read(env, 'WEBHOOK_URL');
  const webhookSecret = read(env, 'WEBHOOK_SECRET');
  if (webhookUrl !== undefined && (webhookSecret === undefined || webhookSecret.length < 16))
    throw new ConfigError('WEBHOOK_URL needs WEBHOOK_SECRET (at least 16 characters) to sign deliveries');
  if (
    webhookUrl !== undefined &&
    read(env, 'WEBHOOK_TIMEOUT_MS')! + read(env, 'WEBHOOK_RETRY_MAX_MS')! >=
      read(env, 'WEBHOOK_CLAIM_IDLE_MS')!
  )
    throw new ConfigError(
      'WEBHOOK_TIMEOUT_MS + WEBHOOK_RETRY_MAX_MS must be below WEBHOOK_CLAIM_IDLE_MS (a retrying node must touch its events before another node may claim them)',
    );
  const hookSecret = read(env, 'HOOK_SECRET');
  if (hookSecret !== undefined && hookSecret.length < 16)
    throw new ConfigError('HOOK_SECRET must be at least 16 characters');
  const maxMessageBytes = read(env, 'MAX_MESSAGE_BYTES')!;
  const maxFrameBytes = read(env, 'MAX_FRAME_BYTES')!;
  if (maxFrameBytes < maxMessageBytes + 1024)
    throw new ConfigError('MAX_FRAME_BYTES must exceed MAX_MESSAGE_BYTES by at least 1024');
  const slowConsumerBytes = read(env, 'SLOW_CONSUMER_BYTES')!;
  if (read(env, 'MAX_BUFFERED_BYTES')! < slowConsumerBytes + 2 * maxFrameBytes)
    throw new ConfigError(
      'MAX_BUFFERED_BYTES must exceed SLOW_CONSUMER_BYTES by at least 2 × MAX_FRAME_BYTES',
    );
  const config: Config = {
    port: read(env, 'PORT')!,
    host: read(env, 'HOST')!,
    nodeId: read(env, 'NODE_ID') ?? `${hostname()}-${process.pid}`,
    production,
    logLevel: read(env, 'LOG_LEVEL')!,
    redis:
      redisUrl || redisCluster?.length || redisSentinels?.length
        ? {
            url: redisUrl,
            cluster: redisCluster?.length ? redisCluster : undefined,
            sentinels: redisSentinels?.length ? redisSentinels : undefined,
            sentinelName: read(env, 'REDIS_SENTINEL_NAME')!,
            waitReplicas: read(env, 'REDIS_WAIT_REPLICAS')!,
            waitTimeoutMs: read(env, 'REDIS_WAIT_TIMEOUT_MS')!,
            commandTimeoutMs: read(env, 'REDIS_COMMAND_TIMEOUT_MS')!,
            probeTimeoutMs: read(env, 'REDIS_PROBE_TIMEOUT_MS')!,
            keyPrefix: read(env, 'REDIS_KEY_PREFIX')!,
          }
        : undefined,
    jwt: {
      secret: dev ? devSecret() : secret,
      publicKey,
      issuer: read(env, 'JWT_ISSUER'),
      audience: read(env, 'JWT_AUDIENCE'),
      dev,
      devTokens: dev || devTokens,
      maxRoomPatterns: read(env, 'MAX_TOKEN_ROOM_PATTERNS')!,
      maxRoomPatternLength: read(env, 'MAX_TOKEN_ROOM_PATTERN_LENGTH')!,
      allowNoExp: read(env, 'JWT_ALLOW_NO_EXP') === 'true',
      maxLifetimeS,
    },
    revocationTtlS: revocationTtlS ?? (maxLifetimeS > 0 ? maxLifetimeS : 86400),
    apiKey: read(env, 'API_KEY'),
    apiBatchMax: read(env, 'API_BATCH_MAX')!,
    profiling: { enabled: read(env, 'PROFILING') === 'true', maxSeconds: read(env, 'PROFILE_MAX_SECONDS')! },
    allowedOrigins: read(env, 'ALLOWED_ORIGINS') ?? [],
    tokenCookie: read(env, 'TOKEN_COOKIE') ?? '',
    limits: {
      maxMessageBytes,
      maxFrameBytes,
      maxFrameDepth: read(env, 'MAX_FRAME_DEPTH')!,
      maxRoomNameLength: read(env, 'MAX_ROOM_NAME_LENGTH')!,
      maxRoomsPerConnection: read(env, 'MAX_ROOMS_PER_CONNECTION')!,
      maxConnectionsPerUser: read(env, 'MAX_CONNECTIONS_PER_USER')!,
      cmdRate: read(env, 'CMD_RATE')!,
      cmdBurst: read(env, 'CMD_BURST')!,
      userMsgRate: read(env, 'USER_MSG_RATE')!,
      connRatePerIp: read(env, 'CONN_RATE_PER_IP')!,
      maxViolations: read(env, 'MAX_VIOLATIONS')!,
      idleTimeoutS: read(env, 'IDLE_TIMEOUT_S')!,
      slowConsumerBytes: read(env, 'SLOW_CONSUMER_BYTES')!,
      maxBodyDepth: read(env, 'MAX_BODY_DEPTH')!,
      maxInflight: read(env, 'MAX_INFLIGHT_PER_CONNECTION')!,
      replyBytesPerS: read(env, 'REPLY_BYTES_PER_S')!,
      heavyCommandBufferBytes: read(env, 'HEAVY_COMMAND_BUFFER_BYTES')!,
      maxBufferedBytes: read(env, 'MAX_BUFFERED_BYTES')!,
      historyReadConcurrency: read(env, 'HISTORY_READ_CONCURRENCY')!,
      presenceReplyMax: read(env, 'PRESENCE_REPLY_MAX')!,
    },
    history: {
      size: read(env, 'HISTORY_SIZE')!,
      ttlS: read(env, 'HISTORY_TTL_S')!,
      inboxSize: read(env, 'INBOX_SIZE')!,
      inboxTtlS: read(env, 'INBOX_TTL_S')!,
      dedupWindowS: read(env, 'DEDUP_WINDOW_S')!,
    },
    presenceTtlMs: read(env, 'PRESENCE_TTL_MS')!,
    presenceBatchMs: read(env, 'PRESENCE_BATCH_MS')!,
    nativeTopics: read(env, 'NATIVE_TOPICS') === 'true',
    shutdownGraceMs: read(env, 'SHUTDOWN_GRACE_MS')!,
    staticDir: read(env, 'STATIC_DIR'),
    trustProxy: read(env, 'TRUST_PROXY') === 'true',
    hooks: {
      connect: hook('CONNECT'),
      join: hook('JOIN'),
      publish: hook('PUBLISH'),
      maxConcurrency: read(env, 'HOOK_MAX_CONCURRENCY')!,
      maxResponseBytes: read(env, 'HOOK_MAX_RESPONSE_BYTES')!,
      joinCacheMs: read(env, 'HOOK_JOIN_CACHE_MS')!,
      joinCacheSize: read(env, 'HOOK_JOIN_CACHE_SIZE')!,
      secret: hookSecret,
    },
    webhooks: webhookUrl
      ? {
          url: webhookUrl,
          secret: webhookSecret!,
          events: read(env, 'WEBHOOK_EVENTS') ?? [],
          messageRooms: read(env, 'WEBHOOK_MESSAGE_ROOMS') ?? [],
          timeoutMs: read(env, 'WEBHOOK_TIMEOUT_MS')!,
          concurrency: read(env, 'WEBHOOK_CONCURRENCY')!,
          retryMaxMs: read(env, 'WEBHOOK_RETRY_MAX_MS')!,
          claimIdleMs: read(env, 'WEBHOOK_CLAIM_IDLE_MS')!,
          maxAgeS: read(env, 'WEBHOOK_MAX_AGE_S')!,
          retention: read(env, 'WEBHOOK_RETENTION')!,
        }
      : undefined,
  };
  return Object.freeze(config);
}
