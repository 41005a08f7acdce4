/**
 * `npm run bench:ab-report`: the readout at the scale the notes name. For
 * each size it generates an experiment in the servers' log format
 * (scripts/lib/ab/synthetic.ts: Predict lines with redacted inputs, as
 * LOG_INPUTS writes them, and RecordOutcomes lines, 10 outcomes each, with a
 * conversion and a revenue outcome per converted user), rotated every 1 M
 * lines per arm, then gzips the files as the log archiver does, and runs the
 * readout on the plain and on the gzipped files, each in a fresh process: the
 * engine (DuckDB) runs inside it, so that process's peak RSS is the engine's.
 *
 *   npm run bench:ab-report                                   # 1 M and 10 M lines
 *   npm run bench:ab-report -- --sizes 1000000 --memory-limit 512MB --keep
 *
 * Prints a markdown table (lines/s, wall time, peak RSS, input size) and
 * writes it to reports/bench-ab-report-<time>.md.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UserIds } from '../../server/call-log.js';
import { DEV_PSEUDONYM_KEY } from '../../server/config.js';
import { DEMO_EFFECT } from '../lib/ab/planted-effect.js';
import { readout } from '../lib/ab/readout.js';
import { archive, SyntheticExperiment, writeExperiment } from '../lib/ab/synthetic.js';
import { intOption, parseCommandLine } from '../lib/args.js';
import { optionsOrExit, runIfMain, UsageError } from '../lib/cli.js';
import { PROJECT_ROOT } from '../lib/paths.js';

interface Measured {
  readonly ms: number;
  readonly maxRssMiB: number;
  readonly verdict: string;
  readonly predictions: number;
  readonly outcomes: number;
  readonly slowest: string;
}

/** `--measure DIR`: one readout in this process, its figures on stdout as JSON. */
async function measure(dir: string, memoryLimit: string, threads: number): Promise<void> {
  const t0 = performance.now();
  const r = await readout({ logs: [dir], engine: { memoryLimit, threads } });
  const ms = performance.now() - t0;
  const slowest = [...r.engine.timings].sort((a, b) => b.ms - a.ms).slice(0, 3);
  const result: Measured = {
    ms,
    maxRssMiB: process.resourceUsage().maxRSS / 1024,
    verdict: r.verdict,
    predictions: r.input.predictions,
    outcomes: r.outcomes.fromLogs,
    slowest: slowest
      .map((t) => `${t.statement.replace(/ AS$/, '')} ${(t.ms / 1000).toFixed(1)} s`)
      .join('; '),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function child(dir: string, memoryLimit: string, threads: number): Promise<Measured> {
  const self = fileURLToPath(import.meta.url);
  return new Promise((resolve, reject) => {
    const p = spawn(
      process.execPath,
      [self, '--measure', dir, '--memory-limit', memoryLimit, '--threads', String(threads)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    p.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
    });
    p.once('error', reject);
    p.once('close', (code) => {
      if (code !== 0) reject(new Error(`the readout exited with ${code}`));
      else resolve(JSON.parse(out) as Measured);
    });
  });
}

const size = (files: readonly string[]) => files.reduce((s, f) => s + statSync(f).size, 0);
const gib = (bytes: number) => `${(bytes / 2 ** 30).toFixed(2)} GiB`;

const USAGE = `Usage: npm run bench:ab-report -- [options]

Generates experiments in the servers' log format, gzips them as the archiver does, and runs
the readout on each (plain and gzip) in a fresh process, reporting lines/s and peak RSS.

  --sizes <n,...>        predictions per experiment (default 1000000,10000000)
  --memory-limit <size>  DuckDB memory_limit (default 1GB)
  --threads <n>          DuckDB threads (default 2)
  --dir <dir>            where to generate (default a temporary directory, removed)
  --keep                 keep the generated files
`;

interface BenchOptions {
  readonly sizes: readonly number[];
  readonly memoryLimit: string;
  readonly threads: number;
  readonly dir?: string;
  readonly keep: boolean;
  /** Internal: measure one readout of this directory in this process. */
  readonly measure?: string;
  readonly help: boolean;
}

function parse(argv: readonly string[]): BenchOptions {
  const { values } = parseCommandLine(argv, {
    sizes: { type: 'string' },
    'memory-limit': { type: 'string' },
    threads: { type: 'string' },
    dir: { type: 'string' },
    keep: { type: 'boolean' },
    measure: { type: 'string' },
  });
  const sizes = (values.sizes ?? '1000000,10000000').split(',').map(Number);
  if (sizes.some((n) => !Number.isInteger(n) || n < 1000)) {
    throw new UsageError('--sizes must be integers of at least 1000, comma-separated.');
  }
  return {
    sizes,
    memoryLimit: values['memory-limit'] ?? '1GB',
    threads: intOption(values.threads, '--threads', 1, 64) ?? 2,
    ...(values.dir === undefined ? {} : { dir: values.dir }),
    keep: values.keep === true,
    ...(values.measure === undefined ? {} : { measure: values.measure }),
    help: values.help === true,
  };
}

async function main(argv: readonly string[]): Promise<number> {
  const o = optionsOrExit({ name: 'bench:ab-report', usage: USAGE, parse }, argv);
  if (typeof o === 'number') return o;
  const { memoryLimit, threads, sizes } = o;
  if (o.measure !== undefined) {
    await measure(o.measure, memoryLimit, threads);
    return 0;
  }
  const root = o.dir ?? mkdtempSync(join(tmpdir(), 'bench-ab-report-'));
  const rows: string[] = [];
  const started = new Date().toISOString();
  const load0 = loadavg()[0] ?? 0;
  try {
    for (const users of sizes) {
      const dir = join(root, String(users));
      const experiment = new SyntheticExperiment({
        users,
        seed: 7,
        effect: DEMO_EFFECT,
        userIds: new UserIds('pseudonym', DEV_PSEUDONYM_KEY),
        inputs: true,
        revenue: true,
      });
      process.stderr.write(`[bench] ${users.toLocaleString('en-US')} predictions: generating…\n`);
      let t = performance.now();
      const files = await writeExperiment(experiment, join(dir, 'plain'));
      const genS = (performance.now() - t) / 1000;
      process.stderr.write(`[bench]   written in ${genS.toFixed(0)} s (${gib(size(files))}); gzipping…\n`);
      t = performance.now();
      const gz = await archive(files, join(dir, 'gz'));
      process.stderr.write(
        `[bench]   gzipped in ${((performance.now() - t) / 1000).toFixed(0)} s (${gib(size(gz))})\n`,
      );
      const lines = experiment.predictions + Math.ceil(experiment.outcomes / 10);
      for (const [format, sub, bytes] of [
        ['plain', 'plain', size(files)],
        ['gzip', 'gz', size(gz)],
      ] as const) {
        process.stderr.write(`[bench]   readout on ${format}…\n`);
        const m = await child(join(dir, sub), memoryLimit, threads);
        rows.push(
          `| ${users.toLocaleString('en-US')} | ${experiment.outcomes.toLocaleString('en-US')} | ${format} | ${gib(bytes)} | ${(m.ms / 1000).toFixed(1)} | ${Math.round(lines / (m.ms / 1000)).toLocaleString('en-US')} | ${m.maxRssMiB.toFixed(0)} | ${m.verdict} | ${m.slowest} |`,
        );
        process.stderr.write(`[bench]   ${rows.at(-1)}\n`);
      }
      if (!o.keep) rmSync(dir, { recursive: true, force: true });
    }
  } finally {
    if (!o.keep && o.dir === undefined) rmSync(root, { recursive: true, force: true });
  }
  const report = [
    `bench:ab-report, ${started}, ${cpus().length} cores, load average ${load0.toFixed(2)} → ${(loadavg()[0] ?? 0).toFixed(2)}, DuckDB memory_limit ${memoryLimit}, ${threads} threads`,
    '',
    '| predictions | outcomes | files | input | readout s | lines/s | peak RSS MiB | verdict | slowest statements |',
    '|---:|---:|---|---:|---:|---:|---:|---|---|',
    ...rows,
    '',
  ].join('\n');
  process.stdout.write(report);
  const reports = join(PROJECT_ROOT, 'reports');
  mkdirSync(reports, { recursive: true });
  writeFileSync(join(reports, `bench-ab-report-${started.replace(/[:.]/g, '')}.md`), report);
  return 0;
}

runIfMain(import.meta.url, 'bench:ab-report', main);
