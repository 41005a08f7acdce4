/**
 * The Helm chart against a real Kubernetes API server (kube-apiserver v1.37.2
 * with etcd, on loopback; no kubelet or controllers, so nothing runs):
 * `helm lint`, `helm template | kubectl apply --dry-run=server --validate=strict`
 * for the defaults and the production profile, the objects as designed, the
 * rendered Envoy bootstraps validated by the real Envoy, and a real install
 * whose routes ConfigMap `npm run weights -- --kube-configmap` changes and a
 * `helm upgrade` keeps.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { exec, execOk, Teardown } from '../../scripts/lib/deploy/exec.js';
import { helm, helmResult, helmTemplate, KUBE_VERSION } from '../../scripts/lib/deploy/helm.js';
import type { KubeApiServer } from '../../scripts/lib/deploy/kube.js';
import { CHART_DIR, PROJECT_ROOT } from '../../scripts/lib/deploy/paths.js';
import { parseRoutesText } from '../../scripts/lib/deploy/routes-configmap.js';
import { envoyBinary } from '../../scripts/lib/envoy/process.js';
import { scratchDir, startApiServer } from './setup.js';

const NS = 'inference-ab';
const RELEASE = 'ab';
const FULL = 'ab-inference-ab';
const PRODUCTION = join(CHART_DIR, 'values-production.yaml');

// biome-ignore lint/suspicious/noExplicitAny: Kubernetes objects, asserted field by field
type Obj = any;

function byKind(items: Obj[], kind: string): Obj[] {
  return items.filter((o) => o.kind === kind);
}
function named(items: Obj[], kind: string, name: string): Obj {
  const o = items.find((x) => x.kind === kind && x.metadata.name === name);
  if (!o)
    throw new Error(`no ${kind} ${name} in ${items.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return o;
}

describe('Kubernetes: the Helm chart against a real API server', () => {
  const teardown = new Teardown();
  let dir: string;
  let api: KubeApiServer;

  /** `helm template … | kubectl apply --dry-run=server --validate=strict -o json`. */
  async function dryRun(manifest: string): Promise<Obj[]> {
    const out = await api.kubectl(
      ['apply', '--dry-run=server', '--validate=strict', '-o', 'json', '-f', '-'],
      {
        input: manifest,
      },
    );
    const parsed = JSON.parse(out) as Obj;
    return parsed.kind === 'List' ? parsed.items : [parsed];
  }

  before(async function () {
    this.timeout(120_000);
    dir = scratchDir('deploy-kube-', teardown);
    const t0 = Date.now();
    api = await startApiServer(join(dir, 'api'), teardown);
    process.stderr.write(`      [deploy] kube-apiserver ready in ${Date.now() - t0} ms\n`);
    const version = JSON.parse(await api.get('/version')) as { gitVersion: string };
    expect(version.gitVersion).to.equal(KUBE_VERSION);
    await api.kubectl(['create', 'namespace', NS]);
    await api.kubectl([
      'apply',
      '-f',
      join(PROJECT_ROOT, 'test', 'deploy', 'fixtures', 'monitoring-crds.yaml'),
    ]);
    await api.kubectl([
      'wait',
      '--for=condition=Established',
      '--timeout=30s',
      'crd/servicemonitors.monitoring.coreos.com',
      'crd/prometheusrules.monitoring.coreos.com',
    ]);
  });

  after(async function () {
    this.timeout(60_000);
    await teardown.runAll();
  });

  it('passes helm lint --strict with the defaults and with the production profile', async () => {
    for (const values of [[], ['-f', PRODUCTION]]) {
      const r = await helmResult(['lint', '--strict', CHART_DIR, '--kube-version', KUBE_VERSION, ...values]);
      expect(r.code, r.stdout + r.stderr).to.equal(0);
      expect(r.stdout).to.include('0 chart(s) failed');
    }
  });

  it('renders the defaults into objects the API server accepts, as designed', async function () {
    this.timeout(60_000);
    const items = await dryRun(await helmTemplate(RELEASE, NS));
    const kinds = items.map((o) => o.kind).sort();
    expect(kinds).to.deep.equal(
      [
        ...Array(3).fill('ConfigMap').concat(['ConfigMap']),
        ...Array(3).fill('Deployment'),
        ...Array(2).fill('NetworkPolicy'),
        ...Array(3).fill('PodDisruptionBudget'),
        ...Array(4).fill('Service'),
      ].sort(),
    );
    for (const arm of ['stable', 'canary']) {
      const d = named(items, 'Deployment', `${FULL}-${arm}`);
      expect(d.spec.replicas).to.equal(arm === 'stable' ? 2 : 1);
      const pod = d.spec.template.spec;
      const [c] = pod.containers;
      const env = Object.fromEntries(c.env.map((e: Obj) => [e.name, e.value]));
      expect(env.ROLE).to.equal(arm);
      expect(env.MODEL_VERSION_POLICY).to.match(/^conversion=\d{8}T\d{6}Z$/);
      // Native gRPC probes on grpc.health.v1.
      expect(c.readinessProbe.grpc).to.deep.equal({ port: 50051, service: 'inference.v1.InferenceService' });
      expect(c.startupProbe.grpc.service).to.equal('inference.v1.InferenceService');
      expect(c.livenessProbe.grpc.port).to.equal(50051);
      // The grace period outlasts preStop + drain + shutdown grace (3 + 5 + 10 s).
      expect(c.lifecycle.preStop.sleep.seconds).to.equal(3);
      expect(Number(env.DRAIN_MS) / 1000 + Number(env.SHUTDOWN_GRACE_MS) / 1000 + 3).to.be.lessThan(
        pod.terminationGracePeriodSeconds,
      );
      expect(c.resources.requests).to.have.keys('cpu', 'memory');
      expect(c.resources.limits).to.have.keys('cpu', 'memory');
      expect(c.securityContext).to.deep.equal({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(pod.securityContext).to.include({ runAsNonRoot: true, runAsUser: 1000 });
      expect(pod.topologySpreadConstraints.map((t: Obj) => t.topologyKey)).to.deep.equal([
        'kubernetes.io/hostname',
        'topology.kubernetes.io/zone',
      ]);
      expect(d.spec.template.metadata.annotations).to.include({
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '9464',
      });
      // The model repository is a volume, read-only in the server, seeded from the image in the demo.
      expect(c.volumeMounts).to.deep.include({ name: 'models', mountPath: '/app/models', readOnly: true });
      expect(pod.initContainers[0].command).to.deep.equal(['cp', '-R', '/app/models/.', '/models/']);
      // The headless Service Envoy resolves.
      const svc = named(items, 'Service', `${FULL}-${arm}`);
      expect(svc.spec.clusterIP).to.equal('None');
      expect(svc.spec.selector).to.deep.equal(d.spec.selector.matchLabels);
      const pdb = named(items, 'PodDisruptionBudget', `${FULL}-${arm}`);
      expect(pdb.spec.selector.matchLabels).to.deep.equal(d.spec.selector.matchLabels);
    }
    // Envoy's routes are a directory mount of the routes ConfigMap, holding the committed 90/10.
    const envoy = named(items, 'Deployment', `${FULL}-envoy`);
    expect(envoy.spec.template.spec.containers[0].volumeMounts).to.deep.include({
      name: 'routes',
      mountPath: '/etc/envoy/routes',
      readOnly: true,
    });
    const routes = named(items, 'ConfigMap', `${FULL}-routes`);
    expect(routes.data['routes.yaml']).to.equal(
      readFileSync(join(PROJECT_ROOT, 'envoy', 'routes', 'routes.yaml'), 'utf8'),
    );
    const bootstrap = named(items, 'ConfigMap', `${FULL}-envoy`).data['envoy.yaml'] as string;
    expect(bootstrap).to.include(`address: "${FULL}-stable"`).and.include(`address: "${FULL}-canary"`);
    expect(bootstrap).to.not.include('__STABLE_HOST__');
    expect(bootstrap).to.not.include('transport_socket');
    expect(byKind(items, 'HorizontalPodAutoscaler')).to.deep.equal([]);
    const dashboard = named(items, 'ConfigMap', `${FULL}-dashboard`);
    expect(dashboard.metadata.labels.grafana_dashboard).to.equal('1');
    expect(JSON.parse(dashboard.data['inference-ab.json']).uid).to.equal('inference-ab');
  });

  it('renders the production profile (TLS, more replicas, autoscaling, shared models) into accepted objects', async function () {
    this.timeout(60_000);
    const items = await dryRun(await helmTemplate(RELEASE, NS, { values: [PRODUCTION] }));
    const stable = named(items, 'Deployment', `${FULL}-stable`);
    // The HPA owns the replica count (the API server defaults an unset one to 1).
    expect(stable.spec.replicas).to.equal(1);
    expect(named(items, 'Deployment', `${FULL}-canary`).spec.replicas).to.equal(2);
    const hpas = byKind(items, 'HorizontalPodAutoscaler');
    expect(hpas.map((h) => [h.metadata.name, h.spec.minReplicas, h.spec.maxReplicas]).sort()).to.deep.equal([
      [`${FULL}-envoy`, 3, 9],
      [`${FULL}-stable`, 4, 12],
    ]);
    const pod = stable.spec.template.spec;
    expect(pod.volumes).to.deep.include({
      name: 'models',
      persistentVolumeClaim: { claimName: 'inference-models', readOnly: true },
    });
    expect(pod.initContainers).to.equal(undefined);
    expect(pod.topologySpreadConstraints[0].whenUnsatisfiable).to.equal('DoNotSchedule');
    const envoy = named(items, 'Deployment', `${FULL}-envoy`).spec.template.spec;
    expect(envoy.volumes).to.deep.include({
      name: 'tls',
      secret: { secretName: 'inference-ab-tls', defaultMode: 420 },
    });
    const bootstrap = named(items, 'ConfigMap', `${FULL}-envoy`).data['envoy.yaml'] as string;
    expect(bootstrap).to.include('envoy.transport_sockets.tls').and.include('/etc/envoy/tls/tls.crt');
    const svc = named(items, 'Service', `${FULL}-envoy`);
    expect(svc.spec.type).to.equal('LoadBalancer');
    expect(svc.spec.ports[0]).to.include({ port: 443, appProtocol: 'kubernetes.io/h2' });
    expect(
      byKind(items, 'ServiceMonitor')
        .map((s) => s.metadata.name)
        .sort(),
    ).to.deep.equal([`${FULL}-envoy`, `${FULL}-inference-canary`, `${FULL}-inference-stable`]);
    const rule = named(items, 'PrometheusRule', FULL);
    expect(rule.spec.groups.map((g: Obj) => g.name)).to.deep.equal([
      'inference.recording',
      'inference.alerts',
    ]);
    const np = named(items, 'NetworkPolicy', `${FULL}-envoy`);
    expect(np.spec.ingress[0].from).to.deep.equal([
      { namespaceSelector: { matchLabels: { 'inference-ab/client': 'true' } } },
    ]);
  });

  it('is refused by the API server when a value breaks an object (so the dry-run checks something)', async function () {
    this.timeout(60_000);
    const port = await api.kubectlResult(['apply', '--dry-run=server', '--validate=strict', '-f', '-'], {
      input: await helmTemplate(RELEASE, NS, { set: ['envoy.service.port=70000'] }),
    });
    expect(port.code).to.not.equal(0);
    expect(port.stderr).to.match(/must be between 1 and 65535/);
    const unknown = await api.kubectlResult(['apply', '--dry-run=server', '--validate=strict', '-f', '-'], {
      input: await helmTemplate(RELEASE, NS, { set: ['arms.stable.resources.requestz.cpu=1'] }),
    });
    expect(unknown.code).to.not.equal(0);
    expect(unknown.stderr).to.match(/unknown field "spec.template.spec.containers\[0\].resources.requestz"/);
  });

  it('renders Envoy bootstraps (plain and TLS) that the real Envoy validates', async function () {
    this.timeout(60_000);
    const routesDir = join(dir, 'routes');
    const tlsDir = join(dir, 'tls');
    mkdirSync(routesDir, { recursive: true });
    mkdirSync(tlsDir, { recursive: true });
    writeFileSync(join(routesDir, 'routes.yaml'), readFileSync(join(CHART_DIR, 'files', 'routes.yaml')));
    await execOk('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=inference-ab.test',
      '-keyout',
      join(tlsDir, 'tls.key'),
      '-out',
      join(tlsDir, 'tls.crt'),
    ]);
    for (const values of [[], [PRODUCTION]]) {
      const items = await dryRun(await helmTemplate(RELEASE, NS, { values }));
      const text = (named(items, 'ConfigMap', `${FULL}-envoy`).data['envoy.yaml'] as string)
        .replaceAll('/etc/envoy/routes', routesDir)
        .replaceAll('/etc/envoy/tls', tlsDir);
      const file = join(dir, `envoy-${values.length}.yaml`);
      writeFileSync(file, text);
      const r = await exec(envoyBinary(PROJECT_ROOT), [
        '--mode',
        'validate',
        '--config-path',
        file,
        '--disable-hot-restart',
        '--log-level',
        'warning',
      ]);
      expect(r.code, r.stdout + r.stderr).to.equal(0);
    }
  });

  it('installs for real; `npm run weights -- --canary 25 --kube-configmap` changes the routes; `helm upgrade` keeps them', async function () {
    this.timeout(120_000);
    await helm(['install', RELEASE, CHART_DIR, '--namespace', NS, '--kubeconfig', api.kubeconfig]);
    const weights = (args: readonly string[]) =>
      exec('node', [
        join(PROJECT_ROOT, 'dist', 'scripts', 'ops', 'rollout.js'),
        'weights',
        ...args,
        '--kube-configmap',
        `${FULL}-routes`,
        '--namespace',
        NS,
        '--kubeconfig',
        api.kubeconfig,
      ]);
    const stored0 = parseRoutesText(
      JSON.parse(await api.kubectl(['-n', NS, 'get', 'configmap', `${FULL}-routes`, '-o', 'json'])).data[
        'routes.yaml'
      ],
    );
    expect(stored0.weights).to.deep.equal({ stable: 90, canary: 10 });
    const set = await weights(['--canary', '25']);
    expect(set.code, set.stderr).to.equal(0);
    expect(set.stdout).to.match(/after:\s+stable 75% \/ canary 25%/);
    const stored = async () =>
      parseRoutesText(
        JSON.parse(await api.kubectl(['-n', NS, 'get', 'configmap', `${FULL}-routes`, '-o', 'json'])).data[
          'routes.yaml'
        ],
      );
    const after = await stored();
    expect(after.weights).to.deep.equal({ stable: 75, canary: 25 });
    expect(after.version).to.match(/^stable-75-canary-25-/);
    // An upgrade (here: more stable replicas) must not reset the weights to the chart's 90/10.
    await helm([
      'upgrade',
      RELEASE,
      CHART_DIR,
      '--namespace',
      NS,
      '--kubeconfig',
      api.kubeconfig,
      '--set',
      'arms.stable.replicas=3',
    ]);
    const deployment = JSON.parse(
      await api.kubectl(['-n', NS, 'get', 'deployment', `${FULL}-stable`, '-o', 'json']),
    );
    expect(deployment.spec.replicas).to.equal(3);
    expect((await stored()).weights).to.deep.equal({ stable: 75, canary: 25 });
    // Bad input: exit 2, nothing written.
    const bad = await weights(['--canary', '101']);
    expect(bad.code).to.equal(2);
    expect((await stored()).weights).to.deep.equal({ stable: 75, canary: 25 });
  });
});
