// Every setting the config module reads is documented in the README's table and in docs/OPERATIONS.md, so the
// documents cannot fall behind the code. `HOOK_<NAME>_…` rows cover the per-hook settings.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../helpers/harness';

const config = readFileSync(join(ROOT, 'services/gateway/src/config.ts'), 'utf8');
const names = [...config.matchAll(/^ {2}([A-Z][A-Z0-9_]+): \{/gm)].map((m) => m[1]!);

function documented(doc: string, name: string): boolean {
  if (doc.includes(`\`${name}\``) || doc.includes(`${name},`) || doc.includes(`, ${name}`)) return true;
  const perHook = /^HOOK_(CONNECT|JOIN|PUBLISH)_(TIMEOUT_MS|ON_FAILURE)$/.exec(name);
  return perHook !== null && doc.includes(`HOOK_<NAME>_${perHook[2]}`);
}

test('the config module reads some settings (the pattern still matches its ENV table)', () => {
  expect(names.length).toBeGreaterThan(60);
  expect(names).toContain('MAX_BODY_DEPTH');
});

test.each(['README.md', 'docs/OPERATIONS.md'])('%s documents every setting', (file) => {
  const doc = readFileSync(join(ROOT, file), 'utf8');
  expect(names.filter((n) => !documented(doc, n))).toEqual([]);
});
