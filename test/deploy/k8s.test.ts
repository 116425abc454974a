// The Kubernetes manifests, checked offline: every object of base/ and of the rendered dev and prod overlays
// (`kubectl kustomize`) validated against the Kubernetes schemas (kubernetes-models `validate()`), type-checked
// against the same models' TypeScript interfaces (which, unlike the schemas, reject unknown fields such as a
// misspelt `readinesProbe`), and then checked for what schemas cannot see: selectors that select nothing,
// ports that do not line up, probe paths, env vars the gateway does not read, a drain longer than the grace
// period.
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadAll } from 'js-yaml';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2';
import { Ingress, NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { ENV_NAMES } from '../../services/gateway/src/config';
import { ROOT, alertRules, filesUnder, readYaml, readYamlAll } from './lib';

// ---------------------------------------------------------------------------------------------------------------
// Loose views of the objects (the models validate the full shape; these are only what the checks below read).

type Labels = Record<string, string>;
interface Obj {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Labels; annotations?: Labels };
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  spec?: any;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}
interface ContainerPort {
  name?: string;
  containerPort: number;
}
interface Probe {
  httpGet?: { path?: string; port: string | number };
  tcpSocket?: { port: string | number };
  exec?: { command: string[] };
}
interface Container {
  name: string;
  ports?: ContainerPort[];
  env?: Array<{ name: string }>;
  envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }>;
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  startupProbe?: Probe;
  lifecycle?: { preStop?: { exec?: { command: string[] } } };
  resources?: { requests?: Labels; limits?: Labels };
  securityContext?: {
    allowPrivilegeEscalation?: boolean;
    readOnlyRootFilesystem?: boolean;
    runAsNonRoot?: boolean;
  };
}
interface PodTemplate {
  metadata: { labels: Labels };
  spec: {
    containers: Container[];
    terminationGracePeriodSeconds?: number;
    securityContext?: { runAsNonRoot?: boolean; runAsUser?: number };
  };
}

const MODELS: Record<string, { new (data: never): { validate(): void } }> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
  'networking.k8s.io/v1/Ingress': Ingress,
  'networking.k8s.io/v1/NetworkPolicy': NetworkPolicy,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
};
/** Type names for the strict (unknown-field) check: module path under kubernetes-models and interface. */
const INTERFACES: Record<string, [string, string]> = {
  'v1/Namespace': ['v1/Namespace', 'INamespace'],
  'v1/ConfigMap': ['v1/ConfigMap', 'IConfigMap'],
  'v1/Secret': ['v1/Secret', 'ISecret'],
  'v1/Service': ['v1/Service', 'IService'],
  'apps/v1/Deployment': ['apps/v1/Deployment', 'IDeployment'],
  'apps/v1/StatefulSet': ['apps/v1/StatefulSet', 'IStatefulSet'],
  'autoscaling/v2/HorizontalPodAutoscaler': [
    'autoscaling/v2/HorizontalPodAutoscaler',
    'IHorizontalPodAutoscaler',
  ],
  'networking.k8s.io/v1/Ingress': ['networking.k8s.io/v1/Ingress', 'IIngress'],
  'networking.k8s.io/v1/NetworkPolicy': ['networking.k8s.io/v1/NetworkPolicy', 'INetworkPolicy'],
  'policy/v1/PodDisruptionBudget': ['policy/v1/PodDisruptionBudget', 'IPodDisruptionBudget'],
};
const CRDS = new Set(['monitoring.coreos.com/v1/ServiceMonitor', 'monitoring.coreos.com/v1/PrometheusRule']);
const typeKey = (o: Obj) => `${o.apiVersion}/${o.kind}`;
const id = (o: Obj) => `${o.kind}/${o.metadata.name}`;

function kustomize(dir: string): Obj[] {
  let out: string;
  try {
    out = execFileSync('kubectl', ['kustomize', join(ROOT, dir)], { encoding: 'utf8', stdio: 'pipe' });
  } catch (err) {
    const e = err as { code?: string; stderr?: string };
    if (e.code === 'ENOENT')
      throw new Error(
        'kubectl is not installed: it renders the kustomize overlays. Any kubectl from 1.20 on will do; ' +
          "`.ci/run` installs Debian's kubernetes-client when none is present",
      );
    throw new Error(`kubectl kustomize ${dir} failed: ${e.stderr ?? String(err)}`);
  }
  return loadAll(out).filter(Boolean) as Obj[];
}

