/**
 * The routes as a Kubernetes ConfigMap, end to end with the real Envoy:
 * Envoy's `watched_directory` reloads the routes when a ConfigMap-style
 * `..data` symlink swap happens in the mounted directory; and
 * `npm run weights -- --kube-configmap … --admin …` writes the ConfigMap
 * through a real API server and waits until Envoy serves the new routes
 * (the files carried from the API server into Envoy's directory by the
 * kubelet's projection, reproduced in atomic-writer.ts).
 */
import { lstatSync, mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { exec, Teardown, waitFor } from '../../scripts/lib/deploy/exec.js';
import { PROJECT_ROOT } from '../../scripts/lib/deploy/paths.js';
import { ROUTES_KEY } from '../../scripts/lib/deploy/routes-configmap.js';
import { type BootstrapOptions, routesVersion, weightsForCanary } from '../../scripts/lib/envoy/config.js';
import { bootstrapText, INITIAL_ROUTES_VERSION, routesText } from '../../scripts/lib/envoy/files.js';
import { type EnvoyProcess, envoyBinary, startEnvoy } from '../../scripts/lib/envoy/process.js';
import { freePort } from '../helpers/envoy.js';
import { projectConfigMap } from './atomic-writer.js';
import { scratchDir, startApiServer } from './setup.js';

const COMMITTED_ROUTES = readFileSync(join(PROJECT_ROOT, 'envoy', 'routes', 'routes.yaml'), 'utf8');

describe('Kubernetes: routes in a ConfigMap, picked up by the real Envoy', () => {
  const teardown = new Teardown();
  let dir: string;
  let routesDir: string;
  let envoy: EnvoyProcess;

  before(async function () {
    this.timeout(60_000);
    dir = scratchDir('deploy-routes-cm-', teardown);
    // The mounted ConfigMap, as the kubelet lays it out, holding the chart's 90/10.
    routesDir = join(dir, 'routes');
    projectConfigMap(routesDir, { [ROUTES_KEY]: COMMITTED_ROUTES });
    // The chart's bootstrap shape (STRICT_DNS aside): RDS from routes.yaml in the watched directory.
    const options: BootstrapOptions = {
      listener: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0 },
      stable: { host: '127.0.0.1', port: await freePort() },
      canary: { host: '127.0.0.1', port: await freePort() },
      discovery: 'static',
      routesPath: join(routesDir, ROUTES_KEY),
      accessLog: join(dir, 'access.log'),
      healthCheckIntervalMs: 1000,
    };
    const config = join(dir, 'envoy.yaml');
    writeFileSync(config, bootstrapText(options, 'routes ConfigMap test'));
    envoy = await startEnvoy({
      binary: envoyBinary(PROJECT_ROOT),
      configPath: config,
      cwd: dir,
      adminAddressPath: join(dir, 'admin-address'),
    });
    teardown.add(
      'envoy',
      async () => void (await envoy.stop(3000)),
      () => envoy.proc.kill('SIGKILL'),
    );
    expect((await envoy.admin.liveRoutes())?.version).to.equal(INITIAL_ROUTES_VERSION);
  });

  after(async function () {
    this.timeout(60_000);
    await teardown.runAll();
  });

  it('reloads the routes on a ..data symlink swap', async () => {
    // The layout Envoy sees: routes.yaml -> ..data/routes.yaml, ..data -> ..<timestamp>.
    expect(lstatSync(join(routesDir, ROUTES_KEY)).isSymbolicLink()).to.equal(true);
    expect(readlinkSync(join(routesDir, ROUTES_KEY))).to.equal(join('..data', ROUTES_KEY));
    const before = await envoy.admin.rds();
    const weights = weightsForCanary(30);
    const version = routesVersion(weights, new Date());
    const t0 = Date.now();
    projectConfigMap(routesDir, { [ROUTES_KEY]: routesText(weights, version) });
    const live = await waitFor(
      'Envoy to serve the swapped routes',
      async () => {
        const r = await envoy.admin.liveRoutes();
        return r?.version === version ? r : undefined;
      },
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    process.stderr.write(`      [deploy] ..data swap served by Envoy after ${Date.now() - t0} ms\n`);
    expect(live.weights).to.deep.equal({ stable: 70, canary: 30 });
    const after = await envoy.admin.rds();
    expect(after.updateSuccess).to.equal(before.updateSuccess + 1);
    expect(after.updateRejected).to.equal(before.updateRejected);
  });

  it('`npm run weights -- --kube-configmap` writes through the API server and waits for Envoy', async function () {
    this.timeout(120_000);
    const api = await startApiServer(join(dir, 'api'), teardown);
    const name = 'ab-inference-ab-routes';
    await api.kubectl(['create', 'namespace', 'ab']);
    // Start from what Envoy serves now (the previous test's 70/30).
    const current = readFileSync(join(routesDir, ROUTES_KEY), 'utf8');
    mkdirSync(join(dir, 'cm'), { recursive: true });
    writeFileSync(join(dir, 'cm', ROUTES_KEY), current);
    await api.kubectl([
      '-n',
      'ab',
      'create',
      'configmap',
      name,
      `--from-file=${ROUTES_KEY}=${join(dir, 'cm', ROUTES_KEY)}`,
    ]);

    // The kubelet's part: poll the API server, project each new resourceVersion.
    let seen = '';
    let syncing = true;
    const sync = (async () => {
      while (syncing) {
        const cm = JSON.parse(await api.kubectl(['-n', 'ab', 'get', 'configmap', name, '-o', 'json'])) as {
          metadata: { resourceVersion: string };
          data: Record<string, string>;
        };
        if (cm.metadata.resourceVersion !== seen) {
          seen = cm.metadata.resourceVersion;
          projectConfigMap(routesDir, cm.data);
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    teardown.add(
      'configmap sync',
      async () => {
        syncing = false;
        await sync;
      },
      () => {
        syncing = false;
      },
    );

    const admin = envoy.admin.base.replace(/^http:\/\//, '');
    const r = await exec('node', [
      join(PROJECT_ROOT, 'dist', 'scripts', 'ops', 'rollout.js'),
      'weights',
      '--canary',
      '25',
      '--kube-configmap',
      name,
      '--namespace',
      'ab',
      '--kubeconfig',
      api.kubeconfig,
      '--admin',
      admin,
      '--timeout-ms',
      '30000',
    ]);
    process.stderr.write(`      [deploy] ${r.stdout.trim().split('\n').at(-1)}\n`);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/before: stable 70% \/ canary 30%/);
    expect(r.stdout).to.match(/after:\s+stable 75% \/ canary 25% .*served by Envoy/);
    const live = await envoy.admin.liveRoutes();
    expect(live?.weights).to.deep.equal({ stable: 75, canary: 25 });
    expect(live?.version).to.match(/^stable-75-canary-25-/);
  });
});
