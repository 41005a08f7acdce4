/**
 * Stage 1 end to end: real Envoy (from the project venv) in front of a real
 * stable and a real canary server, on loopback ports the kernel picks.
 *
 * The tests share one stack and run in order: split, stickiness, overrides,
 * access log, live weight change, then the canary draining and, after a
 * restart on the same port, the canary killed.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { expect } from 'chai';
import { cutOffMidResponse } from '../../scripts/lib/chaos/faults.js';
import { routesFile, weightsForCanary } from '../../scripts/lib/envoy/config.js';
import { writeFileAtomic } from '../../scripts/lib/envoy/files.js';
import { switchWeights } from '../../scripts/lib/envoy/switch.js';
import { toYaml } from '../../scripts/lib/envoy/yaml.js';
import {
  type AbStack,
  type CallResult,
  countArms,
  failures,
  LoadLoop,
  loggedCalls,
  runCalls,
  startAbStack,
  withinSigma,
} from '../helpers/envoy.js';
import { ROOT, waitFor } from '../helpers/server.js';

describe('Envoy A/B routing (stage 1)', function () {
  this.timeout(60_000);
  let stack: AbStack;
  /** Arm of each user in the first split, by Envoy's x-ab-arm. */
  const firstArm = new Map<string, string>();

  before(async () => {
    // The canary drains for 3 s on SIGTERM: long enough to watch Envoy route around it.
    stack = await startAbStack({ canaryEnv: { DRAIN_MS: '3000' } });
  });

  after(async () => {
    await stack?.stop();
  });

  it('splits 2000 distinct users 90/10 within 4σ and tags each response with its arm', async () => {
    const results = await runCalls(stack.client, 2000, (i) => ({ user: `split-${i}` }));
    expect(failures(results)).to.deep.equal([]);
    for (const r of results) {
      expect(r.armHeader).to.be.oneOf(['stable', 'canary']);
      // Envoy's tag and the server's own role agree.
      expect(r.response?.arm).to.equal(r.armHeader);
      firstArm.set(r.user as string, r.armHeader as string);
    }
    const check = withinSigma(countArms(results).canary ?? 0, 2000, 0.1);
    expect(check.ok, check.text).to.equal(true);
  });

  it('keeps every user on the same arm, and splits calls without x-user-id at random', async () => {
    const users = [...firstArm.keys()].slice(0, 600);
    const again = await runCalls(stack.client, 1200, (i) => ({ user: users[i % 600] }));
    expect(failures(again)).to.deep.equal([]);
    const moved = again.filter((r) => r.armHeader !== firstArm.get(r.user as string));
    expect(moved.map((r) => r.user)).to.deep.equal([]);

    const anonymous = await runCalls(stack.client, 600, () => ({}));
    expect(failures(anonymous)).to.deep.equal([]);
    const check = withinSigma(countArms(anonymous).canary ?? 0, 600, 0.1);
    expect(check.ok, check.text).to.equal(true);
  });

  it('forces an arm with the x-ab-group QA override (on the QA listener), both ways', async () => {
    const canaryUsers = [...firstArm].filter(([, arm]) => arm === 'canary').map(([u]) => u);
    const stableUsers = [...firstArm].filter(([, arm]) => arm === 'stable').map(([u]) => u);
    const toStable = await runCalls(stack.qaClient, 50, (i) => ({
      user: canaryUsers[i % canaryUsers.length],
      override: 'stable',
    }));
    const toCanary = await runCalls(stack.qaClient, 50, (i) => ({
      user: stableUsers[i],
      override: 'canary',
    }));
    expect(failures([...toStable, ...toCanary])).to.deep.equal([]);
    expect(countArms(toStable)).to.deep.equal({ stable: 50 });
    expect(countArms(toCanary)).to.deep.equal({ canary: 50 });
    expect(toCanary.every((r) => r.response?.arm === 'canary')).to.equal(true);
    // Anything else is not an override: the user's own arm.
    const other = await runCalls(stack.qaClient, 20, (i) => ({ user: canaryUsers[i], override: 'both' }));
    expect(countArms(other)).to.deep.equal({ canary: 20 });
  });

  it('access-logs the route cluster, the arm, the gRPC status and the user', async () => {
    const user = [...firstArm].find(([, arm]) => arm === 'canary')?.[0] as string;
    let entries = stack.accessLog();
    // The test Envoy flushes its access log every 100 ms.
    await waitFor(
      'the access log to hold the split and the overrides',
      () => {
        entries = stack.accessLog();
        return entries.some((e) => e.user === user) && entries.some((e) => e.override === 'stable');
      },
      5000,
      50,
    );
    const mine = entries.filter((e) => e.user === user && e.override === null);
    expect(mine[0]).to.include({
      cluster: 'canary_with_fallback',
      arm: 'canary',
      grpc_status: 'OK',
      response_flags: '-',
    });
    const forced = entries.find((e) => e.override === 'stable');
    expect(forced).to.include({ cluster: 'stable', arm: 'stable', grpc_status: 'OK' });
  });

  it('counts calls per gRPC method and arm (grpc_stats filter)', async () => {
    const stats = await stack.admin.stats('\\.grpc\\.inference\\.v1\\.InferenceService\\.Predict\\.success$');
    const success = (cluster: string) =>
      Number(stats.get(`cluster.${cluster}.grpc.inference.v1.InferenceService.Predict.success`) ?? 0);
    expect(success('stable')).to.be.greaterThan(1500);
    expect(success('canary_with_fallback')).to.be.greaterThan(100);
    expect(success('canary')).to.be.greaterThan(0); // the QA overrides
  });

  it('changes the weights under traffic with zero failed calls, and the new split holds', async () => {
    const loop = new LoadLoop(stack.client, (i) => ({ user: `live-${i}` }), {
      maxCalls: 20_000,
      maxMs: 30_000,
    });
    await loop.waitForResults(300);
    const switched = await switchWeights({
      admin: stack.admin,
      routesPath: stack.routesPath,
      weights: weightsForCanary(25),
    });
    expect(switched.before.weights).to.deep.equal({ stable: 90, canary: 10 });
    expect(switched.after.weights).to.deep.equal({ stable: 75, canary: 25 });
    const atSwitch = loop.results.length;
    await loop.waitForResults(atSwitch + 500);
    const during = await loop.stop();
    expect(failures(during)).to.deep.equal([]);

    const after = await runCalls(stack.client, 2000, (i) => ({ user: `after-${i}` }));
    expect(failures(after)).to.deep.equal([]);
    const check = withinSigma(countArms(after).canary ?? 0, 2000, 0.25);
    expect(check.ok, check.text).to.equal(true);

    // Canary last, total constant: raising the canary moves stable users only.
    const users = [...firstArm.keys()];
    const again = await runCalls(stack.client, users.length, (i) => ({ user: users[i] }));
    const wasCanary = again.filter((r) => firstArm.get(r.user as string) === 'canary');
    expect(countArms(wasCanary)).to.deep.equal({ canary: wasCanary.length });
    const moved = again.filter(
      (r) => firstArm.get(r.user as string) === 'stable' && r.armHeader === 'canary',
    );
    // About 15 of every 90 stable users move.
    const stableCount = users.length - wasCanary.length;
    const movedCheck = withinSigma(moved.length, stableCount, 15 / 90);
    expect(movedCheck.ok, movedCheck.text).to.equal(true);
  });

  it("`npm run weights` (the rollout's weights action) reports before and after, and fails clearly when Envoy does not load the file", () => {
    const script = join(ROOT, 'dist', 'scripts', 'ops', 'rollout.js');
    const admin = stack.admin.base;
    const ok = spawnSync(
      process.execPath,
      [script, 'weights', '--canary', '10', '--admin', admin, '--routes', stack.routesPath],
      {
        encoding: 'utf8',
        timeout: 20_000,
      },
    );
    expect(ok.status, ok.stderr).to.equal(0);
    expect(ok.stdout).to.match(
      /^weights: stable 75% \/ canary 25% → stable 90% \/ canary 10% \(Envoy accepted version "stable-90-canary-10-.*" in \d+ ms\)/m,
    );

    const status = spawnSync(
      process.execPath,
      [script, 'status', '--admin', admin, '--routes', stack.routesPath],
      {
        encoding: 'utf8',
      },
    );
    expect(status.stdout).to.match(/^weights: +stable 90% \/ canary 10%/m);

    const wrongFile = spawnSync(
      process.execPath,
      [
        script,
        'weights',
        '30',
        '--admin',
        admin,
        '--routes',
        join(stack.dir, 'elsewhere', 'routes', 'routes.yaml'),
        '--timeout-ms',
        '1000',
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    expect(wrongFile.status).to.equal(1);
    expect(wrongFile.stderr, wrongFile.stderr).to.match(
      /did not load version .* within 1000 ms.*Envoy watches ".*routes\.yaml"/,
    );

    const noEnvoy = spawnSync(
      process.execPath,
      [script, 'weights', '100', '--admin', '127.0.0.1:1', '--routes', stack.routesPath],
      {
        encoding: 'utf8',
      },
    );
    expect(noEnvoy.status).to.equal(1);
    expect(noEnvoy.stderr).to.match(/did not answer.*Nothing was written/);
  });

  it('exposes admin reads, and no admin writes, on the read-only admin view', async () => {
    const view = `http://127.0.0.1:${stack.adminViewPort}`;
    const prom = await fetch(`${view}/stats/prometheus`);
    expect(prom.status).to.equal(200);
    expect(await prom.text()).to.include('envoy_cluster_upstream_rq_total{envoy_cluster_name="stable"}');
    const clusters = await fetch(`${view}/clusters?format=json`);
    expect(clusters.status).to.equal(200);
    for (const path of [
      '/quitquitquit',
      '/healthcheck/fail',
      '/runtime_modify?x=1',
      '/logging?level=trace',
    ]) {
      expect((await fetch(`${view}${path}`, { method: 'POST' })).status, path).to.equal(404);
    }
    expect((await fetch(`${view}/quitquitquit`)).status).to.equal(404);
    expect(await stack.admin.ready()).to.equal(true);
    // `npm run rollout -- status` works through it, as it does against the Docker stack's port 9902.
    const status = spawnSync(
      process.execPath,
      [
        join(ROOT, 'dist', 'scripts', 'ops', 'rollout.js'),
        'status',
        '--admin',
        `127.0.0.1:${stack.adminViewPort}`,
        '--routes',
        stack.routesPath,
      ],
      { encoding: 'utf8' },
    );
    expect(status.status, status.stderr).to.equal(0);
    expect(status.stdout).to.match(/^weights: +stable 90% \/ canary 10%/m);
  });

  it('counts a rejected routes file in update_rejected and keeps serving the previous version', async () => {
    const before = await stack.admin.rds();
    // A well-formed file for the wrong route configuration: Envoy must refuse it.
    const file = routesFile(weightsForCanary(50), 'bad');
    const bad = { ...file, resources: [{ ...file.resources[0], name: 'not_ab_routes' }] };
    await writeFileAtomic(stack.routesPath, toYaml(bad));
    await waitFor(
      'Envoy to reject the file',
      async () => (await stack.admin.rds()).updateRejected > before.updateRejected,
    );
    const live = await stack.admin.liveRoutes();
    expect(live?.weights).to.deep.equal({ stable: 90, canary: 10 });
    expect(live?.version).to.equal(before.versionText);
  });

  it('sends a draining canary (NOT_SERVING) no new traffic, and fails no call', async () => {
    const canary = stack.canary;
    const served = () => canary.lines.filter((l) => l.msg === 'Predict');
    const loop = new LoadLoop(stack.client, (i) => ({ user: `drain-${i}` }));
    await loop.waitForResults(200);
    expect(
      countArms(loop.results).canary ?? 0,
      'calls the canary answered before the drain',
    ).to.be.greaterThan(0);
    await waitFor('the canary to log the calls it answered', () => served().length > 0);
    const exited = canary.stop(); // SIGTERM: health NOT_SERVING, then a 3 s drain
    await waitFor(
      'Envoy to mark the canary unhealthy',
      async () => !(await stack.admin.clusterHealthy('canary')),
      5000,
      20,
    );
    // Calls Envoy had already routed may still finish; give them a moment, then watch.
    const settled = loop.results.length;
    await loop.waitForResults(settled + 100);
    const fromMs = Date.now();
    const from = loop.results.length;
    // Not bounded by the 3 s drain: on a loaded machine 600 calls can take longer, and
    // once the canary has exited it serves nothing either.
    await loop.waitForResults(from + 600);
    const results = await loop.stop();
    // The canary's own account is complete once it has exited (it flushes its log on
    // the way out), and its lines carry the time it answered: lines that merely
    // reach this process late (async stdout under load) are not calls served late.
    // Awaiting the exit first also frees its port for the next test, whatever fails here.
    const code = await exited;
    expect(failures(results)).to.deep.equal([]);
    const late = served().filter((l) => Date.parse(String(l.time)) >= fromMs);
    expect(
      late.map((l) => `${l.time} ${l.requestId}`),
      'Predict calls the draining canary served',
    ).to.deep.equal([]);
    // ~10% of these users hash to the canary; the aggregate cluster sent them to stable.
    expect(countArms(results.slice(from))).to.deep.equal({ stable: results.length - from });
    expect(code).to.equal(0);
  });

  it('fails no call when the canary is killed with SIGKILL under traffic', async () => {
    const canary = await stack.restartCanary();
    const predicts = () => canary.lines.filter((l) => l.msg === 'Predict').length;
    const logBefore = stack.accessLog().length;
    const loop = new LoadLoop(stack.client, (i) => ({ user: `kill-${i}` }));
    await waitFor('the new canary to serve traffic', () => predicts() >= 30, 10_000);
    const killedAtMs = Date.now();
    await canary.kill();
    const killedAt = loop.results.length;
    await waitFor(
      'Envoy to mark the dead canary unhealthy',
      async () => !(await stack.admin.clusterHealthy('canary')),
      5000,
      20,
    );
    await loop.waitForResults(killedAt + 500);
    const results: CallResult[] = await loop.stop();
    // The one failure no proxy can retry: a call the canary was already answering
    // when it was killed, whose response headers Envoy had forwarded (HTTP cannot
    // take back a started response). Every such call must be exactly that, proved
    // by Envoy's own access log; every other call, above all every call started
    // after the kill, must succeed.
    const cutOff = results.filter((r) => r.error);
    expect(
      failures(cutOff.filter((r) => r.startedAt > killedAtMs)),
      'failed calls started after the kill',
    ).to.deep.equal([]);
    if (cutOff.length > 0) {
      const entries = await loggedCalls(stack, cutOff, logBefore);
      for (const e of entries) {
        const what = `${failures(cutOff).join('; ')} / ${JSON.stringify(e)}`;
        expect(cutOffMidResponse(e), what).to.equal(true);
      }
      expect(cutOff.length, 'calls cut off mid-response').to.be.at.most(10);
    }
    const arms = countArms(results.slice(killedAt));
    expect(arms.stable).to.be.greaterThan(0);

    // Calls that met the dead canary were retried on stable: the cross-cluster retry did
    // the work. Wait until Envoy has logged every call of the loop, then count.
    const logged = await loggedCalls(stack, results, logBefore);
    const retried = logged.filter((e) => Number(e.attempts) > 1);
    expect(retried.length, 'calls retried off the killed canary').to.be.greaterThan(0);
    // A retried call either ended on stable, or is one of the cut-off calls proved above.
    const cutOffUsers = new Set(cutOff.map((r) => r.user));
    expect(
      retried.filter(
        (e) => !(e.arm === 'stable' && e.grpc_status === 'OK') && !cutOffUsers.has(e.user ?? ''),
      ),
    ).to.deep.equal([]);
  });

  it('uses no deprecated Envoy field', async () => {
    const stats = await stack.admin.stats('^runtime\\.deprecated_feature_use$');
    expect(stats.get('runtime.deprecated_feature_use')).to.equal(0);
    expect(stack.envoy.log.filter((l) => /deprecat/i.test(l))).to.deep.equal([]);
  });
});

