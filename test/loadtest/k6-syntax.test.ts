// The k6 scripts cannot run here (no k6 binary), so this checks what can be checked without it: each file parses
// at the language level k6 v0.48 accepts (ES2017, with acorn: esbuild accepts any newer syntax, which is how a
// `catch {` without a binding once broke every script under the real k6), imports only modules k6 v0.48 ships
// (plus relative files), loads with stubbed k6 modules, and its options are coherent (every scenario's exec
// function is exported, a `default` function exists for `k6 run --vus/--duration`, thresholds name metrics that
// exist).
// The JWT minted by lib.js is verified with jsonwebtoken, with k6/crypto and k6/encoding stubbed by node:crypto.
import { parse } from 'acorn';
import { build, type Plugin } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import jwt from 'jsonwebtoken';

const K6_DIR = resolve('loadtest/k6');
const FILES = readdirSync(K6_DIR).filter((f) => f.endsWith('.js'));
const SCRIPTS = FILES.filter((f) => f !== 'lib.js');

/** Parses `source` as an ES2017 module (what k6 v0.48's JavaScript engine accepts); throws a SyntaxError. */
const parseEs2017 = (source: string) => parse(source, { ecmaVersion: 2017, sourceType: 'module' });

// Modules built into k6 v0.48 (https://grafana.com/docs/k6/v0.48.x/javascript-api/).
const K6_MODULES = new Set([
  'k6',
  'k6/crypto',
  'k6/data',
  'k6/encoding',
  'k6/execution',
  'k6/html',
  'k6/http',
  'k6/metrics',
  'k6/net/grpc',
  'k6/ws',
  'k6/experimental/websockets',
  'k6/experimental/timers',
]);

const BUILTIN_METRICS = new Set([
  'checks',
  'iterations',
  'iteration_duration',
  'vus',
  'vus_max',
  'data_sent',
  'data_received',
  'ws_connecting',
  'ws_session_duration',
  'ws_sessions',
  'ws_msgs_sent',
  'ws_msgs_received',
  'ws_ping',
  'http_reqs',
  'http_req_duration',
  'http_req_failed',
]);

// Stubs good enough to evaluate the init context and mint a token.
const STUBS: Record<string, string> = {
  k6: 'export function check(v, sets) { return Object.values(sets).every((f) => f(v)); } export function sleep() {}',
  'k6/ws': 'export default { connect() { throw new Error("not in a test"); } };',
  'k6/http': 'export default { post() { throw new Error("not in a test"); } };',
  'k6/execution':
    'export default { scenario: { name: "x", startTime: Date.now(), iterationInTest: 0 }, vu: { idInTest: 1 } };',
  'k6/data': 'export class SharedArray { constructor(name, fn) { return fn(); } }',
  'k6/metrics': `
    const made = (globalThis.__metrics = globalThis.__metrics || new Set());
    class M { constructor(name) { made.add(name); this.name = name; } add() {} }
    export class Trend extends M {} export class Rate extends M {} export class Counter extends M {} export class Gauge extends M {}`,
  'k6/crypto': `
    import { createHmac } from 'node:crypto';
    export default { hmac(alg, secret, data, enc) {
      if (alg !== 'sha256' || enc !== 'base64rawurl') throw new Error('stub supports sha256/base64rawurl only');
      return createHmac('sha256', secret).update(data).digest('base64url');
    } };`,
  'k6/encoding': `
    export default {
      b64encode(s, enc) { if (enc !== 'rawurl') throw new Error('stub: rawurl only'); return Buffer.from(s).toString('base64url'); },
      b64decode(s, enc, fmt) { if (enc !== 'rawurl' || fmt !== 's') throw new Error('stub: rawurl/s only'); return Buffer.from(s, 'base64url').toString(); },
    };`,
};