const BASE_FILES = filesUnder('deploy/k8s/base', ['.yaml', '.yml']).filter(
  (f) => !f.endsWith('kustomization.yaml'),
);
const raw: Array<[string, Obj]> = BASE_FILES.flatMap((f) =>
  readYamlAll(f).map((o): [string, Obj] => [f, o as Obj]),
);
const builds: Record<string, Obj[]> = {
  base: kustomize('deploy/k8s/base'),
  dev: kustomize('deploy/k8s/overlays/dev'),
  prod: kustomize('deploy/k8s/overlays/prod'),
  canary: kustomize('deploy/k8s/overlays/canary'),
};
const everyBuild = Object.entries(builds);

// ---------------------------------------------------------------------------------------------------------------

const matches = (selector: Labels, labels: Labels | undefined) =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

interface LabelSelector {
  matchLabels?: Labels;
  matchExpressions?: Array<{ key: string; operator: string; values?: string[] }>;
}
/** A label selector with matchLabels and/or matchExpressions (only `In` is used in these manifests). */
function selects(sel: LabelSelector, labels: Labels | undefined): boolean {
  return (
    matches(sel.matchLabels ?? {}, labels) &&
    (sel.matchExpressions ?? []).every((e) => {
      if (e.operator !== 'In') throw new Error(`selector operator ${e.operator} is not checked here`);
      return (e.values ?? []).includes(labels?.[e.key] ?? '');
    })
  );
}

function podTemplates(objs: Obj[]): Array<[Obj, PodTemplate]> {
  return objs
    .filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet')
    .map((o): [Obj, PodTemplate] => [o, o.spec.template as PodTemplate]);
}

function portResolves(port: string | number, ports: ContainerPort[]): boolean {
  return ports.some((p) => (typeof port === 'number' ? p.containerPort === port : p.name === port));
}

function gatewayOf(objs: Obj[]): { deployment: Obj; pod: PodTemplate; container: Container } {
  const deployment = objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'gateway');
  if (!deployment) throw new Error('no Deployment/gateway');
  const pod = deployment.spec.template as PodTemplate;
  const container = pod.spec.containers.find((c) => c.name === 'gateway');
  if (!container) throw new Error('no gateway container');
  return { deployment, pod, container };
}

/** The env a container gets: its env entries plus every key of the ConfigMaps and Secrets it loads whole. */
function effectiveEnv(objs: Obj[], c: Container): Map<string, string | undefined> {
  const env = new Map<string, string | undefined>();
  for (const from of c.envFrom ?? []) {
    const ref = from.configMapRef ?? from.secretRef;
    const kind = from.configMapRef ? 'ConfigMap' : 'Secret';
    const src = objs.find((o) => o.kind === kind && o.metadata.name === ref?.name);
    for (const [k, v] of Object.entries({ ...src?.data, ...src?.stringData })) env.set(k, v);
  }
  for (const e of c.env ?? []) env.set(e.name, (e as { value?: string }).value);
  return env;
}

