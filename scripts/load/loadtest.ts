/**
 * `npm run loadtest`: drives Predict (or, with `--protocol oip`, ModelInfer)
 * with ghz against Envoy, one server or any HOST:PORT, shows progress, prints
 * QPS, latency percentiles, errors by gRPC status and the observed A/B split,
 * writes JSON and HTML reports, and exits non-zero naming the SLO that was missed. Options: `npm run loadtest -- --help`.
 *
 * The work is `runLoadtest` (scripts/lib/load/run.ts); this command adds argv,
 * signals and the exit code.
 */
import { runIfMain, UsageError } from '../lib/cli.js';
import { GhzError } from '../lib/load/ghz.js';
import { H2GeneratorError } from '../lib/load/h2-generator.js';
import { type LoadtestOptions, parseLoadtestArgs, USAGE } from '../lib/load/options.js';
import { formatSummary } from '../lib/load/report.js';
import { type LoadtestOutcome, runLoadtest } from '../lib/load/run.js';

/** The shell-quoted ghz command, so a run can be repeated by hand. */
function shellQuote(args: readonly string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let opts: LoadtestOptions;
  try {
    opts = parseLoadtestArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`loadtest: ${err.message}\nSee: npm run loadtest -- --help\n`);
      return 2;
    }
    throw err;
  }
  // Ctrl-C reaches ghz too (same process group): it stops and still writes its
  // report, so wait for it and summarise what ran. A second Ctrl-C quits.
  const controller = new AbortController();
  let interrupts = 0;
  process.on('SIGINT', () => {
    if (++interrupts > 1) process.exit(130);
    process.stderr.write(
      '\n[loadtest] interrupted: stopping the load generator, summarising what ran (Ctrl-C again to quit)\n',
    );
    controller.abort();
  });
  let outcome: LoadtestOutcome;
  try {
    outcome = await runLoadtest(opts, { signal: controller.signal });
  } catch (err) {
    if (
      err instanceof GhzError ||
      err instanceof H2GeneratorError ||
      (err as NodeJS.ErrnoException).code === 'ENOENT'
    ) {
      process.stderr.write(`loadtest: ${(err as Error).message}\n`);
      return 3;
    }
    throw err;
  }
  process.stdout.write(`\n${formatSummary(outcome.result)}\n\n`);
  process.stdout.write(`Reports: ${outcome.files.json}\n         ${outcome.files.html}\n`);
  if (outcome.ghzArgs.length > 0) process.stdout.write(`ghz:     ghz ${shellQuote(outcome.ghzArgs)}\n`);
  if (!outcome.ok) {
    const failed = outcome.result.verdicts.filter((v) => !v.ok);
    process.stdout.write(`\nSLO missed: ${failed.map((v) => `${v.name} (${v.detail})`).join('; ')}\n`);
    return 1;
  }
  process.stdout.write('\nSLOs met.\n');
  return 0;
}

runIfMain(import.meta.url, 'loadtest', main);
