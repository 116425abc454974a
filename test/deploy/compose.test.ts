// The docker-compose cluster hangs together: HAProxy balances exactly the gateway services, Prometheus scrapes
// exactly them, the gateways get only env vars the config module reads, and Docker waits long enough for a
// drain. (`docker-compose config` itself runs in .ci/deploy-checks.sh.)
import { ENV_NAMES } from '../../services/gateway/src/config';
import { read, readYaml } from './lib';

interface Service {
  environment?: Record<string, string>;
  stop_grace_period?: string;
  ports?: string[];
  profiles?: string[];
  command?: string[] | string;
  volumes?: string[];
  image?: string;
}
const compose = readYaml('docker-compose.yml') as { services: Record<string, Service> };
const gateways = Object.keys(compose.services).filter((n) => /^gw\d+$/.test(n));
const haproxy = read('deploy/haproxy/haproxy.cfg');
const prometheus = readYaml('deploy/prometheus/prometheus.yml') as {
  scrape_configs: Array<{ job_name: string; static_configs: Array<{ targets: string[] }> }>;
};

describe('docker-compose cluster', () => {
  it('runs three gateways with distinct NODE_IDs on one Redis with persistence', () => {
    expect(gateways).toEqual(['gw1', 'gw2', 'gw3']);
    expect(gateways.map((g) => compose.services[g]!.environment?.NODE_ID)).toEqual(gateways);
    for (const g of gateways) expect(compose.services[g]!.environment?.REDIS_URL).toBe('redis://redis:6379');
    expect(compose.services.redis!.command).toEqual(expect.arrayContaining(['--appendonly', 'yes']));
    expect(compose.services.redis!.volumes?.some((v) => v.endsWith(':/data'))).toBe(true);
  });

  it('gives the gateways only env vars services/gateway/src/config.ts reads', () => {
    for (const g of gateways) {
      const unknown = Object.keys(compose.services[g]!.environment ?? {}).filter(
        (k) => !(ENV_NAMES as readonly string[]).includes(k),
      );
      expect([g, unknown]).toEqual([g, []]);
    }
  });

  it('lets a gateway finish its drain before Docker kills it', () => {
    for (const g of gateways) {
      const s = compose.services[g]!;
      const grace = Number(/^(\d+)s$/.exec(s.stop_grace_period ?? '10s')![1]) * 1000;
      const drain = Number(s.environment?.SHUTDOWN_GRACE_MS ?? '10000');
      expect(grace).toBeGreaterThan(drain + 5000);
    }
  });

  it('HAProxy balances exactly the gateway services, least connections first, checking /readyz', () => {
    const servers = [...haproxy.matchAll(/^\s*server\s+(\S+)\s+(\S+):(\d+)/gm)].map((m) => [
      m[1],
      m[2],
      m[3],
    ]);
    expect(servers).toEqual(gateways.map((g) => [g, g, compose.services[g]!.environment?.PORT ?? '8080']));
    expect(haproxy).toMatch(/^\s*balance\s+leastconn\s*$/m);
    expect(haproxy).toMatch(
      /^\s*http-check\s+send\s+meth\s+GET\s+uri\s+\/readyz\s+ver\s+HTTP\/1\.1\s+hdr\s+Host\s+\S+\s*$/m,
    );
    expect(haproxy).toMatch(/^\s*timeout\s+tunnel\s+1h\s*$/m);
    expect(haproxy).toMatch(/^\s*bind\s+:8080\s*$/m);
    expect(compose.services.haproxy!.ports).toContain('8080:8080');
  });

  it('Prometheus scrapes exactly the gateway services as job "gateway"', () => {
    const job = prometheus.scrape_configs.find((j) => j.job_name === 'gateway');
    expect(job?.static_configs.flatMap((s) => s.targets)).toEqual(gateways.map((g) => `${g}:8080`));
  });

  it('the k6 service only runs under the load profile, against the balancer', () => {
    const k6 = compose.services.k6!;
    expect(k6.profiles).toEqual(['load']);
    expect(k6.environment?.WS_URL).toBe('ws://haproxy:8080/ws');
    expect(k6.environment?.HTTP_URL).toBe('http://haproxy:8080');
    expect(k6.environment?.JWT_SECRET).toBe(compose.services.gw1!.environment?.JWT_SECRET);
    expect(k6.volumes).toContain('./loadtest/k6:/scripts:ro');
    expect(k6.image).toMatch(/^grafana\/k6:1\.\d+\.\d+$/);
  });

  it('the per-address connection limit is a variable, so a load run can raise it without editing the file', () => {
    for (const gw of ['gw1', 'gw2', 'gw3'])
      expect(compose.services[gw]!.environment?.CONN_RATE_PER_IP).toBe('${CONN_RATE_PER_IP:-50}');
  });

  it('publishes the page (8080), Grafana (3000) and Prometheus (9090)', () => {
    expect(compose.services.grafana!.ports).toContain('3000:3000');
    expect(compose.services.prometheus!.ports).toContain('9090:9090');
  });
});
