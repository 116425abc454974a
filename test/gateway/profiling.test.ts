// Live profiling (/debug/profile/cpu and /heap): off by default and behind the API key, bounded, one at a time,
// and what it returns is a valid V8 CPU profile (.cpuprofile: what Chrome DevTools and speedscope open) and a
// valid heap snapshot (.heapsnapshot). The node keeps serving while and after it is profiled.
import { TestClient, startGateway, token, type GatewayProc } from '../helpers/harness';

const KEY = 'profiling-test-key-0123456789';
const auth = { authorization: `Bearer ${KEY}` };

interface CpuProfile {
  nodes: Array<{ id: number; callFrame: { functionName: string; url: string }; children?: number[] }>;
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

interface HeapSnapshot {
  snapshot: {
    meta: { node_fields: string[]; node_types: unknown[]; edge_fields: string[]; edge_types: unknown[] };
    node_count: number;
    edge_count: number;
  };
  nodes: number[];
  edges: number[];
  strings: string[];
}

describe('profiling is off unless PROFILING=true and API_KEY are both set', () => {
  const gws: GatewayProc[] = [];
  afterAll(() => Promise.all(gws.map((g) => g.stop())));

  test.each([
    ['by default, even with the API key', { API_KEY: KEY }],
    ['with PROFILING=true but no API key', { PROFILING: 'true' }],
  ])('%s: 404', async (_name, env) => {
    const gw = await startGateway(env);
    gws.push(gw);
    for (const path of ['/debug/profile/cpu?seconds=1', '/debug/profile/heap']) {
      const r = await fetch(`${gw.url}${path}`, { headers: auth });
      expect(r.status).toBe(404);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('not_found');
    }
  });
});

describe('with PROFILING=true and API_KEY', () => {
  let gw: GatewayProc;
  beforeAll(async () => {
    gw = await startGateway({ PROFILING: 'true', API_KEY: KEY, PROFILE_MAX_SECONDS: '5' });
  });
  afterAll(() => gw?.stop());

  const get = (path: string, headers: Record<string, string> = auth) =>
    fetch(`${gw.url}${path}`, { headers });

  test('a missing or wrong key gets 401', async () => {
    expect((await get('/debug/profile/cpu?seconds=1', {})).status).toBe(401);
    expect((await get('/debug/profile/heap', { authorization: `Bearer ${KEY}x` })).status).toBe(401);
  });

  test.each(['0', '6', '-1', '1.5', 'abc', '99999999999', ''])(
    'seconds=%p is refused with 400',
    async (s) => {
      const r = await get(`/debug/profile/cpu?seconds=${s}`);
      expect(r.status).toBe(400);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('bad_request');
    },
  );

  test('a CPU profile of traffic is a valid .cpuprofile, and a second request meanwhile gets 409', async () => {
    const alice = await TestClient.connect(gw.wsUrl, token('alice'));
    await alice.ok({ type: 'join', room: 'prof' });
    const started = Date.now();
    const profiling = get('/debug/profile/cpu?seconds=2');
    // One profile at a time, whatever the kind.
    const [second, third] = await Promise.all([
      get('/debug/profile/cpu?seconds=1'),
      get('/debug/profile/heap'),
    ]);
    expect([second.status, third.status]).toEqual([409, 409]);
    // The node serves while it is profiled.
    for (let i = 0; i < 20; i++) await alice.ok({ type: 'publish', room: 'prof', body: `m${i}` });
    const r = await profiling;
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-disposition')).toMatch(/attachment; filename=".+\.cpuprofile"/);
    const p = (await r.json()) as CpuProfile;
    expect(p.nodes.length).toBeGreaterThan(1);
    const ids = new Set(p.nodes.map((n) => n.id));
    for (const n of p.nodes) {
      expect(typeof n.callFrame.functionName).toBe('string');
      for (const c of n.children ?? []) expect(ids.has(c)).toBe(true);
    }
    expect(p.nodes.some((n) => n.callFrame.functionName === '(root)')).toBe(true);
    expect(p.samples.length).toBeGreaterThan(0);
    expect(p.timeDeltas).toHaveLength(p.samples.length);
    for (const s of p.samples) expect(ids.has(s)).toBe(true);
    expect(p.endTime - p.startTime).toBeGreaterThanOrEqual(1_900_000); // microseconds
    // Free again, and still serving.
    expect((await alice.ok({ type: 'ping' })).pong).toBe(true);
    await alice.close();
  }, 20_000);

  test('a heap snapshot is a valid .heapsnapshot', async () => {
    const r = await get('/debug/profile/heap');
    expect(r.status).toBe(200);
    expect(r.headers.get('content-disposition')).toMatch(/attachment; filename=".+\.heapsnapshot"/);
    const h = (await r.json()) as HeapSnapshot;
    const meta = h.snapshot.meta;
    expect(meta.node_fields).toEqual(
      expect.arrayContaining(['type', 'name', 'id', 'self_size', 'edge_count']),
    );
    expect(meta.edge_fields).toEqual(expect.arrayContaining(['type', 'name_or_index', 'to_node']));
    expect(h.snapshot.node_count).toBeGreaterThan(1000);
    expect(h.nodes).toHaveLength(h.snapshot.node_count * meta.node_fields.length);
    expect(h.edges).toHaveLength(h.snapshot.edge_count * meta.edge_fields.length);
    expect(h.strings.length).toBeGreaterThan(0);
    const c = await TestClient.connect(gw.wsUrl, token('bob'));
    expect((await c.ok({ type: 'ping' })).pong).toBe(true);
    await c.close();
  }, 30_000);

  test('other /debug/profile/ paths and methods are refused', async () => {
    expect((await get('/debug/profile/other')).status).toBe(404);
    const r = await fetch(`${gw.url}/debug/profile/heap`, { method: 'POST', headers: auth });
    expect(r.status).toBe(405);
  });
});
