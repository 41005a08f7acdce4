/**
 * `npm run loadtest` through real Envoy in front of a real stable and canary
 * server: the project's generator reads Envoy's `x-ab-arm` on every call, so
 * latency and errors come out per arm. The canary's repository lacks the
 * stable arm's version, so calls pinned to it fail on the canary (NOT_FOUND
 * naming the arm) and succeed on stable: a generator that mixed up arms, or
 * lost the header on errors, fails here. No timing is judged.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { perArm } from '../../scripts/lib/load/arms.js';
import { parseLoadtestArgs } from '../../scripts/lib/load/options.js';
import { runLoadtest } from '../../scripts/lib/load/run.js';
import { type AbStack, demoVersions, startAbStack } from '../helpers/envoy.js';
import { copyModels, DEMO_MODELS, removeDir } from '../helpers/server.js';

describe('npm run loadtest through Envoy: latency and errors per arm', function () {
  this.timeout(120_000);
  let stack: AbStack;
  let reports: string;
  let canaryModels: string;
  const { older } = demoVersions();

  before(async () => {
    canaryModels = copyModels('loadtest-arms-canary-', { labels: true });
    rmSync(join(canaryModels, 'conversion', older), { recursive: true });
    stack = await startAbStack({ canaryEnv: { MODEL_ROOT: canaryModels } });
    reports = mkdtempSync(join(tmpdir(), 'loadtest-arms-'));
  });
  after(async () => {
    await stack?.stop();
    if (reports) removeDir(reports);
    if (canaryModels) removeDir(canaryModels);
  });

  const run = (...extra: string[]) =>
    runLoadtest(
      parseLoadtestArgs([
        '--target',
        `127.0.0.1:${stack.port}`,
        '--rps',
        '100',
        '--duration',
        '2s',
        '--metrics',
        'none',
        '--reports',
        reports,
        ...extra,
      ]),
      { modelRoot: DEMO_MODELS, progress: () => undefined },
    );

  it('splits the calls by x-ab-arm, about as the weights say', async () => {
    const out = await run();
    const arms = perArm(out.result.report) ?? [];
    const s = out.result.summary;
    expect(s.errorCount, JSON.stringify(out.result.report.errorDistribution)).to.equal(0);
    expect(arms.map((a) => a.arm)).to.deep.equal(['stable', 'canary']);
    expect(arms.reduce((n, a) => n + a.count, 0)).to.equal(s.count);
    const [stable, canary] = arms;
    expect(stable?.count).to.be.greaterThan(canary?.count ?? 0);
    expect(canary?.p99Ms).to.be.a('number');
  });

  it('counts each arm’s errors under that arm (a version the canary lacks: canary fails, stable does not)', async () => {
    const out = await run('--model-version', older);
    const arms = perArm(out.result.report) ?? [];
    const stable = arms.find((a) => a.arm === 'stable');
    const canary = arms.find((a) => a.arm === 'canary');
    expect(stable?.count).to.be.greaterThan(0);
    expect(stable?.errorCount, JSON.stringify(stable?.errors)).to.equal(0);
    expect(canary?.count).to.be.greaterThan(0);
    expect(canary?.okCount).to.equal(0);
    expect(canary?.errors).to.deep.equal({ NOT_FOUND: canary?.count });
    expect(arms.map((a) => a.arm)).to.not.include('(no arm)');
  });
});