describe('Envoy A/B routing: a dead canary before any health check notices', function () {
  this.timeout(60_000);
  let stack: AbStack;

  before(async () => {
    // Active checks every 60 s: after the first one, only retries and outlier detection can help.
    stack = await startAbStack({ healthCheckIntervalMs: 60_000 });
  });

  after(async () => {
    await stack?.stop();
  });

  it('retries every call that meets the dead canary on stable, then ejects it: zero failed calls', async () => {
    const canary = stack.canary;
    // Warm traffic first, so Envoy holds an open HTTP/2 connection to the canary, then
    // let every call finish before the kill: the canary is dead before the load below
    // starts, so no call can be cut off mid-response (that unretryable case, a kill
    // while the canary answers, is the SIGKILL test's). Every call that meets this
    // canary meets a dead one: a reset pooled connection or a refused connect.
    const warm = await runCalls(stack.client, 200, (i) => ({ user: `warm-${i}` }));
    expect(failures(warm), 'warm-up calls').to.deep.equal([]);
    expect(countArms(warm).canary ?? 0, 'warm-up calls the canary answered').to.be.greaterThan(0);
    await canary.kill();
    expect(canary.proc.signalCode, 'the canary process').to.equal('SIGKILL');
    const logBefore = stack.accessLog().length;
    const loop = new LoadLoop(stack.client, (i) => ({ user: `dead-${i}` }));
    // Outlier detection, not the (60 s) active check, takes the host out of rotation.
    await waitFor(
      'outlier detection to eject the dead canary',
      async () =>
        ((await stack.admin.clusters()).get('canary')?.[0]?.flags ?? []).includes('failed_outlier_check'),
      10_000,
      20,
    );
    const ejectedAtMs = Date.now();
    // The ejection lasts base_ejection_time (10 s), then the dead host is tried again:
    // judge 300 calls, or as many as a loaded machine manages in 7 s, well inside it.
    const windowEnd = ejectedAtMs + 7000;
    const target = loop.results.length + 300;
    await waitFor(
      '300 more calls through Envoy, or 7 s',
      () => loop.results.length >= target || Date.now() >= windowEnd,
      10_000,
    );
    const results = await loop.stop();
    expect(failures(results), 'failed calls').to.deep.equal([]);
    const hosts = (await stack.admin.clusters()).get('canary') ?? [];
    expect(hosts[0]?.flags).to.not.include('failed_active_hc');

    // Envoy's own account of every call: wait until it has logged them all, then judge.
    const entries = await loggedCalls(stack, results, logBefore);
    expect(countArms(results)).to.deep.equal({ stable: results.length });
    expect(entries.filter((e) => e.grpc_status !== 'OK' || e.arm !== 'stable')).to.deep.equal([]);
    // The calls that met the dead canary: retried, and answered by stable. Outlier
    // detection ejects after 3 consecutive gateway failures, so at least 3 met it.
    const retried = entries.filter((e) => Number(e.attempts) > 1);
    expect(retried.length, 'calls retried off the dead canary').to.be.at.least(3);
    // After the ejection the aggregate cluster sends the canary's share straight to
    // stable: a call started once the ejection showed is never retried.
    const late = new Set(
      results.filter((r) => r.startedAt > ejectedAtMs && r.startedAt < windowEnd).map((r) => r.user),
    );
    const lateEntries = entries.filter((e) => late.has(e.user ?? ''));
    expect(lateEntries.length, 'calls started after the ejection').to.be.at.least(50);
    expect(lateEntries.filter((e) => Number(e.attempts) !== 1)).to.deep.equal([]);
  });
});
