import { cpSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { freePort } from '../../scripts/lib/ports.js';
import { VERSION_PATTERN } from '../../server/model-manifest.js';
import { writeLabels } from '../../server/version-labels.js';
import { type CliRun, nodeScript } from '../helpers/cli.js';
import {
  copyModels,
  DEMO_MODELS,
  ROOT,
  removeDir,
  startApp,
  type TestApp,
  waitFor,
} from '../helpers/server.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'models');

const versionsOf = (modelDir: string) =>
  readdirSync(modelDir)
    .filter((v) => VERSION_PATTERN.test(v))
    .sort();
const DEMO_VERSIONS = versionsOf(join(DEMO_MODELS, 'conversion'));
const OLDER = DEMO_VERSIONS[0] as string;
const NEWER = DEMO_VERSIONS[DEMO_VERSIONS.length - 1] as string;
const OLDER_DIR = join(DEMO_MODELS, 'conversion', OLDER);

interface QaJson {
  model: string;
  version: string;
  expectedAt: string;
  cases: {
    name: string;
    request: Record<string, unknown>;
    expect: { code: string; predictions?: { label: number; score: number }[]; scoreTolerance?: number };
  }[];
}

const readQa = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as QaJson;

/** Runs the built CLI as a child process; bounded by a timeout. */
const qaCli = nodeScript('ops/qa');

const lines = (run: CliRun, prefix: string) => run.stdout.split('\n').filter((l) => l.startsWith(prefix));

describe('qa (CLI as a child process) against a real server', function () {
  this.timeout(60_000);
  let repo: string;
  let tmp: string;
  let t: TestApp;
  let target: string;

  before(async () => {
    // Demo LR versions plus the GBDT and MLP fixtures, so every family's qa.json can be run.
    repo = copyModels('qa-models-');
    for (const m of ['conversion-gbdt', 'conversion-mlp'])
      cpSync(join(FIXTURES, m), join(repo, m), { recursive: true });
    tmp = mkdtempSync(join(tmpdir(), 'qa-files-'));
    // QA scores were computed at `expectedAt`; fixing the clock there keeps the age features, and so the
    // expected scores, valid however long after training the test runs.
    const now = Date.parse(readQa(join(OLDER_DIR, 'qa.json')).expectedAt);
    // Raw user ids in the log, so the test can read back what qa sent.
    t = await startApp({ MODEL_ROOT: repo, LOG_USER_IDS: 'raw', MODEL_POLL_MS: '100' }, () => now);
    target = `127.0.0.1:${t.ports.grpc}`;
  });

  /** Labels `version` stable in its model's directory and waits until the server serves it. */
  async function serve(model: string, version: string): Promise<void> {
    await writeLabels(join(repo, model), { stable: version });
    await waitFor(`${model} ${version} serving`, () =>
      t.app.repository.list().some((m) => m.name === model && m.serving?.version === version),
    );
  }
  after(async () => {
    await t?.stop();
    removeDir(repo);
    removeDir(tmp);
  });

  const qaFiles = [
    ...DEMO_VERSIONS.map((v) => join(DEMO_MODELS, 'conversion', v, 'qa.json')),
    ...['conversion-gbdt', 'conversion-mlp'].map((m) => {
      const dir = join(FIXTURES, m);
      return join(dir, versionsOf(dir).pop() as string, 'qa.json');
    }),
  ];
  for (const file of qaFiles) {
    it(`passes every case of ${file.slice(ROOT.length)}`, async () => {
      const qa = readQa(file);
      await serve(qa.model, qa.version);
      const n = qa.cases.length;
      const run = await qaCli(['--target', target, '--file', file]);
      expect(run.code, run.stdout + run.stderr).to.equal(0);
      expect(lines(run, 'PASS  ')).to.have.length(n);
      expect(lines(run, 'FAIL  ')).to.deep.equal([]);
      expect(run.stdout).to.contain(`qa: ${n} passed, 0 failed of ${n} cases`);
    });
  }

  it('fails before any case when the answering server serves another version than the one under test', async () => {
    await serve('conversion', NEWER);
    const run = await qaCli(['--target', target, '--version-dir', OLDER_DIR]);
    expect(run.code, run.stdout).to.equal(1);
    expect(run.stdout).to.contain(`serves conversion ${NEWER}, not ${OLDER}, the version under test`);
    expect(lines(run, 'PASS  ')).to.deep.equal([]);
  });

  it('accepts --version-dir as a shorthand for DIR/qa.json', async () => {
    await serve('conversion', OLDER);
    const run = await qaCli(['--target', target, '--version-dir', OLDER_DIR]);
    expect(run.code, run.stdout + run.stderr).to.equal(0);
    // It ran that version's cases, all of them (exit 0 alone would also hold for no case at all).
    const n = readQa(join(OLDER_DIR, 'qa.json')).cases.length;
    expect(run.stdout).to.contain(`qa: ${n} passed, 0 failed of ${n} cases`);
  });

  it('fails, naming each case, when expectations are altered: a label, a score, a status code', async () => {
    await serve('conversion', OLDER);
    const qa = readQa(join(OLDER_DIR, 'qa.json'));
    const ok = qa.cases.filter((c) => c.expect.code === 'OK' && c.expect.predictions?.length === 1);
    const [flipLabel, shiftScore] = ok;
    const badCode = qa.cases.find((c) => c.expect.code === 'INVALID_ARGUMENT');
    if (!flipLabel?.expect.predictions?.[0] || !shiftScore?.expect.predictions?.[0] || !badCode) {
      throw new Error('the demo qa.json lacks the OK and INVALID_ARGUMENT cases this test alters');
    }
    flipLabel.expect.predictions[0].label = 1 - flipLabel.expect.predictions[0].label;
    shiftScore.expect.predictions[0].score += 10 * (shiftScore.expect.scoreTolerance ?? 0.01);
    badCode.expect.code = 'OK';
    const altered = join(tmp, 'altered-qa.json');
    writeFileSync(altered, JSON.stringify(qa, null, 2));

    const run = await qaCli(['--target', target, '--file', altered]);
    expect(run.code, run.stdout).to.equal(1);
    const failed = lines(run, 'FAIL  ');
    expect(failed).to.have.length(3);
    expect(failed.find((l) => l.startsWith(`FAIL  ${flipLabel.name} - `))).to.match(
      /predictions\[0\]\.label is/,
    );
    expect(failed.find((l) => l.startsWith(`FAIL  ${shiftScore.name} - `))).to.match(
      /predictions\[0\]\.score is/,
    );
    expect(failed.find((l) => l.startsWith(`FAIL  ${badCode.name} - `))).to.contain(
      'expected OK, got INVALID_ARGUMENT',
    );
    expect(lines(run, 'PASS  ')).to.have.length(qa.cases.length - 3);
    expect(run.stdout).to.contain(`qa: ${qa.cases.length - 3} passed, 3 failed of ${qa.cases.length} cases`);
    expect(run.stdout).to.contain(JSON.stringify(flipLabel.name));
  });

  /** Runs the demo QA file with `extra` arguments and returns the users the server logged for OK calls. */
  async function usersSeen(extra: string[]): Promise<{ run: CliRun; users: unknown[] }> {
    await serve('conversion', OLDER);
    const before = t.logs.withMsg('Predict').length;
    const run = await qaCli(['--target', target, '--version-dir', OLDER_DIR, ...extra]);
    await waitFor('the Predict log lines of the run', () => t.logs.withMsg('Predict').length > before);
    const ok = t.logs
      .withMsg('Predict')
      .slice(before)
      .filter((l) => l.code === 'OK');
    return { run, users: ok.map((l) => l.user) };
  }

  it('sends x-user-id with every call: "qa" by default, or --user-id', async () => {
    const dflt = await usersSeen([]);
    expect(dflt.run.code, dflt.run.stdout).to.equal(0);
    expect(dflt.users.length).to.be.greaterThan(0);
    expect(new Set(dflt.users)).to.deep.equal(new Set(['qa']));
    const chosen = await usersSeen(['--user-id', 'tester-7']);
    expect(chosen.run.code, chosen.run.stdout).to.equal(0);
    expect(new Set(chosen.users)).to.deep.equal(new Set(['tester-7']));
  });

  it('sends every --header as metadata (the server sees x-user-id given that way)', async () => {
    const { run, users } = await usersSeen([
      '--header',
      'x-ab-group=canary',
      '--header',
      'X-User-Id=from-header',
    ]);
    expect(run.code, run.stdout).to.equal(0);
    expect(run.stdout).to.contain('x-ab-group=canary').and.contain('x-user-id=from-header');
    expect(new Set(users)).to.deep.equal(new Set(['from-header']));
  });

  it('exits 3 when the target cannot be reached, 2 on bad usage or a malformed file', async () => {
    // A port that was just free: nothing listens there.
    const port = await freePort();
    const down = await qaCli([
      '--target',
      `127.0.0.1:${port}`,
      '--version-dir',
      OLDER_DIR,
      '--deadline-ms',
      '500',
    ]);
    expect(down.code, down.stdout).to.equal(3);
    expect(down.stdout).to.contain(`cannot reach 127.0.0.1:${port}`);

    const noTarget = await qaCli(['--version-dir', OLDER_DIR]);
    expect(noTarget.code).to.equal(2);
    expect(noTarget.stderr).to.contain('--target');

    writeFileSync(
      join(tmp, 'bad.json'),
      JSON.stringify({ model: 'conversion', version: OLDER, cases: [{}] }),
    );
    const bad = await qaCli(['--target', target, '--file', join(tmp, 'bad.json')]);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.contain('cases[0].name');
  });
});
