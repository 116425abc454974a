// The server API as one route table: each route's method, path, parameters, body and answer schemas, and the
// function that runs it. The dispatcher, POST /api/batch and the OpenAPI document (http/openapi.ts) are all made
// from this table, so the document cannot drift from what is served. Validation is the socket commands' own
// (ServerApi.validate runs protocol/commands.ts), so both answer the same error codes for the same input.
import { UnavailableError, type Revocation } from '../engine/engine';
import {
  ERROR_CODES,
  RawJson,
  isErrorCode,
  ProtocolError,
  validUserId,
  type DirectMessageReply,
  type HistoryResult,
  type ParsedCommand,
  type PublishReply,
} from '../../../../protocol';

/** What the API needs of the node (http/api-handlers.ts and the engine provide it). */
export interface ServerApi {
  /** Parses a socket command (without id) with the socket's limits; throws ProtocolError. */
  validate(command: Record<string, unknown>): ParsedCommand;
  validUser(user: unknown, field?: string): string;
  publish(room: string, body: string, key: string | undefined, from: string): Promise<PublishReply>;
  dm(to: string, body: string, key: string | undefined, from: string): Promise<DirectMessageReply>;
  /** `messages` are the stored frames, written into the answer as stored. */
  history(
    room: string,
    limit: number,
    before?: number,
  ): Promise<Omit<HistoryResult, 'messages'> & { messages: RawJson[] }>;
  presence(room: string): Promise<string[]>;
  connections(user: string): Promise<{ id: string; info: Record<string, unknown> }[]>;
  disconnect(user: string): Promise<void>;
  roomForUser(user: string, kind: 'join' | 'leave', room: string): Promise<void>;
  /** Most commands in one POST /api/batch (API_BATCH_MAX). */
  batchMax: number;
  /** How long a revocation is kept when the call names no expiry. */
  revocationTtlS: number;
  revoke(r: Revocation): Promise<void>;
}

/** Longest a revocation may be kept (and the largest `ttl` a revoke call may ask for). */
const MAX_REVOCATION_S = 31_536_000;

const validId = validUserId;

function revocationTtl(api: ServerApi, args: Record<string, unknown>): number {
  if (args.ttl !== undefined && !(Number.isInteger(args.ttl) && (args.ttl as number) >= 1))
    throw new ProtocolError('bad_request', 'ttl must be a positive integer (seconds)');
  return Math.min((args.ttl as number | undefined) ?? api.revocationTtlS, MAX_REVOCATION_S);
}

export type Schema = Record<string, unknown>;

export interface Param {
  name: string;
  in: 'path' | 'query';
  type: 'string' | 'integer';
  required: boolean;
  description: string;
}

export interface ApiRoute {
  /** The command name in POST /api/batch, and the OpenAPI operationId. */
  command: string;
  method: 'GET' | 'POST';
  /** OpenAPI path template, e.g. /api/rooms/{room}/history. */
  path: string;
  summary: string;
  description?: string;
  params?: Param[];
  /** JSON body schema (POST). */
  body?: Schema;
  response: Schema;
  /** false: not usable in a batch. */
  batch?: boolean;
  /** false: served without the API key. */
  auth?: boolean;
  run(api: ServerApi, args: Record<string, unknown>): Promise<unknown>;
}

