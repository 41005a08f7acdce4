import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { expect } from 'chai';
import { UsageError } from '../../scripts/lib/cli.js';
import {
  AbTally,
  analyse,
  chiSquare2,
  erfc,
  findLogFiles,
  formatReport,
  parseArgs,
  tallyFiles,
  wilson,
} from '../../scripts/ops/ab-report.js';
import { type PredictionRecord, UserIds } from '../../server/call-log.js';
import type { Group } from '../../server/experiment.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/**
 * A known log (test/fixtures/ab-predict.jsonl), lines as the server writes them:
 * - stable: 450 calls, 450 users, every 5th positive (90), all `baseline`;
 * - canary: 50 single-instance calls (users c000..c049; even j positive, j % 4 == 0
 *   experiment, else control; odd j canary_negative) and one call of three
 *   instances for user c050 labelled 1, 1, 0 (experiment, experiment, canary_negative);
 * - one failed Predict (INVALID_ARGUMENT, no outputs), a "server started" line
 *   and a non-JSON line.
 */
const FIXTURE = join(ROOT, 'test', 'fixtures', 'ab-predict.jsonl');
const EXPECT = { canaryShare: 0.1, experimentShare: 0.5, alpha: 0.001 };

describe('ab-report: statistics', () => {
  it('computes Wilson intervals that match published values', () => {
    // Newcombe (1998), Table I: 81/263 → 0.2553 to 0.3662.
    const ci = wilson(81, 263);
    expect(ci.low).to.be.closeTo(0.2553, 5e-4);
    expect(ci.high).to.be.closeTo(0.3662, 5e-4);
    // Degenerate cases stay inside [0, 1] and are not zero-width.
    expect(wilson(0, 10).low).to.equal(0);
    expect(wilson(0, 10).high).to.be.closeTo(0.2775, 5e-4);
    expect(wilson(10, 10).high).to.equal(1);
    expect(wilson(0, 0)).to.deep.equal({ low: 0, high: 1 });
  });

  it('computes erfc and chi-square p-values to the tabulated precision', () => {
    expect(erfc(0)).to.be.closeTo(1, 1e-7);
    expect(erfc(1)).to.be.closeTo(0.157299207, 1e-7);
    expect(erfc(-1)).to.be.closeTo(1.842700793, 1e-7);
    // χ²₁ critical values: 3.841 → p 0.05, 10.828 → p 0.001.
    expect(chiSquare2([0, 0], 0.5)).to.equal(undefined);
    const d = (chi2: number) => Math.sqrt((chi2 * 1000) / 4); // observed 500 ± d of 1000 at 50/50
    const at05 = chiSquare2([500 + d(3.841459), 500 - d(3.841459)], 0.5);
    expect(at05?.chi2).to.be.closeTo(3.841459, 1e-9);
    expect(at05?.p).to.be.closeTo(0.05, 1e-6);
    expect(chiSquare2([500 + d(10.827566), 500 - d(10.827566)], 0.5)?.p).to.be.closeTo(0.001, 1e-7);
    // 90/10 expected, 880/120 observed: χ² = 4.444, p = 0.0350.
    const r = chiSquare2([880, 120], 0.9);
    expect(r?.chi2).to.be.closeTo(4.4444, 1e-4);
    expect(r?.p).to.be.closeTo(0.035, 1e-4);
    // Too few expected in one category: not tested.
    expect(chiSquare2([40, 0], 0.9)).to.equal(undefined);
  });
});