describe('Kubernetes manifests against the Kubernetes schemas', () => {
  it.each(raw.map(([f, o]) => [`${f} ${id(o)}`, o] as const))('%s validates', (_name, o) => {
    if (CRDS.has(typeKey(o))) return; // shape-checked below
    const Model = MODELS[typeKey(o)];
    expect(Model ? typeKey(o) : `no model for ${typeKey(o)}`).toBe(typeKey(o));
    expect(() => new Model!(o as never).validate()).not.toThrow();
  });

  it.each(everyBuild)('every object of the rendered %s build validates', (_name, objs) => {
    const errors: string[] = [];
    for (const o of objs) {
      if (CRDS.has(typeKey(o))) continue;
      const Model = MODELS[typeKey(o)];
      if (!Model) errors.push(`${id(o)}: no model for ${typeKey(o)}`);
      else
        try {
          new Model(o as never).validate();
        } catch (err) {
          errors.push(`${id(o)}: ${(err as Error).message}`);
        }
    }
    expect(errors).toEqual([]);
  });

  it('no object of any build has a field the Kubernetes types do not know (tsc excess-property check)', () => {
    const dir = join(ROOT, '.tmp', `k8s-typecheck-${process.pid}`);
    mkdirSync(dir, { recursive: true });
    try {
      const imports = new Set<string>();
      const lines: string[] = [];
      let n = 0;
      for (const [build, objs] of everyBuild) {
        for (const o of objs) {
          const t = INTERFACES[typeKey(o)];
          if (!t) continue;
          imports.add(`import type { ${t[1]} } from 'kubernetes-models/${t[0]}';`);
          lines.push(`// ${build} ${id(o)}\nexport const o${n++}: ${t[1]} = ${JSON.stringify(o)};`);
        }
      }
      writeFileSync(join(dir, 'objects.ts'), [...imports, ...lines].join('\n'));
      writeFileSync(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            noEmit: true,
            skipLibCheck: true,
            module: 'ESNext',
            moduleResolution: 'Bundler',
            target: 'ES2022',
            types: [],
            typeRoots: [],
          },
          files: ['objects.ts'],
        }),
      );
      let output = '';
      try {
        execFileSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', dir], {
          encoding: 'utf8',
          stdio: 'pipe',
        });
      } catch (err) {
        output = (err as { stdout?: string }).stdout ?? String(err);
      }
      expect(n).toBeGreaterThan(20);
      expect(output).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it.each(everyBuild)(
    '%s: ServiceMonitor and PrometheusRule have the shape the Prometheus Operator reads',
    (_n, objs) => {
      for (const sm of objs.filter((o) => o.kind === 'ServiceMonitor')) {
        expect(sm.apiVersion).toBe('monitoring.coreos.com/v1');
        expect(Object.keys(sm.spec.selector.matchLabels ?? {}).length).toBeGreaterThan(0);
        for (const ep of sm.spec.endpoints) {
          expect(typeof ep.port).toBe('string');
          expect(ep.path).toBe('/metrics');
          expect(ep.interval).toMatch(/^\d+[smh]$/);
        }
      }
      const rules = objs.filter((o) => o.kind === 'PrometheusRule');
      expect(rules).toHaveLength(1);
      expect(rules[0]!.apiVersion).toBe('monitoring.coreos.com/v1');
      const groups = rules[0]!.spec.groups as Array<{ name: string; rules: Array<Record<string, unknown>> }>;
      for (const g of groups) {
        expect(typeof g.name).toBe('string');
        for (const r of g.rules) {
          expect(typeof r.expr).toBe('string');
          expect(typeof (r.alert ?? r.record)).toBe('string');
        }
      }
    },
  );
});