// ----- schemas shared by the routes -----
const str = (description: string, extra: Schema = {}): Schema => ({ type: 'string', description, ...extra });
const int = (description: string, extra: Schema = {}): Schema => ({ type: 'integer', description, ...extra });
const room = str('Room name: 1..MAX_ROOM_NAME_LENGTH (128) characters of A-Z a-z 0-9 _ - . : @', {
  minLength: 1,
});
const user = str('User id, 1-256 characters', { minLength: 1, maxLength: 256 });
const key = str('Idempotency key: a repeat within DEDUP_WINDOW_S returns the first result', {
  minLength: 1,
  maxLength: 64,
});
const from = str('Sender shown to receivers (a user id); default "server"', { minLength: 1, maxLength: 256 });
const body = { description: 'Any JSON value; at most MAX_MESSAGE_BYTES serialized' };
const stored: Schema = {
  type: 'object',
  required: ['id', 'offset', 'epoch', 'ts', 'duplicate'],
  properties: {
    id: str('Message id'),
    offset: int('Offset in the room history (or the recipient inbox)'),
    epoch: str('History epoch'),
    ts: int('Server time, ms since epoch'),
    duplicate: { type: 'boolean', description: 'true when the key was seen before: nothing new stored' },
  },
};
const obj = (properties: Record<string, Schema>, required: string[]): Schema => ({
  type: 'object',
  required,
  properties,
  additionalProperties: false,
});
const presenceAnswer = obj(
  { room, presence: { type: 'array', items: user }, count: int('Number of users present') },
  ['room', 'presence', 'count'],
);

function field(args: Record<string, unknown>, name: string): unknown {
  return args[name];
}

function fromOf(api: ServerApi, args: Record<string, unknown>): string {
  return args.from === undefined ? 'server' : api.validUser(args.from, 'from');
}

