import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { perArm } from '../../scripts/lib/load/arms.js';
import { parseLoadtestArgs } from '../../scripts/lib/load/options.js';
import { expectedCall, mixedRecords } from '../../scripts/lib/load/payload.js';
import { runLoadtest } from '../../scripts/lib/load/run.js';
import { UserIds } from '../../server/call-log.js';
import { DEV_PSEUDONYM_KEY } from '../../server/config.js';
import { USER_ID_HEADER } from '../../server/headers.js';
import { asLogged, DEMO_MODELS, ROOT, removeDir, startApp, type TestApp } from '../helpers/server.js';

/**
 * What the load generator really sent, from the server's request logs: call n
 * carries the record and user (102079311 + n, in the body as a number and in
 * x-user-id as a string) that the payload's templates give call n.
 */
function expectTemplatedCalls(calls: readonly Record<string, unknown>[]): void {
  const records = mixedRecords(DEMO_MODELS, 'conversion');
  for (const line of calls) {
    const m = /^(loadtest-\d{8}T\d{6}Z)-(\d+)$/.exec(String(line.requestId));
    expect(m, String(line.requestId)).to.not.equal(null);
    const want = expectedCall(
      records,
      { model: 'conversion', version: '', runId: m?.[1] as string },
      Number(m?.[2]),
    );
    expect(line.user).to.equal(
      new UserIds('pseudonym', DEV_PSEUDONYM_KEY).forLog(want.metadata[USER_ID_HEADER] as string),
    );
    expect(line.inputs).to.deep.equal(
      (want.body as { instances: Record<string, unknown>[] }).instances.map(asLogged),
    );
  }
}

/**
 * The real thing, briefly: ghz (.tools/bin/ghz, from `node scripts/dev/bootstrap.mjs`)
 * against a real canary server on port 0, 50 calls/s for 2 s. No timing
 * thresholds: the checks are on counts, statuses, files and what the server saw.
 */
