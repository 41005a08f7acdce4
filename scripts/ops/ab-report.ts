/**
 * `npm run ab-report`: the experiment readout. Reads the servers' logs
 * (predictions and RecordOutcomes lines, .gz archives too) and bulk outcome
 * files, joins outcomes to exposures, and prints per version pair the
 * assignment checks and, per metric, experiment vs control, canary vs stable
 * and the canary if promoted, with a verdict. The work is scripts/lib/ab/
 * (readout.ts is the entry; `--help` lists the options and exit codes).
 *
 *   npm run ab-report                               # every log under logs/
 *   npm run ab-report -- --window 7d --json
 *   npm run ab-report -- --outcomes conversions.csv
 */
import { parseArgs, type ReportArgs, USAGE } from '../lib/ab/args.js';
import { BulkOutcomeError } from '../lib/ab/bulk-outcomes.js';
import { formatReadout } from '../lib/ab/format.js';
import { type Readout, readout } from '../lib/ab/readout.js';
import { optionsOrExit, runIfMain } from '../lib/cli.js';

/** --strict's exit status for a verdict: 0 the treatment wins or no difference, 3 SRM, 4 inconclusive, 5 the baseline wins. */
export function strictStatus(r: Readout): number {
  if (r.verdict === 'srm') return 3;
  if (r.verdict === 'inconclusive') return 4;
  if (r.verdict === 'winner' && r.winner === 'stable') return 5;
  if (r.verdict === 'winner' && r.winner === 'control') return 5;
  return 0;
}

async function main(argv: readonly string[]): Promise<number> {
  const args = optionsOrExit<ReportArgs>(
    { name: 'ab-report', usage: USAGE, parse: (a) => parseArgs(a, process.env) },
    argv,
  );
  if (typeof args === 'number') return args;
  if (args.options.logs.length === 0) {
    process.stderr.write('ab-report: no log files found (looked for *.log, *.jsonl and .gz archives)\n');
    return 1;
  }
  if (args.defaultKey && args.options.outcomes.length > 0 && args.options.userIds === 'pseudonym') {
    process.stderr.write(
      'ab-report: LOG_PSEUDONYM_KEY is not set: bulk user ids are pseudonymised with the development key, ' +
        'which joins only logs written with that key\n',
    );
  }
  let r: Readout;
  try {
    r = await readout(args.options);
  } catch (err) {
    if (err instanceof BulkOutcomeError) {
      process.stderr.write(`ab-report: bad outcome file: ${err.message}\n`);
      return 2;
    }
    process.stderr.write(`ab-report: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(args.json ? `${JSON.stringify(r, null, 2)}\n` : formatReadout(r));
  return args.strict ? strictStatus(r) : 0;
}

runIfMain(import.meta.url, 'ab-report', main);