/** Every route of the server API. */
export const API_ROUTES: ApiRoute[] = [
  {
    command: 'publish',
    method: 'POST',
    path: '/api/publish',
    summary: 'Publish a message to a room',
    description:
      'Stored, then delivered to every member on every node, exactly like a client `publish` (the publish hook is not called).',
    body: obj({ room, body, key, from }, ['room', 'body']),
    response: stored,
    async run(api, args) {
      const c = api.validate({ type: 'publish', room: args.room, body: args.body, key: args.key });
      if (c.type !== 'publish') throw new ProtocolError('bad_request', 'not a publish');
      return api.publish(c.room, c.body, c.key, fromOf(api, args));
    },
  },
  {
    command: 'dm',
    method: 'POST',
    path: '/api/dm',
    summary: 'Send a direct message, as a user or as the server',
    description:
      "Stored in the recipient's inbox and delivered to all its connections. With `from` a user id, a copy goes to that user's inbox too (its connections see what it sent), as for a client `dm`.",
    body: obj({ to: user, body, key, from }, ['to', 'body']),
    response: {
      ...stored,
      required: [...(stored.required as string[]), 'delivered', 'live', 'stored'],
      properties: {
        ...(stored.properties as Schema),
        delivered: int('Live connections of the recipient when it was sent'),
        live: { type: 'boolean' },
        stored: { type: 'boolean' },
      },
    },
    async run(api, args) {
      const c = api.validate({ type: 'dm', to: args.to, body: args.body, key: args.key });
      if (c.type !== 'dm') throw new ProtocolError('bad_request', 'not a dm');
      return api.dm(c.to, c.body, c.key, fromOf(api, args));
    },
  },
  {
    command: 'history',
    method: 'GET',
    path: '/api/rooms/{room}/history',
    summary: "A page of a room's history",
    description:
      'The `limit` newest messages before offset `before` (or the newest), oldest first. Page back with `before` = the first offset of the page.',
    params: [
      { name: 'room', in: 'path', type: 'string', required: true, description: 'Room name' },
      { name: 'limit', in: 'query', type: 'integer', required: false, description: '1-100, default 50' },
      { name: 'before', in: 'query', type: 'integer', required: false, description: 'An offset (exclusive)' },
    ],
    response: obj(
      {
        room,
        offset: int('Latest offset of the room'),
        epoch: str('History epoch'),
        messages: {
          type: 'array',
          items: { type: 'object', description: 'Message events as clients get them' },
        },
      },
      ['room', 'offset', 'epoch', 'messages'],
    ),
    async run(api, args) {
      const c = api.validate({ type: 'history', room: args.room, limit: args.limit, before: args.before });
      if (c.type !== 'history') throw new ProtocolError('bad_request', 'not a history');
      return api.history(c.room, c.limit, c.before);
    },
  },
  {
    command: 'presence',
    method: 'GET',
    path: '/api/rooms/{room}/presence',
    summary: 'Users present in a room, and how many',
    params: [{ name: 'room', in: 'path', type: 'string', required: true, description: 'Room name' }],
    response: presenceAnswer,
    async run(api, args) {
      const c = api.validate({ type: 'presence', room: args.room });
      if (c.type !== 'presence') throw new ProtocolError('bad_request', 'not a presence');
      const presence = await api.presence(c.room);
      return { room: c.room, presence, count: presence.length };
    },
  },
  {
    command: 'presenceLegacy',
    method: 'GET',
    path: '/api/presence/{room}',
    summary: 'Users present in a room (the first API; see /api/rooms/{room}/presence)',
    params: [{ name: 'room', in: 'path', type: 'string', required: true, description: 'Room name' }],
    response: obj({ room, presence: { type: 'array', items: user } }, ['room', 'presence']),
    batch: false,
    async run(api, args) {
      const c = api.validate({ type: 'presence', room: args.room });
      if (c.type !== 'presence') throw new ProtocolError('bad_request', 'not a presence');
      return { room: c.room, presence: await api.presence(c.room) };
    },
  },
  {
    command: 'presenceCounts',
    method: 'POST',
    path: '/api/presence/counts',
    summary: 'How many users are present in each of several rooms',
    body: obj({ rooms: { type: 'array', items: room, minItems: 1, maxItems: 100 } }, ['rooms']),
    response: obj({ counts: { type: 'object', additionalProperties: { type: 'integer' } } }, ['counts']),
    async run(api, args) {
      const rooms = field(args, 'rooms');
      if (!Array.isArray(rooms) || rooms.length === 0 || rooms.length > 100)
        throw new ProtocolError('bad_request', 'rooms must be a list of 1-100 room names');
      for (const r of rooms) api.validate({ type: 'presence', room: r });
      const counts: Record<string, number> = {};
      const lists = await Promise.all((rooms as string[]).map((r) => api.presence(r)));
      (rooms as string[]).forEach((r, i) => (counts[r] = lists[i]!.length));
      return { counts };
    },
  },
  {
    command: 'connections',
    method: 'GET',
    path: '/api/users/{user}/connections',
    summary: "A user's live connections on every node",
    params: [{ name: 'user', in: 'path', type: 'string', required: true, description: 'User id' }],
    response: obj(
      {
        user,
        count: int('Number of connections'),
        connections: {
          type: 'array',
          items: {
            type: 'object',
            required: ['id'],
            properties: {
              id: str('The connection (the `session` of its welcome)'),
              node: str('The node it is on'),
              connectedAt: int('ms since epoch'),
            },
          },
        },
      },
      ['user', 'count', 'connections'],
    ),
    async run(api, args) {
      const u = api.validUser(args.user);
      const list = await api.connections(u);
      return {
        user: u,
        count: list.length,
        connections: list.map((c) => ({ id: c.id, node: c.info.node, connectedAt: c.info.connectedAt })),
      };
    },
  },
  {
    command: 'join',
    method: 'POST',
    path: '/api/join',
    summary: 'Make every connection of a user join a room, on every node',
    description:
      'Each connection of the user that is not yet a member joins (without the rooms limits or the join hook) and gets a `joined` event; connections opened later do not. Answered once every node was asked.',
    body: obj({ user, room }, ['user', 'room']),
    response: obj({ user, room, requested: { type: 'boolean', const: true } }, ['user', 'room', 'requested']),
    async run(api, args) {
      const u = api.validUser(args.user);
      const c = api.validate({ type: 'join', room: args.room });
      if (c.type !== 'join') throw new ProtocolError('bad_request', 'not a join');
      await api.roomForUser(u, 'join', c.room);
      return { user: u, room: c.room, requested: true };
    },
  },
  {
    command: 'leave',
    method: 'POST',
    path: '/api/leave',
    summary: 'Make every connection of a user leave a room, on every node',
    description: 'Each member connection of the user leaves and gets a `left` event.',
    body: obj({ user, room }, ['user', 'room']),
    response: obj({ user, room, requested: { type: 'boolean', const: true } }, ['user', 'room', 'requested']),
    async run(api, args) {
      const u = api.validUser(args.user);
      const c = api.validate({ type: 'leave', room: args.room });
      if (c.type !== 'leave') throw new ProtocolError('bad_request', 'not a leave');
      await api.roomForUser(u, 'leave', c.room);
      return { user: u, room: c.room, requested: true };
    },
  },
  {
    command: 'disconnect',
    method: 'POST',
    path: '/api/disconnect',
    summary: 'Close every connection of a user, on every node (close code 4003)',
    body: obj({ user }, ['user']),
    response: obj({ disconnected: { type: 'boolean', const: true } }, ['disconnected']),
    async run(api, args) {
      await api.disconnect(api.validUser(args.user));
      return { disconnected: true };
    },
  },
  {
    command: 'revokeToken',
    method: 'POST',
    path: '/api/revoke-token',
    summary: 'Revoke one token by its jti, on every node',
    description:
      'Connections using it are closed with 4004; an upgrade or `refresh` with it is refused. Kept until `exp` (the token expiry, seconds since epoch) or for `ttl` seconds (default REVOCATION_TTL_S).',
    body: obj(
      { jti: str('The token id'), exp: int('The token expiry, s since epoch'), ttl: int('Seconds') },
      ['jti'],
    ),
    response: obj(
      {
        revoked: { type: 'boolean', const: true },
        jti: str('The token id'),
        expiresAt: int('ms since epoch'),
      },
      ['revoked', 'jti', 'expiresAt'],
    ),
    async run(api, args) {
      const now = Date.now();
      const ttlS = revocationTtl(api, args);
      if (!validId(args.jti)) throw new ProtocolError('bad_request', 'expected {"jti","exp"?,"ttl"?}');
      if (args.exp !== undefined && !(typeof args.exp === 'number' && Number.isFinite(args.exp)))
        throw new ProtocolError('bad_request', 'exp must be the token expiry in seconds since epoch');
      const expiresAt =
        args.exp !== undefined
          ? Math.min((args.exp as number) * 1000, now + MAX_REVOCATION_S * 1000)
          : now + ttlS * 1000;
      // A token already expired is refused anyway: nothing to keep.
      if (expiresAt > now) await api.revoke({ kind: 'jti', jti: args.jti, expiresAt });
      return { revoked: true, jti: args.jti, expiresAt };
    },
  },
  {
    command: 'revokeUser',
    method: 'POST',
    path: '/api/revoke-user',
    summary: 'Revoke every token of a user issued until now, on every node',
    description:
      'Tokens with `iat` before `issuedBefore` (or without `iat`) are refused, and connections using them closed with 4004. Kept for `ttl` seconds (default REVOCATION_TTL_S).',
    body: obj({ user, ttl: int('Seconds') }, ['user']),
    response: obj(
      {
        revoked: { type: 'boolean', const: true },
        user,
        issuedBefore: int('s since epoch'),
        expiresAt: int('ms since epoch'),
      },
      ['revoked', 'user', 'issuedBefore', 'expiresAt'],
    ),
    async run(api, args) {
      const now = Date.now();
      const ttlS = revocationTtl(api, args);
      if (!validId(args.user)) throw new ProtocolError('bad_request', 'expected {"user","ttl"?}');
      // Every token with iat before the next second: the current second's tokens included.
      const issuedBefore = Math.floor(now / 1000) + 1;
      const expiresAt = now + ttlS * 1000;
      await api.revoke({ kind: 'user', user: args.user, issuedBefore, expiresAt });
      return { revoked: true, user: args.user, issuedBefore, expiresAt };
    },
  },
  {
    command: 'batch',
    method: 'POST',
    path: '/api/batch',
    summary: 'Several commands in one request',
    description:
      'Runs the commands in order, each as its own route would (`command` is the route name: publish, dm, history, presence, presenceCounts, connections, join, leave, disconnect, revokeToken, revokeUser; the other fields are its body or parameters). One result per command, in order; a failed command does not stop the others. At most API_BATCH_MAX commands.',
    body: obj(
      {
        commands: {
          type: 'array',
          minItems: 1,
          items: {
            type: 'object',
            required: ['command'],
            properties: { command: str('A route name') },
          },
        },
      },
      ['commands'],
    ),
    response: obj(
      {
        results: {
          type: 'array',
          items: {
            oneOf: [
              obj({ ok: { const: true }, result: { type: 'object' } }, ['ok', 'result']),
              obj({ ok: { const: false }, error: { $ref: '#/components/schemas/ErrorBody' } }, [
                'ok',
                'error',
              ]),
            ],
          },
        },
      },
      ['results'],
    ),
    batch: false,
    async run(api, args) {
      const commands = field(args, 'commands');
      if (!Array.isArray(commands) || commands.length === 0)
        throw new ProtocolError('bad_request', 'commands must be a non-empty list');
      if (commands.length > api.batchMax)
        throw new ProtocolError('too_large', `at most ${api.batchMax} commands per batch`);
      const results: unknown[] = [];
      for (const command of commands) {
        try {
          if (typeof command !== 'object' || command === null || Array.isArray(command))
            throw new ProtocolError('bad_request', 'each command must be an object');
          const name = (command as Record<string, unknown>).command;
          const route = API_ROUTES.find((r) => r.command === name && r.batch !== false);
          if (!route)
            throw new ProtocolError('unknown_type', `unknown command: ${String(name).slice(0, 64)}`);
          results.push({ ok: true, result: await route.run(api, command as Record<string, unknown>) });
        } catch (err) {
          const e = errorOf(err);
          if (!e) throw err;
          results.push({ ok: false, error: e.body.error });
        }
      }
      return { results };
    },
  },
];

