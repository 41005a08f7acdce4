/**
 * `npm run ab-report` as an operator runs it: options, the assignment checks
 * on the known log of the earlier, assignment-only report
 * (test/fixtures/ab-predict.jsonl), JSON, stdin, exit codes.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'chai';
import { parseArgs } from '../../scripts/lib/ab/args.js';
import type { Readout } from '../../scripts/lib/ab/readout.js';
import { UsageError } from '../../scripts/lib/cli.js';
import { comparison, counts, KEY, writeFixture } from '../helpers/ab-fixture.js';
import { runCli } from '../helpers/cli.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

describe('ab-report: the command', function () {
  this.timeout(60_000);
  const script = join(ROOT, 'dist', 'scripts', 'ops', 'ab-report.js');
  const KNOWN = join(ROOT, 'test', 'fixtures', 'ab-predict.jsonl');
  let dir: string;
  let files: { logs: string; csv: string };
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'ab-readout-cli-'));
    files = writeFixture(dir);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('validates options with clear messages', () => {
    const bad: [string[], RegExp][] = [
      [['--expected-canary', '10.5', KNOWN], /--expected-canary must be an integer/],
      [['--expected-canary', '120', KNOWN], /from 0 to 100/],
      [['--experiment-share', '2', KNOWN], /--experiment-share must be a number from 0 to 1/],
      [['--since', 'yesterday', KNOWN], /ISO 8601/],
      [['--window', '7 days', KNOWN], /--window must be a duration like 500ms, 30s, 2m, 36h or 7d/],
      [['--decision', 'bayes', KNOWN], /--decision must be one of sequential, fixed/],
      [['--outcomes', '-', '-'], /stdin can feed the logs or the outcomes, not both/],
      [['--nope'], /Unknown option/],
      [['--logs', '/nonexistent/dir'], /cannot read the log directory/],
    ];
    for (const [argv, re] of bad) expect(() => parseArgs(argv), argv.join(' ')).to.throw(UsageError, re);
    const ok = parseArgs(['--expected-canary', '25', '--window', '7d', '--delay', '1h', KNOWN], {
      LOG_PSEUDONYM_KEY: 'k',
    });
    expect(ok.options).to.include({ canaryShare: 0.25, pseudonymKey: 'k', userIds: 'pseudonym' });
    expect(ok.options.exposure).to.deep.equal({ delayMs: 3_600_000, windowMs: 7 * 86_400_000 });
    expect(ok.options.logs).to.deep.equal([KNOWN]);
  });

  it('reads the known log of the assignment-only report: counts and checks within the pair', async () => {
    const run = await runCli(process.execPath, [script, KNOWN]);
    expect(run.code, run.stderr).to.equal(0);
    // The first stable call (10:00:02) precedes the canary's first (10:00:03): outside the pair.
    expect(run.stdout).to.match(/^ {2}stable\s+449\s+89\.8%/m);
    expect(run.stdout).to.match(/^ {2}canary\s+51\s+10\.2%/m);
    expect(run.stdout).to.match(/^ {2}canary\s+experiment\s+15\s+14\s+15/m);
    expect(run.stdout).to.include('Outcomes: NONE recorded');
    const strict = await runCli(process.execPath, [script, '--strict', '--expected-canary', '30', KNOWN]);
    expect(strict.code).to.equal(3);
    expect(strict.stdout).to.include('SAMPLE RATIO MISMATCH');
    const noOutcomes = await runCli(process.execPath, [script, '--strict', KNOWN]);
    expect(noOutcomes.code).to.equal(4);
  });

  it('prints the readout as JSON with the verdict, joins a CSV from stdin, and exits 2 on a bad file', async () => {
    const env = { LOG_PSEUDONYM_KEY: KEY };
    const json = await runCli(
      'env',
      [
        `LOG_PSEUDONYM_KEY=${env.LOG_PSEUDONYM_KEY}`,
        process.execPath,
        script,
        '--json',
        '--expected-canary',
        '40',
        '--logs',
        files.logs,
        '--outcomes',
        '-',
      ],
      { input: readFileSync(files.csv, 'utf8') },
    );
    expect(json.code, json.stderr).to.equal(0);
    const r = JSON.parse(json.stdout) as Readout;
    expect(r.verdict).to.equal('inconclusive');
    expect(counts(comparison(r.pairs[0], 'positives'))).to.deep.equal([40, 6, 40, 12]);
    // What was left out as not randomised is in the JSON too, per arm (none in this fixture).
    const none = { predictions: 0, forced: 0, pinned: 0 };
    expect(r.input.notRandomised).to.deep.equal(none);
    expect(r.pairs[0]?.assignment.notRandomised).to.deep.equal({
      stable: { ...none, units: 0 },
      canary: { ...none, units: 0 },
    });
    writeFileSync(join(dir, 'bad.csv'), 'requestId,instance\nr,x\n');
    const bad = await runCli(process.execPath, [
      script,
      '--logs',
      files.logs,
      '--outcomes',
      join(dir, 'bad.csv'),
    ]);
    expect(bad.code).to.equal(2);
    expect(bad.stderr).to.match(/bad outcome file: .*bad\.csv:2: instance must be the index/);
    const help = await runCli(process.execPath, [script, '--help']);
    expect(help.code).to.equal(0);
    expect(help.stdout).to.match(/Exit status: 0 the readout was printed/);
  });
});