describe('npm run loadtest (real ghz, real server)', function () {
  this.timeout(60_000);
  let t: TestApp;
  let reports: string;

  before(async () => {
    // A canary, so a run exercises both A/B stages' bookkeeping.
    t = await startApp({ ROLE: 'canary' });
    reports = mkdtempSync(join(tmpdir(), 'loadtest-reports-'));
  });
  after(async () => {
    await t.stop();
    removeDir(reports);
  });

  /** 50 calls/s for 2 s at the test server, its metrics read for the split. */
  const fiftyPerSecond = () => [
    '--target',
    `127.0.0.1:${t.ports.grpc}`,
    '--rps',
    '50',
    '--duration',
    '2s',
    '--metrics',
    `127.0.0.1:${t.ports.metrics}`,
    '--reports',
    reports,
  ];

  it('runs ghz, parses its report, reads the split, writes both reports, with no errors', async () => {
    const opts = parseLoadtestArgs(['--generator', 'ghz', ...fiftyPerSecond()]);
    const progress: string[] = [];
    const out = await runLoadtest(opts, { modelRoot: DEMO_MODELS, progress: (line) => progress.push(line) });
    const s = out.result.summary;

    expect(s.count).to.be.greaterThan(0);
    expect(s.errorCount).to.equal(0);
    expect(s.latencyMs.p99)
      .to.be.a('number')
      .that.is.greaterThan(0)
      .and.at.most(s.latencyMs.max as number);
    // Every verdict but p99, which is timing and not for tests to judge.
    const untimed = out.result.verdicts.filter((v) => v.name !== 'p99');
    expect(untimed.map((v) => [v.name, v.ok])).to.deep.equal([
      ['requests', true],
      ['error-rate', true],
    ]);
    expect(progress.at(-1)).to.equal('[loadtest] ghz done');

    // The JSON is ghz's own report; the HTML is rendered from it.
    expect(JSON.parse(readFileSync(out.files.json, 'utf8')).count).to.equal(s.count);
    expect(readFileSync(out.files.html, 'utf8')).to.include(`${s.count}</td>`);
    expect(existsSync(out.files.request)).to.equal(true);
    expect(out.files.json.startsWith(join(reports, ''))).to.equal(true);

    // The split, from the server's own counters: all canary, and every positive
    // went to experiment or control (stage 2).
    const split = out.result.split;
    if ('unavailable' in split) throw new Error(`no split: ${split.unavailable}`);
    expect(split.total).to.equal(s.okCount);
    expect(split.byArm).to.deep.equal({ canary: s.okCount });
    expect((split.byGroup.experiment ?? 0) + (split.byGroup.control ?? 0)).to.equal(
      split.positivesByArm.canary ?? 0,
    );

    const calls = t.logs.withMsg('Predict');
    expect(calls).to.have.length(s.count);
    expectTemplatedCalls(calls);
  });

  it('the project’s own generator (the default): the same calls, and each call’s arm from the response', async () => {
    const opts = parseLoadtestArgs(fiftyPerSecond());
    expect(opts.generator).to.equal('node');
    const before = t.logs.withMsg('Predict').length;
    const out = await runLoadtest(opts, { modelRoot: DEMO_MODELS, progress: () => undefined });
    const s = out.result.summary;
    expect(out.ghzArgs).to.deep.equal([]);
    expect(s.count).to.be.greaterThan(0);
    expect(s.errorCount, JSON.stringify(out.result.report.errorDistribution)).to.equal(0);
    // No Envoy in front, so no x-ab-arm: the arm is the one the Predict response names.
    const arms = perArm(out.result.report);
    expect(arms?.map((a) => [a.arm, a.count, a.errorCount])).to.deep.equal([['canary', s.count, 0]]);
    const split = out.result.split;
    if ('unavailable' in split) throw new Error(`no split: ${split.unavailable}`);
    expect(split.byArm).to.deep.equal({ canary: s.okCount });
    expect(JSON.parse(readFileSync(out.files.json, 'utf8')).count).to.equal(s.count);

    // Call n is what ghz's templates would have sent as call n.
    const calls = t.logs.withMsg('Predict').slice(before);
    expect(calls).to.have.length(s.count);
    expectTemplatedCalls(calls);
  });

  it('--protocol oip: ghz drives ModelInfer by server reflection with the same records and users as Predict', async () => {
    const opts = parseLoadtestArgs(['--protocol', 'oip', '--reflection', ...fiftyPerSecond()]);
    const before = t.logs.withMsg('ModelInfer').length;
    const out = await runLoadtest(opts, { modelRoot: DEMO_MODELS, progress: () => undefined });
    const s = out.result.summary;
    expect(out.ghzArgs).to.include('--call=inference.GRPCInferenceService/ModelInfer');
    expect(out.ghzArgs.some((a) => a.startsWith('--proto='))).to.equal(false);
    expect(s.count).to.be.greaterThan(0);
    expect(s.errorCount, JSON.stringify(out.result.report.errorDistribution)).to.equal(0);
    const split = out.result.split;
    if ('unavailable' in split) throw new Error(`no split: ${split.unavailable}`);
    expect(split.total).to.equal(s.okCount);

    // Call n scored the very record (and user) a Predict load test sends as call n.
    const calls = t.logs.withMsg('ModelInfer').slice(before);
    expect(calls).to.have.length(s.count);
    expectTemplatedCalls(calls);
  });

  it('exits 1 from the command line, naming the SLO that was missed', async () => {
    const { code, stdout } = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      execFile(
        process.execPath,
        [
          join(ROOT, 'dist', 'scripts', 'load', 'loadtest.js'),
          '--target',
          `127.0.0.1:${t.ports.grpc}`,
          '--rps',
          '20',
          '--duration',
          '1s',
          '--payload',
          'seed',
          '--metrics',
          'none',
          '--slo-p99-ms',
          '0.001',
          '--reports',
          reports,
        ],
        { timeout: 30_000 },
        (err, stdout) => resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout }),
      );
    });
    expect(code).to.equal(1);
    expect(stdout).to.match(/SLO missed: p99 \(p99 [\d.]+ ms ≥ 0.001 ms\)/);
    expect(stdout).to.include('A/B split   not observed');
  });
});