export interface ApiErrorBody {
  error: { code: string; message: string; retryable: boolean };
}

export function apiErrorBody(code: string, message: string): ApiErrorBody {
  return {
    error: {
      code,
      message,
      retryable: isErrorCode(code) && ERROR_CODES[code].retryable,
    },
  };
}

/** A ProtocolError (or storage failure) as an API error; undefined for anything else (a bug). */
export function errorOf(err: unknown): { status: number; body: ApiErrorBody } | undefined {
  if (err instanceof ProtocolError)
    return { status: ERROR_CODES[err.code].status, body: apiErrorBody(err.code, err.message) };
  if (err instanceof UnavailableError)
    return { status: 503, body: apiErrorBody('unavailable', 'storage unavailable, retry') };
  return undefined;
}

/** Matches a request to a route; path parameters decoded, query parameters typed. Throws ProtocolError. */
export function matchRoute(
  method: string,
  path: string,
  query: URLSearchParams,
): { route: ApiRoute; params: Record<string, unknown> } | undefined {
  for (const route of API_ROUTES) {
    const names: string[] = [];
    const pattern = new RegExp(
      `^${route.path.replace(/[.+?^$()|[\]\\]/g, '\\$&').replace(/\{(\w+)\}/g, (_, n: string) => {
        names.push(n);
        return '([^/]*)';
      })}$`,
    );
    const m = pattern.exec(path);
    if (!m || route.method !== method) continue;
    const params: Record<string, unknown> = {};
    names.forEach((n, i) => {
      try {
        params[n] = decodeURIComponent(m[i + 1]!);
      } catch {
        throw new ProtocolError('bad_request', `${n} is not valid percent-encoding`);
      }
    });
    for (const p of route.params ?? []) {
      if (p.in !== 'query') continue;
      const v = query.get(p.name);
      if (v === null) continue;
      if (p.type === 'integer') {
        if (!/^-?\d{1,16}$/.test(v)) throw new ProtocolError('bad_request', `${p.name} must be an integer`);
        params[p.name] = Number(v);
      } else params[p.name] = v;
    }
    return { route, params };
  }
  return undefined;
}
