/**
 * The image and the Compose stack, built and run for real: podman (runc) as the
 * engine, Docker Compose v5 talking to podman's Docker-compatible socket, local
 * stand-ins for the base images where no registry is reachable. Everything is
 * on loopback ports picked here, under a project name of its own, and torn
 * down by `after` or, on Ctrl-C / SIGTERM, by the Teardown's signal handler.
 */
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { buildServerImage, ensureBaseImages, SERVER_IMAGE } from '../../scripts/lib/deploy/base-images.js';
import { ComposeStack } from '../../scripts/lib/deploy/compose.js';
import { dashboardQueries, loadDashboard } from '../../scripts/lib/deploy/dashboard.js';
import { execOk, Teardown, waitFor } from '../../scripts/lib/deploy/exec.js';
import { PROJECT_ROOT } from '../../scripts/lib/deploy/paths.js';
import { HealthcheckRunner, PodmanService, removeStaleProjects } from '../../scripts/lib/deploy/podman.js';
import { EnvoyAdmin } from '../../scripts/lib/envoy/admin.js';
import { weightsForCanary } from '../../scripts/lib/envoy/config.js';
import { switchWeights } from '../../scripts/lib/envoy/switch.js';
import { freePort } from '../helpers/envoy.js';
import { armsOf, client, loadUntil, predict, SAMPLE_RECORD } from './grpc.js';
import { scratchDir } from './setup.js';

const log = (s: string) => process.stderr.write(`      [deploy] ${s}\n`);

/** Compose project names of this suite: the prefix and the test process's pid. */
const PROJECT_PREFIX = 'iab-test-';

/** The servers' DRAIN_MS and stop_grace_period in docker-compose.yml. */
const DRAIN_MS = 5000;
const STOP_GRACE_MS = 30_000;

/** Per-host request totals of an Envoy cluster, from the admin's text /clusters. */
async function hostRequests(admin: EnvoyAdmin, cluster: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const line of (await admin.text('/clusters')).split('\n')) {
    const m = new RegExp(`^${cluster}::([\\d.]+:\\d+)::rq_total::(\\d+)$`).exec(line.trim());
    if (m) out.set(m[1] as string, Number(m[2]));
  }
  return out;
}

interface Target {
  labels: { job: string; instance: string };
  health: string;
  lastError: string;
}