describe('ab-report: the known log', () => {
  it('counts arms, groups, users and positives exactly', async () => {
    const tally = await tallyFiles([FIXTURE]);
    expect(tally.predictLines).to.equal(501);
    expect(tally.skipped).to.equal(1);
    expect(tally.unparsable).to.equal(1);
    const r = analyse(tally, EXPECT);
    expect(r.arms.unit).to.equal('users');
    expect(r.arms.rows.map((x) => [x.name, x.count])).to.deep.equal([
      ['stable', 450],
      ['canary', 51],
    ]);
    const g = Object.fromEntries(r.groups.map((x) => [`${x.arm}/${x.group}`, x]));
    expect(g['stable/baseline']).to.include({ predictions: 450, users: 450, positives: 90, treated: 90 });
    expect(g['canary/experiment']).to.include({ predictions: 15, users: 14, positives: 15, treated: 15 });
    expect(g['canary/control']).to.include({ predictions: 12, users: 12, positives: 12, treated: 0 });
    expect(g['canary/canary_negative']).to.include({ predictions: 26, users: 26, positives: 0, treated: 0 });
    expect(g['canary/(all)']).to.include({ predictions: 53, users: 51, positives: 27, treated: 15 });
    expect(g['stable/baseline']?.positiveRate).to.equal(0.2);
    expect(r.experiment.rows.map((x) => [x.name, x.count])).to.deep.equal([
      ['experiment', 14],
      ['control', 12],
    ]);
    expect(r.arms.srm).to.equal(false);
    expect(r.experiment.srm).to.equal(false);
    expect(r.usersOnBothArms).to.equal(0);
  });

  it('prints a table with shares, intervals and verdicts', async () => {
    const text = formatReport(analyse(await tallyFiles([FIXTURE]), EXPECT));
    expect(text).to.match(/^stable\s+450\s+89\.8%\s+\[86\.9%, 92\.2%\]\s+90\.0%$/m);
    expect(text).to.match(/^canary\s+51\s+10\.2%\s+\[7\.8%, 13\.1%\]\s+10\.0%$/m);
    expect(text).to.match(/^experiment\s+14\s+53\.8%/m);
    expect(text).to.match(/^canary\s+control\s+12\s+12\s+12\s+100\.0%/m);
    expect(text).to.not.include('MISMATCH');
    expect(text.match(/OK: chi-square/g)).to.have.length(2);
  });

  it('flags a sample ratio mismatch against other expected shares', async () => {
    const r = analyse(await tallyFiles([FIXTURE]), { ...EXPECT, canaryShare: 0.25 });
    expect(r.arms.srm).to.equal(true);
    expect(r.arms.test?.p).to.be.below(1e-10);
    expect(formatReport(r)).to.include('SAMPLE RATIO MISMATCH');
    const r2 = analyse(await tallyFiles([FIXTURE]), { ...EXPECT, experimentShare: 0.8 });
    expect(r2.experiment.srm).to.equal(true);
    expect(r2.arms.srm).to.equal(false);
  });

  it('reads gzip archives and stdin, skips symlinks, and filters by time', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ab-report-'));
    try {
      const text = readFileSync(FIXTURE);
      mkdirSync(join(dir, 'canary', 'archive'), { recursive: true });
      writeFileSync(join(dir, 'canary', 'archive', 'server.2026-11-24.1.log.gz'), gzipSync(text));
      writeFileSync(join(dir, 'canary', 'server.2026-11-24.2.log'), text);
      writeFileSync(join(dir, 'canary', 'notes.txt'), 'not a log');
      // pino-roll's `current.log` points at the active file; it must not count twice.
      symlinkSync(join(dir, 'canary', 'server.2026-11-24.2.log'), join(dir, 'canary', 'current.log'));
      const files = findLogFiles(dir);
      expect(files.map((f) => f.slice(dir.length + 1))).to.deep.equal([
        'canary/archive/server.2026-11-24.1.log.gz',
        'canary/server.2026-11-24.2.log',
      ]);
      expect((await tallyFiles(files)).predictLines).to.equal(2 * 501);
      const fromStdin = await tallyFiles(['-'], {}, Readable.from([text]));
      expect(fromStdin.predictLines).to.equal(501);
      const window = await tallyFiles([FIXTURE], {
        since: Date.parse('2026-11-24T10:00:02.000Z'),
        until: Date.parse('2026-11-24T10:00:12.000Z'),
      });
      // Ten seconds of log, one call per second: lines 2..11.
      expect(window.predictLines).to.equal(10);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  /** A Predict line exactly as the server's record type says (a renamed field fails to compile here). */
  const predictLine = (o: {
    arm: 'stable' | 'canary';
    group: Group;
    label?: 0 | 1;
    user?: string;
    requestId?: string;
    method?: string;
  }): string => {
    const record: PredictionRecord = {
      requestId: o.requestId ?? 'r',
      method: o.method ?? 'Predict',
      model: 'conversion',
      version: o.arm === 'stable' ? '20261124T041750Z' : '20261124T041754Z',
      arm: o.arm,
      code: 'OK',
      latencyMs: 0.1,
      time: '2026-11-24T10:00:00.000Z',
      event: 'prediction',
      experiment: 'positives-v1',
      ...(o.user === undefined ? {} : { user: o.user }),
      outputs: [{ score: 0.5, label: o.label ?? 0, group: o.group, action: 0 }],
    };
    return JSON.stringify({ level: 'info', ...record, msg: record.method });
  };

  it("counts ModelInfer's prediction records (the Open Inference Protocol) with Predict's, and nothing else", () => {
    const t = new AbTally();
    t.addLine(predictLine({ arm: 'stable', group: 'baseline', user: 'a' }));
    t.addLine(predictLine({ arm: 'canary', group: 'canary_negative', user: 'b', method: 'ModelInfer' }));
    t.addLine(predictLine({ arm: 'canary', group: 'canary_negative', user: 'c', method: 'ModelMetadata' }));
    expect(t.predictLines).to.equal(2);
    expect([...t.arms.keys()].sort()).to.deep.equal(['canary', 'stable']);
    expect(t.skipped).to.equal(0);
  });

  it('counts a user seen on both arms', () => {
    const t = new AbTally();
    t.addLine(predictLine({ arm: 'stable', group: 'baseline', user: 'same' }));
    t.addLine(predictLine({ arm: 'canary', group: 'canary_negative', user: 'same' }));
    expect(t.predictLines).to.equal(2);
    expect(analyse(t, EXPECT).usersOnBothArms).to.equal(1);
  });

  it('counts pseudonymised users as users: redaction does not blind the report', () => {
    const ids = new UserIds('pseudonym', 'test-key');
    const t = new AbTally();
    for (let i = 0; i < 900; i++)
      t.addLine(predictLine({ arm: 'stable', group: 'baseline', user: ids.forLog(`s${i}`) }));
    for (let i = 0; i < 100; i++) {
      // Each canary user twice: still one user.
      for (const r of ['a', 'b']) {
        t.addLine(
          predictLine({ arm: 'canary', group: 'canary_negative', user: ids.forLog(`c${i}`), requestId: r }),
        );
      }
    }
    const r = analyse(t, EXPECT);
    expect(r.arms.unit).to.equal('users');
    expect(r.arms.rows.map((x) => x.count)).to.deep.equal([900, 100]);
    expect(r.arms.srm).to.equal(false);
  });

  it('falls back to requests unless every arm carries users (users on stable only is no mismatch)', () => {
    const t = new AbTally();
    for (let i = 0; i < 900; i++)
      t.addLine(predictLine({ arm: 'stable', group: 'baseline', user: `s${i % 300}` }));
    for (let i = 0; i < 100; i++) t.addLine(predictLine({ arm: 'canary', group: 'canary_negative' }));
    const r = analyse(t, EXPECT);
    expect(r.arms.unit).to.equal('requests');
    expect(r.arms.rows.map((x) => x.count)).to.deep.equal([900, 100]);
    expect(r.arms.srm).to.equal(false);
  });

  it('skips Predict lines that are not complete prediction records', () => {
    const t = new AbTally();
    const good = JSON.parse(predictLine({ arm: 'stable', group: 'baseline', user: 'u' })) as Record<
      string,
      unknown
    >;
    const { outputs: _o, ...noOutputs } = good;
    t.addLine(JSON.stringify(noOutputs));
    t.addLine(JSON.stringify({ ...good, arm: 'blue' }));
    t.addLine(JSON.stringify({ ...good, event: undefined }));
    expect(t.predictLines).to.equal(0);
    expect(t.skipped).to.equal(3);
  });
});
describe('ab-report: command line', () => {
  it('validates options with clear messages', () => {
    const bad: [string[], RegExp][] = [
      [['--expected-canary', '10.5', FIXTURE], /--expected-canary must be an integer/],
      [['--expected-canary', '120', FIXTURE], /from 0 to 100/],
      [['--experiment-share', '2', FIXTURE], /--experiment-share must be a number from 0 to 1/],
      [['--since', 'yesterday', FIXTURE], /ISO 8601/],
      [['--nope'], /Unknown option/],
      [['--logs', '/nonexistent/dir'], /cannot read the log directory/],
    ];
    for (const [argv, re] of bad) {
      expect(() => parseArgs(argv), argv.join(' ')).to.throw(UsageError, re);
    }
    const ok = parseArgs(['--expected-canary', '25', '--experiment-share', '0.3', FIXTURE]);
    expect(ok.expectations).to.deep.equal({ canaryShare: 0.25, experimentShare: 0.3, alpha: 0.001 });
    expect(ok.files).to.deep.equal([FIXTURE]);
  });

  it('runs as `npm run ab-report` does, with exit code 3 under --strict on a mismatch', () => {
    const script = join(ROOT, 'dist', 'scripts', 'ops', 'ab-report.js');
    const ok = spawnSync(process.execPath, [script, FIXTURE], { encoding: 'utf8' });
    expect(ok.status, ok.stderr).to.equal(0);
    expect(ok.stdout).to.include('Stage 1: Envoy split between deployments (unit: users)');
    const strict = spawnSync(process.execPath, [script, '--strict', '--expected-canary', '30', FIXTURE], {
      encoding: 'utf8',
    });
    expect(strict.status).to.equal(3);
    const usage = spawnSync(process.execPath, [script, '--alpha', 'x', FIXTURE], { encoding: 'utf8' });
    expect(usage.status).to.equal(2);
    expect(usage.stderr).to.include('--alpha must be a number');
    const json = spawnSync(process.execPath, [script, '--json', FIXTURE], { encoding: 'utf8' });
    expect(JSON.parse(json.stdout).arms.rows[1]).to.include({ name: 'canary', count: 51 });
  });
});
