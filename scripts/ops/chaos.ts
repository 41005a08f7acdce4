/**
 * `npm run chaos`: a bounded fault suite against a running stack under
 * continuous traffic, with a verdict per fault (scripts/lib/chaos/).
 *
 * It starts its own stack (a stable and a canary server on a private copy of
 * the model repository, Envoy with hot restart, free loopback ports; server
 * logs on a small tmpfs when run as root), sends Predict calls through Envoy
 * the whole time, and breaks one thing after another: canary SIGKILL, canary
 * SIGSTOP, stable drain, Envoy restart, log disk full, a corrupt version
 * published, a label moved to a missing version. Per fault: calls sent,
 * calls failed (0, or the one documented case a proxy cannot retry, proved
 * from Envoy's access log), time until traffic was routed around it and
 * until the stack was back to normal, and peak RSS of each process.
 *
 * Exit status: 0 every fault that ran passed, 1 one failed (or interrupted),
 * 2 bad options, 3 the stack could not start.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { intOption, parseCommandLine } from '../lib/args.js';
import { faults } from '../lib/chaos/faults.js';
import { type FaultResult, runFault, table } from '../lib/chaos/run.js';
import { ChaosStack } from '../lib/chaos/stack.js';
import { Traffic } from '../lib/chaos/traffic.js';
import { abortOnSignals, optionsOrExit, runIfMain, UsageError } from '../lib/cli.js';
import { PROJECT_ROOT } from '../lib/paths.js';

const NAMES = faults().map((f) => f.name);

export const USAGE = `Usage: npm run chaos [-- options]

  --faults <a,b,…>    which faults, in order (default: all of ${NAMES.join(', ')})
  --concurrency <n>   calls in flight through Envoy (default 4)
  --deadline-ms <n>   each call's deadline (default 5000)
  --reports <dir>     where the JSON and Markdown report go (default reports)
  --settle-ms <n>     quiet traffic before each fault and after its recovery (default 1500)
  -h, --help          this text
`;

export interface ChaosOptions {
  readonly help: boolean;
  readonly faults: readonly string[];
  readonly concurrency: number;
  readonly deadlineMs: number;
  readonly reports: string;
  readonly settleMs: number;
}

export function parseChaosArgs(argv: readonly string[]): ChaosOptions {
  const { values } = parseCommandLine(argv, {
    faults: { type: 'string' },
    concurrency: { type: 'string' },
    'deadline-ms': { type: 'string' },
    reports: { type: 'string' },
    'settle-ms': { type: 'string' },
  });
  const list =
    values.faults === undefined
      ? NAMES
      : values.faults
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean);
  const unknown = list.filter((f) => !NAMES.includes(f));
  if (unknown.length > 0)
    throw new UsageError(`unknown fault ${unknown.join(', ')}; faults: ${NAMES.join(', ')}.`);
  return {
    help: values.help === true,
    faults: list,
    concurrency: intOption(values.concurrency, '--concurrency', 1, 64) ?? 4,
    deadlineMs: intOption(values['deadline-ms'], '--deadline-ms', 1, 60_000) ?? 5000,
    reports: resolve(PROJECT_ROOT, values.reports ?? 'reports'),
    settleMs: intOption(values['settle-ms'], '--settle-ms', 0, 60_000) ?? 1500,
  };
}

const say = (s: string) => process.stdout.write(`[chaos] ${s}\n`);

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'chaos', usage: USAGE, parse: parseChaosArgs }, argv);
  if (typeof opts === 'number') return opts;
  let interrupted = false;
  abortOnSignals((sig) => {
    interrupted = true;
    say(`${sig}: finishing the current fault, then stopping`);
  });
  const started = new Date();
  say('starting the stack (stable, canary, Envoy with hot restart)…');
  let stack: ChaosStack;
  try {
    stack = await ChaosStack.start({ healthCheckIntervalMs: 500, logDiskBytes: 128 * 1024 * 1024, say });
  } catch (err) {
    process.stderr.write(`chaos: the stack could not start: ${(err as Error).message}\n`);
    return 3;
  }
  const traffic = new Traffic(`127.0.0.1:${stack.ports.listener}`, {
    concurrency: opts.concurrency,
    deadlineMs: opts.deadlineMs,
    maxCalls: 2_000_000,
    maxMs: 30 * 60_000,
  });
  const results: FaultResult[] = [];
  try {
    const all = faults();
    for (const name of opts.faults) {
      if (interrupted) break;
      const fault = all.find((f) => f.name === name);
      if (fault)
        results.push(
          await runFault(fault, { stack, traffic, say, settleMs: opts.settleMs, recoverTimeoutMs: 30_000 }),
        );
    }
  } finally {
    await traffic.stop();
    await stack.stop();
  }
  const md = table(results);
  process.stdout.write(`\n${md}\n\n`);
  const stamp = started.toISOString().replace(/[:.]/g, '-');
  mkdirSync(opts.reports, { recursive: true });
  const base = join(opts.reports, `chaos-${stamp}`);
  writeFileSync(
    `${base}.json`,
    `${JSON.stringify({ started: started.toISOString(), options: opts, results }, null, 2)}\n`,
  );
  writeFileSync(`${base}.md`, `# npm run chaos, ${started.toISOString()}\n\n${md}\n`);
  say(`report: ${base}.json, ${base}.md`);
  const failed = results.filter((r) => r.verdict === 'FAIL');
  if (failed.length > 0) say(`FAILED: ${failed.map((r) => r.fault).join(', ')}`);
  return failed.length > 0 || interrupted ? 1 : 0;
}

runIfMain(import.meta.url, 'chaos', main);