function k6Stubs(imported: Set<string>): Plugin {
  return {
    name: 'k6-stubs',
    setup(b) {
      b.onResolve({ filter: /^k6(\/.*)?$/ }, (args) => {
        imported.add(args.path);
        return { path: args.path, namespace: 'k6' };
      });
      b.onLoad({ filter: /.*/, namespace: 'k6' }, (args) => {
        const contents = STUBS[args.path];
        if (contents === undefined) throw new Error(`no stub for ${args.path}`);
        return { contents, loader: 'js', resolveDir: K6_DIR };
      });
    },
  };
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'k6-syntax-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Bundles `entry` with stubbed k6 modules and runs `body` after importing it in a fresh node process. */
async function evaluate(entry: string, body: string, env: Record<string, string> = {}) {
  const imported = new Set<string>();
  const out = join(dir, `${entry.replace(/\W/g, '_')}.mjs`);
  await build({
    stdin: { contents: body, resolveDir: K6_DIR, sourcefile: 'probe.js', loader: 'js' },
    bundle: true,
    format: 'esm',
    platform: 'node',
    write: true,
    outfile: out,
    logLevel: 'silent',
    plugins: [k6Stubs(imported)],
    banner: {
      js: `globalThis.__ENV = ${JSON.stringify(env)}; globalThis.__VU = 1; globalThis.open = () => { throw new Error('open'); };`,
    },
  });
  const stdout = execFileSync(process.execPath, [out], { encoding: 'utf8' });
  return { imported, result: JSON.parse(stdout) as Record<string, unknown> };
}

describe('k6 scripts', () => {
  test('there are the four scenarios', () => {
    expect(SCRIPTS.sort()).toEqual(['connect-storm.js', 'dm.js', 'fanout.js', 'room-chat.js']);
  });

  test.each(FILES)('%s parses as an ES2017 module (k6 v0.48 rejects newer syntax)', (file) => {
    expect(() => parseEs2017(readFileSync(join(K6_DIR, file), 'utf8'))).not.toThrow();
  });

  test.each([
    ['optional catch binding', 'try { f(); } catch { g(); }'],
    ['optional chaining', 'const a = b?.c;'],
    ['nullish coalescing', 'const a = b ?? 1;'],
    ['object spread', 'const a = { ...b };'],
    ['class fields', 'class A { x = 1; }'],
  ])('the ES2017 parser rejects %s, which k6 v0.48 cannot load', (_name, source) => {
    expect(() => parseEs2017(source)).toThrow(SyntaxError);
  });

  test.each(SCRIPTS)('%s imports only k6 v0.48 modules and relative files', async (script) => {
    const result = await build({
      entryPoints: [join(K6_DIR, script)],
      bundle: true,
      format: 'esm',
      write: false,
      metafile: true,
      logLevel: 'silent',
      external: ['k6', 'k6/*'],
    });
    const imports = Object.values(result.metafile.inputs).flatMap((i) => i.imports.map((x) => x.path));
    const bare = imports.filter(
      (p) => !p.startsWith('.') && !p.startsWith('/') && !p.startsWith('loadtest/'),
    );
    expect(bare.filter((p) => !K6_MODULES.has(p))).toEqual([]);
  });

  test.each(SCRIPTS)('%s loads and its options are coherent', async (script) => {
    const probe = `
      import * as m from './${script}';
      const exported = Object.keys(m).filter((k) => typeof m[k] === 'function');
      console.log(JSON.stringify({ options: m.options, exported, metrics: [...globalThis.__metrics] }));`;
    const { result, imported } = await evaluate(script, probe, { JWT_SECRET: 's' });
    for (const mod of imported) expect(K6_MODULES.has(mod)).toBe(true);
    const options = result.options as {
      scenarios: Record<string, { executor: string; exec?: string }>;
      thresholds: Record<string, string[]>;
    };
    const exported = result.exported as string[];
    const metrics = new Set([...(result.metrics as string[]), ...BUILTIN_METRICS]);
    expect(Object.keys(options.scenarios).length).toBeGreaterThan(0);
    for (const s of Object.values(options.scenarios)) {
      expect(['ramping-vus', 'constant-vus']).toContain(s.executor);
      expect(exported).toContain(s.exec ?? 'default');
    }
    // `k6 run --vus N --duration D` replaces the scenarios with one that runs `default`.
    expect(exported).toContain('default');
    // A threshold on a metric with no samples passes in k6: each script asserts that samples exist.
    expect(Object.keys(options.thresholds)).toEqual(expect.arrayContaining(['errors', 'checks']));
    expect(
      Object.entries(options.thresholds).some(([, rules]) => rules.some((r) => /^count\s*>\s*0$/.test(r))),
    ).toBe(true);
    for (const [metric, rules] of Object.entries(options.thresholds)) {
      expect(metrics.has(metric)).toBe(true);
      for (const rule of rules)
        expect(rule).toMatch(/^(p\(\d+(\.\d+)?\)|rate|count|avg|med|max)\s*(<|<=|>|>=)\s*[\d.]+$/);
    }
  });

  test('lib.js mints an HS256 token that jsonwebtoken accepts', async () => {
    const probe = `
      import { tokenOf, userOf } from './lib.js';
      console.log(JSON.stringify({ token: tokenOf(7), user: userOf(7) }));`;
    const { result } = await evaluate('token', probe, { JWT_SECRET: 'k6-secret', USER_PREFIX: 'lt-' });
    expect(result.user).toBe('lt-7');
    const claims = jwt.verify(result.token as string, 'k6-secret', {
      algorithms: ['HS256'],
    }) as jwt.JwtPayload;
    expect(claims.sub).toBe('lt-7');
    expect(claims.exp! - claims.iat!).toBe(3600);
  });

  test('the sequence tracker counts holes as misses and repeats as duplicates', async () => {
    const probe = `
      import { sequenceTracker, delivery, duplicates } from './lib.js';
      const seen = { ok: 0, missed: 0, dup: 0 };
      delivery.add = (v) => (v ? seen.ok++ : seen.missed++);
      duplicates.add = (n) => (seen.dup += n);
      const t = sequenceTracker();
      t.start('r', 10);
      for (const n of [11, 12, 15, 15, 16, 14]) t.see('r', n);
      console.log(JSON.stringify(seen));`;
    const { result } = await evaluate('tracker', probe);
    expect(result).toEqual({ ok: 4, missed: 2, dup: 2 });
  });

  test('a gap counts what it announces as missed once, even after a recovered:false reply counted it', async () => {
    const probe = `
      import { sequenceTracker, delivery, gap } from './lib.js';
      let missed = 0;
      delivery.add = (v) => (v ? 0 : missed++);
      const t = sequenceTracker();
      t.start('r', 10);
      let epoch = gap(t, 'r', 'e1', { room: 'r', from: 11, to: 14, epoch: 'e1' }); // 4 missed
      const afterFirst = missed;
      t.missed('r', 3, 17); // a recovered:false reply counted 15..17
      epoch = gap(t, 'r', epoch, { room: 'r', from: 15, to: 18, epoch: 'e1' }); // only 18 is new
      const afterSecond = missed;
      epoch = gap(t, 'r', epoch, { room: 'r', from: 19, to: null, epoch: 'e2' }); // history reset
      console.log(JSON.stringify({ afterFirst, afterSecond, total: missed, epoch, last: t.last('r') }));`;
    const { result } = await evaluate('gap', probe);
    expect(result).toEqual({ afterFirst: 4, afterSecond: 8, total: 9, epoch: 'e2', last: 0 });
  });

  test.each(SCRIPTS.filter((s) => s !== 'connect-storm.js'))(
    '%s fails the run on duplicates, lost connections and no messages received',
    async (script) => {
      const probe = `import { options } from './${script}'; console.log(JSON.stringify(options.thresholds));`;
      const { result } = await evaluate(`thr-${script}`, probe, { JWT_SECRET: 's' });
      expect(result.duplicates).toEqual(['count<=0']);
      expect(result.connections_lost).toEqual(['count<=0']);
      expect(result.messages_received).toEqual(['count>0']);
      expect(result.checks).toEqual(['rate>=0.99']);
    },
  );
});
