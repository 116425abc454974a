// The committed dashboard JSON and the Kubernetes copies of the dashboards and alert rules are exactly what
// deploy/grafana/generate.ts makes from the sources. After editing deploy/grafana/src/*.ts or
// deploy/prometheus/alerts.yml, regenerate:
//   npx esbuild deploy/grafana/generate.ts --bundle --platform=node --format=esm | node --input-type=module
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { renderAll } from '../../deploy/grafana/src/render';
import { dashboards } from '../../deploy/grafana/src/index';
import { ROOT, read, readYaml } from './lib';

const files = renderAll(ROOT);
const regenerate =
  'run: npx esbuild deploy/grafana/generate.ts --bundle --platform=node --format=esm | node --input-type=module';

describe('generated deploy files are up to date', () => {
  it.each(files.map((f) => [f.path, f] as const))('%s matches its source', (path, file) => {
    const committed = read(path);
    if (file.object === undefined) {
      expect([path, committed === file.content ? 'up to date' : regenerate]).toEqual([path, 'up to date']);
    } else {
      expect(load(committed)).toEqual(file.object);
    }
  });

  it('the dashboards folder holds exactly the generated dashboards', () => {
    const onDisk = readdirSync(join(ROOT, 'deploy/grafana/dashboards')).sort();
    expect(onDisk).toEqual(Object.keys(dashboards).sort());
  });

  it('each dashboard has a unique uid and title, and unique panel ids', () => {
    const uids = Object.values(dashboards).map((d) => d.uid);
    expect(new Set(uids).size).toBe(uids.length);
    for (const d of Object.values(dashboards)) {
      expect(d.uid).toMatch(/^[a-z0-9-]{8,40}$/);
      const ids = (d.panels ?? []).map((p) => p.id);
      expect(new Set(ids).size).toBe(ids.length);
      for (const p of d.panels ?? []) {
        const g = p.gridPos!;
        expect(g.x + g.w).toBeLessThanOrEqual(24);
      }
    }
  });

  it('Grafana provisioning loads the dashboards from where docker-compose mounts them', () => {
    const provider = readYaml('deploy/grafana/provisioning/dashboards/relaychat.yml') as {
      providers: Array<{ options: { path: string } }>;
    };
    const compose = readYaml('docker-compose.yml') as {
      services: { grafana: { volumes: string[]; environment: Record<string, string> } };
    };
    const mount = compose.services.grafana.volumes.find((v) => v.startsWith('./deploy/grafana/dashboards:'));
    expect(mount?.split(':')[1]).toBe(provider.providers[0]!.options.path);
    const home = compose.services.grafana.environment.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH;
    expect(Object.keys(dashboards).map((f) => `${provider.providers[0]!.options.path}/${f}`)).toContain(home);
    const ds = readYaml('deploy/grafana/provisioning/datasources/prometheus.yml') as {
      datasources: Array<{ type: string; url: string }>;
    };
    expect(ds.datasources[0]).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090' });
  });
});
