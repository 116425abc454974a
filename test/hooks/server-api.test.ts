// The server API through real gateways on a real Redis: every route, across nodes, with the socket's validation
// and limits, and the OpenAPI 3.1 document made from the same route table (validated, and complete both ways).
import { Validator } from '@seriousme/openapi-schema-validator';
import { API_ROUTES } from '../../services/gateway/src/http/api';
import {
  startGateway,
  startRedis,
  token,
  TestClient,
  until,
  type GatewayProc,
  type RedisProc,
} from '../helpers/harness';

const KEY = 'server-api-key-0123456789';
let redis: RedisProc;
let a: GatewayProc;
let b: GatewayProc;
let seq = 0;

beforeAll(async () => {
  redis = await startRedis();
  const env = {
    REDIS_URL: redis.url,
    API_KEY: KEY,
    API_BATCH_MAX: '5',
    MAX_MESSAGE_BYTES: '1024',
    MAX_FRAME_BYTES: '8192',
  };
  [a, b] = await Promise.all([startGateway(env), startGateway(env)]);
});
afterAll(async () => {
  await Promise.all([a?.kill(), b?.kill()]);
  await redis?.stop();
});

async function call(
  gw: GatewayProc,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
  auth = true,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${gw.url}${path}`, {
    method,
    headers: {
      ...(auth ? { authorization: `Bearer ${KEY}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('OpenAPI', () => {
  test('/api/openapi.json is a valid OpenAPI 3.1 document, served without the key', async () => {
    const { status, json } = await call(a, 'GET', '/api/openapi.json', undefined, false);
    expect(status).toBe(200);
    expect(json.openapi).toBe('3.1.0');
    const result = await new Validator().validate(json as Parameters<Validator['validate']>[0]);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  test('every route of the table is documented, and every documented operation is served', async () => {
    const doc = (await call(a, 'GET', '/api/openapi.json', undefined, false)).json as {
      paths: Record<string, Record<string, { operationId: string }>>;
    };
    for (const r of API_ROUTES)
      expect(doc.paths[r.path]?.[r.method.toLowerCase()]?.operationId).toBe(r.command);
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.keys(ops).map((m) => [m.toUpperCase() as 'GET' | 'POST', path] as const),
    );
    expect(documented.length).toBe(API_ROUTES.length + 1);
    for (const [method, path] of documented) {
      const concrete = path.replace('{room}', 'probe-room').replace('{user}', 'probe-user');
      const r = await call(a, method, concrete, method === 'POST' ? {} : undefined);
      // Served: a 200, or the route's own validation error; never "no such API route".
      expect([method, path, r.json.error]).not.toEqual([
        method,
        path,
        expect.objectContaining({ code: 'not_found' }),
      ]);
    }
  });
});

test('history pages back through a room, oldest first within a page', async () => {
  const room = `hist-${++seq}`;
  const offsets: number[] = [];
  for (let i = 1; i <= 5; i++)
    offsets.push((await call(a, 'POST', '/api/publish', { room, body: { n: i } })).json.offset as number);
  const page1 = await call(b, 'GET', `/api/rooms/${room}/history?limit=2`);
  expect(page1.status).toBe(200);
  expect((page1.json.messages as { body: { n: number } }[]).map((m) => m.body.n)).toEqual([4, 5]);
  expect(page1.json.offset).toBe(offsets[4]);
  const first = (page1.json.messages as { offset: number }[])[0]!.offset;
  const page2 = await call(b, 'GET', `/api/rooms/${room}/history?limit=2&before=${first}`);
  expect((page2.json.messages as { body: { n: number } }[]).map((m) => m.body.n)).toEqual([2, 3]);
  expect((await call(b, 'GET', `/api/rooms/${room}/history?limit=101`)).json.error).toMatchObject({
    code: 'bad_request',
    message: 'limit must be an integer from 1 to 100',
  });
  expect((await call(b, 'GET', `/api/rooms/${room}/history?before=x`)).status).toBe(400);
});

test('presence, presence counts and the connections of a user, across nodes', async () => {
  const room = `pres-${++seq}`;
  const user = `pat-${seq}`;
  const c1 = await TestClient.connect(a.wsUrl, token(user));
  const c2 = await TestClient.connect(b.wsUrl, token(user));
  const other = await TestClient.connect(b.wsUrl, token(`quin-${seq}`));
  await c1.ok({ type: 'join', room });
  await other.ok({ type: 'join', room });
  const p = await call(a, 'GET', `/api/rooms/${room}/presence`);
  expect(p.status).toBe(200);
  expect({ ...p.json, presence: (p.json.presence as string[]).sort() }).toEqual({
    room,
    presence: [user, `quin-${seq}`].sort(),
    count: 2,
  });
  const counts = await call(b, 'POST', '/api/presence/counts', { rooms: [room, `empty-${seq}`] });
  expect(counts.json).toEqual({ counts: { [room]: 2, [`empty-${seq}`]: 0 } });
  const conns = await call(b, 'GET', `/api/users/${user}/connections`);
  expect(conns.json.count).toBe(2);
  const list = conns.json.connections as { id: string; node: string; connectedAt: number }[];
  expect(list.map((c) => c.id).sort()).toEqual([c1.welcome.session, c2.welcome.session].sort());
  expect(list.map((c) => c.node).sort()).toEqual([a.nodeId, b.nodeId].sort());
  await Promise.all([c1.close(), c2.close(), other.close()]);
  await until(
    'no connections left',
    async () => (await call(a, 'GET', `/api/users/${user}/connections`)).json.count === 0,
  );
});

test('a DM as the server, and as a user (whose own connections get the sent copy)', async () => {
  const to = `rita-${++seq}`;
  const as = `sam-${seq}`;
  const rita = await TestClient.connect(a.wsUrl, token(to));
  const sam = await TestClient.connect(b.wsUrl, token(as));
  const r1 = await call(b, 'POST', '/api/dm', { to, body: { text: 'from the server' } });
  expect(r1.json).toMatchObject({ delivered: 1, live: true, stored: true, duplicate: false });
  expect(await rita.waitFor((f) => f.type === 'dm' && f.id === r1.json.id)).toMatchObject({ from: 'server' });
  const r2 = await call(b, 'POST', '/api/dm', { to, from: as, body: { text: 'hi rita' }, key: 'k1' });
  expect(await rita.waitFor((f) => f.type === 'dm' && f.id === r2.json.id)).toMatchObject({ from: as, to });
  expect(await sam.waitFor((f) => f.type === 'dm' && f.id === r2.json.id)).toMatchObject({ from: as, to });
  const again = await call(b, 'POST', '/api/dm', { to, from: as, body: { text: 'hi rita' }, key: 'k1' });
  expect(again.json).toMatchObject({ id: r2.json.id, duplicate: true });
  expect((await call(b, 'POST', '/api/dm', { to: '', body: 1 })).json.error).toMatchObject({
    code: 'bad_request',
  });
  await Promise.all([rita.close(), sam.close()]);
});

test('server-side join and leave reach every connection of the user on every node', async () => {
  const user = `tess-${++seq}`;
  const room = `ops-${seq}`;
  const onA = await TestClient.connect(a.wsUrl, token(user, { rooms: ['elsewhere'] }));
  const onB = await TestClient.connect(b.wsUrl, token(user));
  const j = await call(a, 'POST', '/api/join', { user, room });
  expect(j.json).toEqual({ user, room, requested: true });
  for (const c of [onA, onB])
    expect(await c.waitFor((f) => f.type === 'joined' && f.room === room)).toMatchObject({ by: 'server' });
  const sent = await call(b, 'POST', '/api/publish', { room, body: 'to the ops room' });
  for (const c of [onA, onB]) await c.waitFor((f) => f.type === 'message' && f.id === sent.json.id);
  // A member now: it may publish there.
  expect((await onA.request({ type: 'publish', room, body: 'ack' })).ok).toBe(true);
  await call(b, 'POST', '/api/leave', { user, room });
  for (const c of [onA, onB])
    expect(await c.waitFor((f) => f.type === 'left')).toEqual({
      type: 'left',
      rooms: [room],
      reason: 'server',
    });
  expect((await onB.request({ type: 'publish', room, body: 'gone' })).error).toMatchObject({
    code: 'not_member',
  });
  expect((await call(a, 'GET', `/api/rooms/${room}/presence`)).json.count).toBe(0);
  await Promise.all([onA.close(), onB.close()]);
});

test('a batch runs its commands in order, each with its own result; over API_BATCH_MAX is too_large', async () => {
  const room = `batch-${++seq}`;
  const r = await call(a, 'POST', '/api/batch', {
    commands: [
      { command: 'publish', room, body: 1 },
      { command: 'publish', room: 'bad room!', body: 2 },
      { command: 'nope' },
      { command: 'batch', commands: [] },
      { command: 'history', room },
    ],
  });
  expect(r.status).toBe(200);
  const results = r.json.results as {
    ok: boolean;
    result?: Record<string, unknown>;
    error?: Record<string, unknown>;
  }[];
  expect(results.map((x) => x.ok)).toEqual([true, false, false, false, true]);
  expect(results[1]!.error).toMatchObject({ code: 'bad_request' });
  expect(results[2]!.error).toMatchObject({ code: 'unknown_type' });
  expect(results[3]!.error).toMatchObject({ code: 'unknown_type' });
  expect((results[4]!.result!.messages as unknown[]).length).toBe(1);
  const tooMany = await call(a, 'POST', '/api/batch', {
    commands: Array.from({ length: 6 }, () => ({ command: 'presence', room })),
  });
  expect(tooMany.status).toBe(413);
  expect(tooMany.json.error).toMatchObject({ code: 'too_large', message: 'at most 5 commands per batch' });
});

test('the same validation, limits and error shape as the socket; the node keeps serving', async () => {
  const c = await TestClient.connect(a.wsUrl, token(`val-${++seq}`));
  const big = 'x'.repeat(2000);
  const viaSocket = await c.request({ type: 'publish', room: 'bad room!', body: 1 });
  const viaApi = await call(a, 'POST', '/api/publish', { room: 'bad room!', body: 1 });
  expect(viaApi.status).toBe(400);
  expect(viaApi.json.error).toEqual(viaSocket.error);
  await c.ok({ type: 'join', room: 'ok-room' });
  const tooBigSocket = await c.request({ type: 'publish', room: 'ok-room', body: big });
  const tooBigApi = await call(a, 'POST', '/api/publish', { room: 'ok-room', body: big });
  expect(tooBigApi.status).toBe(413);
  expect(tooBigApi.json.error).toEqual(tooBigSocket.error);
  expect((await call(a, 'POST', '/api/publish', { room: 'ok-room', body: 1, key: '' })).status).toBe(400);
  expect((await call(a, 'POST', '/api/publish', { room: 'ok-room', body: 1, from: 7 })).status).toBe(400);
  expect((await call(a, 'POST', '/api/publish', '[1,2]')).json.error).toMatchObject({ code: 'bad_request' });
  expect((await call(a, 'POST', '/api/publish', '{"room":')).status).toBe(400);
  expect((await call(a, 'GET', '/api/rooms/%E0%A4%A/presence')).json.error).toMatchObject({
    code: 'bad_request',
  });
  expect((await call(a, 'GET', '/api/users/x/connections', undefined, false)).status).toBe(401);
  expect((await call(a, 'GET', '/api/nothing-here')).status).toBe(404);
  expect((await c.ok({ type: 'ping' })).pong).toBe(true);
  await c.close();
});