describe('Docker: the image and the Compose stack, run on podman', () => {
  const teardown = new Teardown();
  let dir: string;
  let stack: ComposeStack;
  let admin: EnvoyAdmin;
  let ports: { ENVOY_PORT: number; ENVOY_QA_PORT: number; ENVOY_ADMIN_PORT: number; PROMETHEUS_PORT: number };
  let routesDir: string;
  let podmanLog: string;
  let grpc: ReturnType<typeof client>;
  /** Envoy's QA listener: the x-ab-group override works only there. */
  let qa: ReturnType<typeof client>;
  let nextUser = 500_000_000;
  const users = (n: number) => Array.from({ length: n }, () => nextUser++);

  before(async function () {
    this.timeout(30 * 60_000);
    dir = scratchDir('deploy-compose-', teardown);

    const t0 = Date.now();
    for (const r of await ensureBaseImages(log)) if (r.built) log(`stand-in ${r.image} built in ${r.ms} ms`);
    const build = await buildServerImage(log);
    log(
      `base images + image: ${((Date.now() - t0) / 1000).toFixed(1)} s (image build ${(build.ms / 1000).toFixed(1)} s, ${(build.sizeBytes / 1e6).toFixed(0)} MB)`,
    );

    const stale = await removeStaleProjects(PROJECT_PREFIX);
    if (stale.length > 0) log(`removed what earlier runs left behind: ${stale.join(', ')}`);
    const service = await PodmanService.start(dir);
    podmanLog = service.logFile;
    teardown.add(
      'podman system service',
      () => service.stop(),
      () => service.killNow(),
    );

    // Envoy watches a copy of the committed routes, so the test never edits the repository.
    routesDir = join(dir, 'routes');
    mkdirSync(routesDir);
    copyFileSync(join(PROJECT_ROOT, 'envoy', 'routes', 'routes.yaml'), join(routesDir, 'routes.yaml'));
    ports = {
      ENVOY_PORT: await freePort(),
      ENVOY_QA_PORT: await freePort(),
      ENVOY_ADMIN_PORT: await freePort(),
      PROMETHEUS_PORT: await freePort(),
    };
    stack = new ComposeStack({
      project: `${PROJECT_PREFIX}${process.pid}`,
      dockerHost: service.dockerHost,
      ports,
      routesDir,
    });
    const health = new HealthcheckRunner(stack.project, 1000);
    health.start();
    teardown.add(
      'health checks',
      async () => health.stop(),
      () => health.stop(),
    );
    teardown.add(
      'compose stack',
      async () => void (await stack.down(10)),
      () => stack.downSync(),
    );

    const tUp = Date.now();
    const upMs = await stack.up();
    admin = new EnvoyAdmin(`127.0.0.1:${ports.ENVOY_ADMIN_PORT}`);
    try {
      await waitFor(
        'Envoy to see stable and canary healthy',
        async () =>
          (await admin.clusterHealthy('stable')) && (await admin.clusterHealthy('canary')) ? true : undefined,
        { timeoutMs: 30_000, intervalMs: 100 },
      );
    } catch (err) {
      // Seen once in a fresh-clone run (and not in the next): say what Envoy and the containers
      // looked like, so the next one can be explained.
      throw new Error(`${(err as Error).message}\n${await stackState(stack, admin)}`);
    }
    log(
      `docker compose up --wait: ${(upMs / 1000).toFixed(1)} s; Envoy saw both arms healthy ${((Date.now() - tUp) / 1000).toFixed(1)} s after up started`,
    );
    grpc = client(ports.ENVOY_PORT);
    qa = client(ports.ENVOY_QA_PORT);
    teardown.add(
      'gRPC client',
      async () => grpc.close(),
      () => grpc.close(),
    );
    teardown.add(
      'QA gRPC client',
      async () => qa.close(),
      () => qa.close(),
    );
  });

  after(async function () {
    this.timeout(120_000);
    await teardown.runAll();
  });

  it('answers Predict with the seed record through Envoy, on either arm', async () => {
    for (const arm of ['stable', 'canary'] as const) {
      const r = await predict(qa, SAMPLE_RECORD.userId as number, { override: arm });
      expect(r.arm).to.equal(arm);
      expect(r.model).to.equal('conversion');
      expect(r.predictions).to.have.length(1);
      const [p] = r.predictions;
      expect(p?.score).to.be.within(0, 1);
      expect(p?.label).to.be.oneOf([0, 1]);
    }
  });

  it('splits 2000 distinct users 90/10 (within 4 sigma)', async function () {
    this.timeout(120_000);
    const n = 2000;
    const counts = await armsOf(grpc, users(n));
    log(`2000 users: ${JSON.stringify(counts)}`);
    expect((counts.stable ?? 0) + (counts.canary ?? 0)).to.equal(n);
    // 10% of 2000 = 200, sigma = sqrt(2000 * 0.1 * 0.9) = 13.4
    expect(counts.canary ?? 0).to.be.within(200 - 54, 200 + 54);
  });

  it('changes the weights live (10 -> 25) under traffic with zero failed calls', async function () {
    this.timeout(120_000);
    const change = switchWeights({
      admin,
      routesPath: join(routesDir, 'routes.yaml'),
      weights: weightsForCanary(25),
      timeoutMs: 20_000,
    });
    // Traffic before, during and for a while after the switch.
    const settle = change.then(() => new Promise((r) => setTimeout(r, 1000)));
    const load = await loadUntil(grpc, settle, { firstUser: nextUser, concurrency: 8, maxMs: 60_000 });
    nextUser += load.ok + load.failed;
    const r = await change;
    log(
      `weights 10 -> 25: accepted by Envoy in ${r.confirmMs} ms; ${load.ok} calls ok, ${load.failed} failed`,
    );
    expect(r.changed).to.equal(true);
    expect(r.after.weights).to.deep.equal({ stable: 75, canary: 25 });
    expect(load.ok).to.be.greaterThan(50);
    expect(load.failed, JSON.stringify(load.codes)).to.equal(0);
    const counts = await armsOf(grpc, users(2000));
    log(`2000 users after the change: ${JSON.stringify(counts)}`);
    // 25% of 2000 = 500, sigma = 19.4
    expect(counts.canary ?? 0).to.be.within(500 - 78, 500 + 78);
  });

  it("reports the image's HEALTHCHECK as the container's health", async () => {
    // podman's own view of the image (its Docker-compatible API leaves Healthcheck out).
    const [image] = JSON.parse(await execOk('podman', ['image', 'inspect', SERVER_IMAGE])) as {
      Healthcheck?: { Test?: string[] };
    }[];
    expect(image?.Healthcheck?.Test).to.deep.equal(['CMD', 'node', 'dist/scripts/ops/healthcheck.js']);
    const servers = (await stack.ps()).filter((c) => c.Service === 'stable' || c.Service === 'canary');
    expect(servers).to.have.length(2);
    for (const c of servers) {
      const s = await stack.inspect<{ State: { Health?: { Status: string; Log?: { ExitCode: number }[] } } }>(
        c.ID,
      );
      expect(s.State.Health?.Status, c.Name).to.equal('healthy');
      expect(s.State.Health?.Log?.at(-1)?.ExitCode, c.Name).to.equal(0);
    }
  });

  it('runs the servers as non-root, without capabilities, on a read-only root filesystem', async () => {
    const probe = [
      "const fs = require('node:fs');",
      "const cap = /CapEff:\\s*(\\w+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))[1];",
      "let app = 'writable'; try { fs.writeFileSync('/app/probe', 'x'); } catch (e) { app = e.code; }",
      "fs.writeFileSync('/tmp/probe', 'x');",
      'console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), cap, app }));',
    ].join(' ');
    for (const c of (await stack.ps()).filter((c) => c.Service === 'stable' || c.Service === 'canary')) {
      const out = JSON.parse(await stack.docker(['exec', c.ID, 'node', '-e', probe])) as Record<
        string,
        unknown
      >;
      expect(out, c.Name).to.deep.equal({ uid: 1000, gid: 1000, cap: '0000000000000000', app: 'EROFS' });
      const s = await stack.inspect<{ Config: { User: string }; HostConfig: { ReadonlyRootfs: boolean } }>(
        c.ID,
      );
      expect(s.Config.User).to.equal('node');
      expect(s.HostConfig.ReadonlyRootfs).to.equal(true);
    }
  });

  it('has Prometheus scraping every target and evaluating the rules', async function () {
    this.timeout(90_000);
    const prom = `http://127.0.0.1:${ports.PROMETHEUS_PORT}`;
    const targets = await waitFor(
      'every Prometheus target up',
      async () => {
        const body = (await (await fetch(`${prom}/api/v1/targets`)).json()) as {
          data: { activeTargets: Target[] };
        };
        const t = body.data.activeTargets;
        const jobs = new Set(t.map((x) => x.labels.job));
        const allJobs = ['envoy', 'inference-canary', 'inference-stable'].every((j) => jobs.has(j));
        return allJobs && t.every((x) => x.health === 'up') ? t : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    expect(targets.map((t) => t.labels.job).sort()).to.deep.equal([
      'envoy',
      'inference-canary',
      'inference-stable',
    ]);
    const rules = await waitFor(
      'the rule groups evaluated once',
      async () => {
        const body = (await (await fetch(`${prom}/api/v1/rules`)).json()) as {
          data: { groups: { name: string; rules: { name: string; health: string; lastError?: string }[] }[] };
        };
        const all = body.data.groups.flatMap((g) => g.rules);
        return all.length > 0 && all.every((r) => r.health !== 'unknown') ? body.data.groups : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const bad = rules.flatMap((g) => g.rules).filter((r) => r.health !== 'ok');
    expect(bad, JSON.stringify(bad)).to.deep.equal([]);
    expect(rules.map((g) => g.name)).to.include.members(['inference.recording', 'inference.alerts']);
    // The server's live metrics carry the labels the rules and the dashboard use:
    // the recording rule yields one series per arm (so `arm` is on inference_requests_total).
    // Rates need traffic between two scrapes: keep calls going until the rule shows both arms.
    const recorded = waitFor(
      'arm:inference_predict_requests:rate5m > 0 for both arms',
      async () => {
        const res = await fetch(
          `${prom}/api/v1/query?query=${encodeURIComponent('arm:inference_predict_requests:rate5m')}`,
        );
        const body = (await res.json()) as {
          data: { result: { metric: { arm?: string }; value: [number, string] }[] };
        };
        const arms = body.data.result.filter((r) => Number(r.value[1]) > 0).map((r) => r.metric.arm);
        return arms.includes('stable') && arms.includes('canary') ? arms.sort() : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    const traffic = await loadUntil(
      grpc,
      recorded.catch(() => undefined),
      {
        firstUser: nextUser,
        concurrency: 2,
        maxMs: 65_000,
      },
    );
    nextUser += traffic.ok + traffic.failed;
    const armsRecorded = await recorded;
    expect(armsRecorded).to.deep.equal(['canary', 'stable']);
    // Every dashboard query runs on this Prometheus.
    for (const q of dashboardQueries(loadDashboard())) {
      const res = await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(q.expr)}`);
      const body = (await res.json()) as { status: string; error?: string };
      expect(body.status, `${q.panel}: ${q.expr}: ${body.error}`).to.equal('success');
    }
  });

  it('spreads calls over three stable replicas after --scale stable=3', async function () {
    this.timeout(240_000);
    // --no-recreate: compose (through podman's API) otherwise recreates the running
    // containers, and once failed there with "does not exist in database".
    const upMs = await stack.up(['--no-recreate', '--scale', 'stable=3']);
    const hosts = await waitFor(
      'Envoy to see three healthy stable hosts',
      async () => {
        const h = (await admin.clusters()).get('stable') ?? [];
        return h.length === 3 && h.every((x) => x.healthy) ? h : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    log(
      `--scale stable=3: up --wait ${(upMs / 1000).toFixed(1)} s; Envoy hosts ${hosts.map((h) => h.address).join(', ')}`,
    );
    // Settled: three healthy hosts on three polls in a row, a second apart (one health
    // check each). A replica that has only just started can still fail a check while its
    // container warms up on a loaded machine; that flap is logged below, not hidden.
    let settled = 0;
    await waitFor(
      'the three stable hosts to stay healthy for three polls',
      async () => {
        const h = (await admin.clusters()).get('stable') ?? [];
        settled = h.length === 3 && h.every((x) => x.healthy) ? settled + 1 : 0;
        return settled >= 3 ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    const checks = async () =>
      Object.fromEntries(
        [...(await admin.stats('cluster\\.stable\\.health_check\\.(failure|network_failure|success)$'))].map(
          ([k, v]) => [k.replace('cluster.stable.health_check.', ''), v],
        ),
      );
    const before = await hostRequests(admin, 'stable');
    const checksBefore = await checks();
    // Round robin gives each replica about a third. Rounds of 300 calls, at most three,
    // until every replica has had a sixth of the calls sent: a replica that is left out
    // (or starved) for all 900 calls fails this.
    const perRound = 300;
    let sent = 0;
    let deltas: number[] = [];
    for (let round = 0; round < 3; round++) {
      for (const user of users(perRound)) await predict(qa, user, { override: 'stable' });
      sent += perRound;
      const afterCounts = await hostRequests(admin, 'stable');
      deltas = hosts.map((h) => (afterCounts.get(h.address) ?? 0) - (before.get(h.address) ?? 0));
      const flags = ((await admin.clusters()).get('stable') ?? []).map(
        (h) => `${h.address}:${h.flags.join('|') || 'ok'}`,
      );
      log(
        `${sent} stable calls per replica: ${deltas.join(', ')}; health checks ${JSON.stringify(checksBefore)} -> ${JSON.stringify(await checks())}; hosts ${flags.join(', ')}`,
      );
      if (deltas.every((d) => d >= sent / 6)) break;
    }
    expect(deltas.reduce((a, b) => a + b, 0)).to.be.at.least(sent);
    for (const d of deltas) expect(d).to.be.at.least(sent / 6);
  });

  it('drains every server on `docker compose stop` / `down` within the grace period', async function () {
    this.timeout(180_000);
    const servers = (await stack.ps()).filter((c) => c.Service === 'stable' || c.Service === 'canary');
    expect(servers).to.have.length(4);
    // `down` is stop, then remove: stop first, so the containers' logs and exit codes can
    // still be read (following the logs through `down` lost their ends under load).
    const t0 = Date.now();
    await stack.runOk(['stop', '--timeout', String(STOP_GRACE_MS / 1000)], STOP_GRACE_MS + 60_000);
    const stopMs = Date.now() - t0;
    const stopped = [];
    for (const c of servers) {
      const s = await stack.inspect<{
        State: { Status: string; ExitCode: number; StartedAt: string; FinishedAt: string };
      }>(c.ID);
      const records = (await stack.docker(['logs', c.ID]))
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as { msg?: string; time?: number });
      stopped.push({ c, state: s.State, records });
    }
    // On a failure, say what each server did from the signal on (and what came just before it).
    const story = stopped
      .map(({ c, state, records }) => {
        const signalAt = records.findIndex((r) => r.msg === 'signal received; shutting down');
        const tail = (signalAt >= 0 ? records.slice(Math.max(0, signalAt - 3)) : records.slice(-10)).map(
          (r) => JSON.stringify(r),
        );
        return `${c.Name}: ${JSON.stringify(state)}\n  ${tail.join('\n  ')}`;
      })
      .join('\n');
    // Podman says there when it gave up on SIGTERM ("… resorting to SIGKILL").
    const podmanWarnings = readFileSync(podmanLog, 'utf8')
      .split('\n')
      .filter((l) => /level=(warning|error)|SIGKILL/.test(l))
      .slice(-20);
    const why = `stop took ${(stopMs / 1000).toFixed(1)} s\n${story}\npodman system service warnings:\n  ${podmanWarnings.join('\n  ')}`;
    for (const { c, state, records } of stopped) {
      // 0: the server drained and exited by itself; 137 would be the SIGKILL after the grace period.
      expect(state, `${c.Name}\n${why}`).to.include({ Status: 'exited', ExitCode: 0 });
      const lines = records.map((r) => r.msg);
      expect(lines, `${c.Name}\n${why}`).to.include('shutdown: health NOT_SERVING, draining');
      expect(lines, `${c.Name}\n${why}`).to.include('shutdown: complete');
      expect(lines, `${c.Name}\n${why}`).to.not.include('shutdown: grace period over; forcing');
    }
    const downMs = await stack.down(STOP_GRACE_MS / 1000);
    log(
      `docker compose stop: ${(stopMs / 1000).toFixed(1)} s (drain ${DRAIN_MS / 1000} s), then down: ${(downMs / 1000).toFixed(1)} s`,
    );
    expect(stopMs).to.be.within(DRAIN_MS, STOP_GRACE_MS);
    expect(await stack.ps()).to.deep.equal([]);
  });
});

/** Envoy's view of each arm's hosts, each container's state, and the last lines of Envoy's log. */
async function stackState(stack: ComposeStack, admin: EnvoyAdmin): Promise<string> {
  const parts: string[] = [];
  const attempt = async (what: string, f: () => Promise<string>) => {
    try {
      parts.push(`${what}: ${await f()}`);
    } catch (err) {
      parts.push(`${what}: unavailable (${(err as Error).message})`);
    }
  };
  await attempt('Envoy hosts', async () => {
    const clusters = await admin.clusters();
    return JSON.stringify(['stable', 'canary'].map((c) => ({ cluster: c, hosts: clusters.get(c) ?? [] })));
  });
  await attempt('containers', async () =>
    JSON.stringify((await stack.ps()).map((c) => ({ service: c.Service, state: c.State, health: c.Health }))),
  );
  await attempt('Envoy log (last 20 lines, both streams)', async () => {
    const r = await stack.run(['logs', '--no-color', '--tail', '20', 'envoy'], 30_000);
    return `\n${r.stdout}${r.stderr}`;
  });
  return parts.join('\n');
}