describe('what the schemas cannot see', () => {
  it.each(everyBuild)('%s: workload selectors match their own pod labels', (_n, objs) => {
    const templates = podTemplates(objs);
    expect(templates.length).toBeGreaterThan(0);
    for (const [o, pod] of templates) {
      expect([id(o), matches(o.spec.selector.matchLabels, pod.metadata.labels)]).toEqual([id(o), true]);
    }
  });

  it.each(everyBuild)(
    '%s: every Service selects pods and its target ports are container ports',
    (_n, objs) => {
      const templates = podTemplates(objs);
      for (const svc of objs.filter((o) => o.kind === 'Service')) {
        const selected = templates.filter(([, pod]) => matches(svc.spec.selector, pod.metadata.labels));
        expect([id(svc), selected.length]).toEqual([id(svc), 1]);
        const ports = selected[0]![1].spec.containers.flatMap((c) => c.ports ?? []);
        for (const p of svc.spec.ports as Array<{ port: number; targetPort?: string | number }>) {
          expect([id(svc), p.targetPort, portResolves(p.targetPort ?? p.port, ports)]).toEqual([
            id(svc),
            p.targetPort,
            true,
          ]);
        }
      }
    },
  );

  it.each(everyBuild)('%s: every probe port is a container port', (_n, objs) => {
    for (const [o, pod] of podTemplates(objs)) {
      for (const c of pod.spec.containers) {
        for (const probe of [c.readinessProbe, c.livenessProbe, c.startupProbe]) {
          const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port;
          if (port === undefined) continue;
          expect([id(o), c.name, port, portResolves(port, c.ports ?? [])]).toEqual([
            id(o),
            c.name,
            port,
            true,
          ]);
        }
      }
    }
  });

  it.each(everyBuild)(
    '%s: the gateway probes /readyz for readiness and /healthz for liveness',
    (_n, objs) => {
      const { container } = gatewayOf(objs);
      expect(container.readinessProbe?.httpGet?.path).toBe('/readyz');
      expect(container.livenessProbe?.httpGet?.path).toBe('/healthz');
      expect(container.startupProbe?.httpGet?.path ?? '/healthz').toBe('/healthz');
    },
  );

  it.each(everyBuild)(
    '%s: every env var the gateway gets is one services/gateway/src/config.ts reads',
    (_n, objs) => {
      const { container } = gatewayOf(objs);
      const env = effectiveEnv(objs, container);
      expect(env.size).toBeGreaterThan(3);
      expect([...env.keys()].filter((k) => !(ENV_NAMES as readonly string[]).includes(k))).toEqual([]);
      // Every ConfigMap and Secret in the build that holds gateway settings is loaded by the gateway.
      for (const cm of objs.filter((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('gateway'))) {
        expect(container.envFrom?.some((f) => f.configMapRef?.name === cm.metadata.name)).toBe(true);
      }
    },
  );

  it.each(everyBuild)(
    '%s: PORT is the container port the Service, probes and ServiceMonitor use',
    (_n, objs) => {
      const { container } = gatewayOf(objs);
      const env = effectiveEnv(objs, container);
      const http = container.ports?.find((p) => p.name === 'http');
      expect(http).toBeDefined();
      expect(Number(env.get('PORT') ?? '8080')).toBe(http!.containerPort);
      const sm = objs.find((o) => o.kind === 'ServiceMonitor');
      const svc = objs.find((o) => o.kind === 'Service' && o.metadata.name === 'gateway')!;
      expect(matches(sm!.spec.selector.matchLabels, svc.metadata.labels)).toBe(true);
      expect(svc.spec.ports.map((p: { name: string }) => p.name)).toContain(sm!.spec.endpoints[0].port);
    },
  );

  it.each(everyBuild)(
    '%s: the grace period covers preStop + SHUTDOWN_GRACE_MS + the 5 s hard-stop margin',
    (_n, objs) => {
      const { pod, container } = gatewayOf(objs);
      const env = effectiveEnv(objs, container);
      const graceMs = Number(env.get('SHUTDOWN_GRACE_MS') ?? '10000');
      const sleep = container.lifecycle?.preStop?.exec?.command;
      expect(sleep?.[0]).toBe('sleep');
      const preStopS = Number(sleep?.[1]);
      expect(preStopS).toBeGreaterThan(0);
      expect(pod.spec.terminationGracePeriodSeconds! * 1000).toBeGreaterThan(
        preStopS * 1000 + graceMs + 5000,
      );
    },
  );

  it.each(everyBuild)(
    '%s: pods run as non-root without privilege escalation, with resources set',
    (_n, objs) => {
      for (const [o, pod] of podTemplates(objs)) {
        expect([id(o), pod.spec.securityContext?.runAsNonRoot]).toEqual([id(o), true]);
        for (const c of pod.spec.containers) {
          expect([id(o), c.securityContext?.allowPrivilegeEscalation]).toEqual([id(o), false]);
          expect([id(o), c.securityContext?.readOnlyRootFilesystem]).toEqual([id(o), true]);
          expect(c.resources?.requests?.cpu).toBeDefined();
          expect(c.resources?.requests?.memory).toBeDefined();
          expect(c.resources?.limits?.memory).toBeDefined();
        }
      }
    },
  );

  it.each(everyBuild)('%s: HPA, PDB, NetworkPolicies and Ingress point at objects that exist', (_n, objs) => {
    const templates = podTemplates(objs);
    const hpa = objs.find((o) => o.kind === 'HorizontalPodAutoscaler')!;
    const target = objs.find(
      (o) => o.kind === hpa.spec.scaleTargetRef.kind && o.metadata.name === hpa.spec.scaleTargetRef.name,
    );
    expect(target).toBeDefined();
    expect(target!.spec.replicas).toBeUndefined(); // the HPA owns the count
    expect(hpa.spec.minReplicas).toBeLessThanOrEqual(hpa.spec.maxReplicas);
    for (const pdb of objs.filter((o) => o.kind === 'PodDisruptionBudget')) {
      expect(templates.some(([, p]) => matches(pdb.spec.selector.matchLabels, p.metadata.labels))).toBe(true);
    }
    for (const np of objs.filter((o) => o.kind === 'NetworkPolicy')) {
      const selected = templates.filter(([, p]) => selects(np.spec.podSelector, p.metadata.labels));
      expect([id(np), selected.length > 0]).toEqual([id(np), true]);
      const ports = selected.flatMap(([, t]) => t.spec.containers.flatMap((c) => c.ports ?? []));
      for (const rule of np.spec.ingress ?? []) {
        for (const p of rule.ports ?? [])
          expect([id(np), p.port, portResolves(p.port, ports)]).toEqual([id(np), p.port, true]);
      }
    }
    for (const ing of objs.filter((o) => o.kind === 'Ingress')) {
      for (const rule of ing.spec.rules) {
        for (const path of rule.http.paths) {
          const svc = objs.find((o) => o.kind === 'Service' && o.metadata.name === path.backend.service.name);
          expect(svc).toBeDefined();
          expect(svc!.spec.ports.map((p: { name: string }) => p.name)).toContain(
            path.backend.service.port.name,
          );
        }
      }
      const annotations = ing.metadata.annotations ?? {};
      expect(Number(annotations['nginx.ingress.kubernetes.io/proxy-read-timeout'])).toBeGreaterThanOrEqual(
        3600,
      );
      expect(Number(annotations['nginx.ingress.kubernetes.io/proxy-send-timeout'])).toBeGreaterThanOrEqual(
        3600,
      );
    }
  });

  it.each(everyBuild)(
    '%s: the gateway Service is named `gateway`, the job label the alert rules select',
    (_n, objs) => {
      expect(objs.some((o) => o.kind === 'Service' && o.metadata.name === 'gateway')).toBe(true);
      const jobs = new Set(
        alertRules().flatMap((r) => [...r.expr.matchAll(/job="([^"]+)"/g)].map((m) => m[1])),
      );
      expect([...jobs]).toEqual(['gateway']);
    },
  );

  it('every object lands in the relaychat namespace', () => {
    for (const [, objs] of everyBuild) {
      for (const o of objs.filter((x) => x.kind !== 'Namespace'))
        expect([id(o), o.metadata.namespace]).toEqual([id(o), 'relaychat']);
    }
  });

  it('only dev has a Secret, and it is a template: placeholder values only', () => {
    expect(builds.base!.filter((o) => o.kind === 'Secret')).toEqual([]);
    const secrets = builds.dev!.filter((o) => o.kind === 'Secret');
    expect(secrets).toHaveLength(1);
    expect(secrets[0]!.data).toBeUndefined();
    for (const v of Object.values(secrets[0]!.stringData ?? {})) expect(v).toMatch(/^CHANGE-ME/);
  });

  it('prod uses an external Redis, more gateways, and leaves the real Secret alone', () => {
    const prod = builds.prod!;
    const base = builds.base!;
    expect(prod.filter((o) => o.kind === 'StatefulSet' || o.kind === 'Secret')).toEqual([]);
    expect(prod.some((o) => o.kind === 'Service' && o.metadata.name === 'redis')).toBe(false);
    const env = effectiveEnv(prod, gatewayOf(prod).container);
    expect(env.get('REDIS_URL')).toMatch(/^rediss?:\/\//);
    expect(env.get('REDIS_URL')).not.toMatch(/^redis:\/\/redis:/);
    const min = (objs: Obj[]) =>
      objs.find((o) => o.kind === 'HorizontalPodAutoscaler')!.spec.minReplicas as number;
    expect(min(prod)).toBeGreaterThan(min(base));
    // The secret is still loaded; it must be created out of band (docs/OPERATIONS.md).
    expect(gatewayOf(prod).container.envFrom?.some((f) => f.secretRef?.name === 'gateway-secrets')).toBe(
      true,
    );
  });

  it('dev and prod differ from base only by a small overlay', () => {
    for (const overlay of ['dev', 'prod']) {
      // `bases:` rather than `resources:` for the directory: kubectl 1.20's kustomize reads only files there.
      const k = readYaml(`deploy/k8s/overlays/${overlay}/kustomization.yaml`) as { bases: string[] };
      expect(k.bases).toEqual(['../../base']);
    }
  });

  it('every manifest file in base is listed in kustomization.yaml', () => {
    const k = readYaml('deploy/k8s/base/kustomization.yaml') as { resources: string[] };
    expect([...k.resources].sort()).toEqual(BASE_FILES.map((f) => f.replace('deploy/k8s/base/', '')).sort());
  });
});

describe('the canary overlay', () => {
  const canary = builds.canary!;
  const find = (kind: string, name: string) => {
    const o = canary.find((x) => x.kind === kind && x.metadata.name === name);
    if (!o) throw new Error(`no ${kind}/${name} in the canary build`);
    return o;
  };
  const stable = find('Deployment', 'gateway');
  const canaryDeployment = find('Deployment', 'gateway-canary');
  const podLabels = (d: Obj) => (d.spec.template as PodTemplate).metadata.labels;

  it('runs the new version beside prod, which it leaves as it is', () => {
    const image = (d: Obj) =>
      ((d.spec.template as PodTemplate).spec.containers[0] as unknown as { image: string }).image;
    expect(image(canaryDeployment)).toBe('registry.example.com/relaychat/gateway:0.2.0');
    expect(image(stable)).toBe(image(gatewayOf(builds.prod!).deployment));
    const prodIds = builds.prod!.map(id).sort();
    expect(
      canary
        .map(id)
        .filter((i) => prodIds.includes(i))
        .sort(),
    ).toEqual(prodIds);
    expect(podLabels(stable).track).toBe('stable');
    expect(podLabels(canaryDeployment).track).toBe('canary');
    expect(canaryDeployment.spec.replicas).toBe(1);
  });

  it('its Deployment is the stable one but for name, labels, replicas and image', () => {
    const strip = (d: Obj) => {
      const c = JSON.parse(JSON.stringify(d.spec)) as Record<string, unknown> & { template: PodTemplate };
      delete c.replicas;
      delete c.selector;
      delete (c.template as { metadata?: unknown }).metadata;
      for (const k of c.template.spec.containers) delete (k as { image?: string }).image;
      return JSON.stringify(c).replaceAll('relaychat-gateway-canary', 'relaychat-gateway');
    };
    expect(strip(canaryDeployment)).toBe(strip(stable));
  });

  it('the stable and canary selectors never pick each other’s pods', () => {
    const sel = (o: Obj) => (o.kind === 'Service' ? o.spec.selector : o.spec.selector.matchLabels) as Labels;
    expect(matches(sel(stable), podLabels(canaryDeployment))).toBe(false);
    expect(matches(sel(canaryDeployment), podLabels(stable))).toBe(false);
    expect(matches(sel(find('Service', 'gateway')), podLabels(canaryDeployment))).toBe(false);
    expect(matches(sel(find('Service', 'gateway-canary')), podLabels(canaryDeployment))).toBe(true);
    expect(matches(sel(find('Service', 'gateway-canary')), podLabels(stable))).toBe(false);
  });

  it('an ingress-nginx canary Ingress sends a share of new connections to the canary Service', () => {
    const main = find('Ingress', 'gateway');
    const ing = find('Ingress', 'gateway-canary');
    const a = ing.metadata.annotations ?? {};
    expect(a['nginx.ingress.kubernetes.io/canary']).toBe('true');
    const weight = Number(a['nginx.ingress.kubernetes.io/canary-weight']);
    expect(weight).toBeGreaterThan(0);
    expect(weight).toBeLessThan(100);
    expect(main.metadata.annotations?.['nginx.ingress.kubernetes.io/canary']).toBeUndefined();
    // Same host and path (ingress-nginx pairs them), same WebSocket timeouts, the canary Service behind it.
    expect(ing.spec.rules.map((r: { host: string }) => r.host)).toEqual(
      main.spec.rules.map((r: { host: string }) => r.host),
    );
    expect(ing.spec.rules[0].http.paths[0].path).toBe(main.spec.rules[0].http.paths[0].path);
    for (const k of Object.keys(main.metadata.annotations ?? {}))
      expect(a[k]).toBe(main.metadata.annotations![k]);
    expect(ing.spec.rules[0].http.paths[0].backend.service.name).toBe('gateway-canary');
  });

  it('Prometheus scrapes both tracks into job="gateway", with the track label, and one policy covers both', () => {
    const sm = find('ServiceMonitor', 'gateway');
    expect(sm.spec.podTargetLabels).toContain('track');
    for (const name of ['gateway', 'gateway-canary']) {
      const svc = find('Service', name);
      expect(matches(sm.spec.selector.matchLabels, svc.metadata.labels)).toBe(true);
      expect(svc.metadata.labels![sm.spec.jobLabel as string]).toBe('gateway');
    }
    const np = find('NetworkPolicy', 'gateway');
    expect(selects(np.spec.podSelector, podLabels(stable))).toBe(true);
    expect(selects(np.spec.podSelector, podLabels(canaryDeployment))).toBe(true);
  });
});
