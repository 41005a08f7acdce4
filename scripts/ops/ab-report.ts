/**
 * `npm run ab-report`: reads the servers' prediction logs and tells the
 * operator whether both A/B stages are healthy.
 *
 *   npm run ab-report                          # every log under logs/
 *   npm run ab-report -- --logs logs/canary    # one directory
 *   npm run ab-report -- a.log b.log.gz        # files; "-" reads stdin
 *
 * Stage 1 (Envoy) splits users between the stable and canary deployments;
 * stage 2 (the canary) splits its positive predictions into experiment and
 * control by a salted hash of the user. For each split the report shows
 * counts, observed shares with 95% Wilson intervals, and a chi-square test of
 * the observed counts against the expected shares: a p-value under --alpha
 * flags a sample ratio mismatch (SRM), which means the assignment is broken
 * or the data is filtered, and the experiment's numbers cannot be trusted.
 *
 * The unit of each test is the unit of randomisation: users (Envoy hashes
 * x-user-id; the server hashes the user), falling back to requests or
 * predictions when the logs carry no user.
 */
import { createReadStream, lstatSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { parseArgs as parseNodeArgs } from 'node:util';
import { createGunzip } from 'node:zlib';
import {
  asPredictionRecord,
  PREDICTION_METHODS,
  type PredictionRecord,
  userOfOutput,
} from '../../server/call-log.js';
import { runIfMain, UsageError } from '../lib/cli.js';
import { DEFAULT_WEIGHTS, TOTAL_WEIGHT } from '../lib/envoy/config.js';

/** 97.5th percentile of the standard normal: two-sided 95% intervals. */
const Z95 = 1.959963984540054;

/** The Wilson score interval for `x` successes in `n` trials (Wilson 1927). */
export function wilson(x: number, n: number, z = Z95): { low: number; high: number } {
  if (n === 0) return { low: 0, high: 1 };
  const p = x / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  // Exact ends when all or none succeeded (the formula lands a rounding error away).
  return { low: x === 0 ? 0 : Math.max(0, centre - half), high: x === n ? 1 : Math.min(1, centre + half) };
}

/**
 * The complementary error function, with fractional error below 1.2e-7
 * everywhere (Chebyshev fit; Press et al., Numerical Recipes, §6.2 erfcc).
 */
export function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r =
    t *
    Math.exp(
      -z * z -
        1.26551223 +
        t *
          (1.00002368 +
            t *
              (0.37409196 +
                t *
                  (0.09678418 +
                    t *
                      (-0.18628806 +
                        t *
                          (0.27886807 +
                            t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))),
    );
  return x >= 0 ? r : 2 - r;
}

export interface ChiSquare {
  readonly chi2: number;
  /** P(χ²₁ ≥ chi2): the chance of a split at least this far off if the expected shares hold. */
  readonly p: number;
}

/**
 * Pearson's chi-square goodness-of-fit test for two categories (one degree of
 * freedom, where P(χ²₁ ≥ c) = erfc(√(c/2))). Undefined when an expected count
 * is below 5, where the approximation is poor.
 */
export function chiSquare2(observed: readonly [number, number], share0: number): ChiSquare | undefined {
  const n = observed[0] + observed[1];
  const e0 = n * share0;
  const e1 = n * (1 - share0);
  if (e0 < 5 || e1 < 5) return undefined;
  const chi2 = (observed[0] - e0) ** 2 / e0 + (observed[1] - e1) ** 2 / e1;
  return { chi2, p: erfc(Math.sqrt(chi2 / 2)) };
}

/** One `Predict` log line, as server/unary-handler.ts and predict-service.ts write it. */

interface GroupTally {
  predictions: number;
  /** Predictions that carry a user. */
  withUser: number;
  positives: number;
  actions: number;
  users: Set<string>;
}

interface ArmTally {
  requests: number;
  /** Requests whose every prediction carries a user (the request's or its own). */
  requestsWithUsers: number;
  predictions: number;
  positives: number;
  users: Set<string>;
  groups: Map<string, GroupTally>;
}

/** Counts from the logs, by arm and group. */
export class AbTally {
  readonly arms = new Map<string, ArmTally>();
  lines = 0;
  predictLines = 0;
  /** Predict lines without outputs (failed calls) or from other methods are not counted. */
  skipped = 0;
  unparsable = 0;
  firstTime: string | undefined;
  lastTime: string | undefined;

  constructor(private readonly window: { since?: number; until?: number } = {}) {}

  /** Adds one log line (any JSON line; only successful Predict lines count). */
  addLine(line: string): void {
    this.lines++;
    const trimmed = line.trim();
    if (trimmed === '') return;
    let rec: unknown;
    try {
      rec = JSON.parse(trimmed);
    } catch {
      this.unparsable++;
      return;
    }
    const msg = typeof rec === 'object' && rec !== null ? (rec as { msg?: unknown }).msg : undefined;
    if (typeof msg !== 'string' || !PREDICTION_METHODS.has(msg)) return;
    const prediction = asPredictionRecord(rec);
    if (!prediction) {
      this.skipped++;
      return;
    }
    this.add(prediction);
  }

  add(rec: PredictionRecord): void {
    const t = rec.time ? Date.parse(rec.time) : Number.NaN;
    if (this.window.since !== undefined && !(t >= this.window.since)) return;
    if (this.window.until !== undefined && !(t < this.window.until)) return;
    this.predictLines++;
    if (rec.time) {
      if (this.firstTime === undefined || rec.time < this.firstTime) this.firstTime = rec.time;
      if (this.lastTime === undefined || rec.time > this.lastTime) this.lastTime = rec.time;
    }
    let arm = this.arms.get(rec.arm);
    if (!arm) {
      arm = {
        requests: 0,
        requestsWithUsers: 0,
        predictions: 0,
        positives: 0,
        users: new Set(),
        groups: new Map(),
      };
      this.arms.set(rec.arm, arm);
    }
    arm.requests++;
    let allUsers = true;
    rec.outputs.forEach((o, i) => {
      const user = userOfOutput(rec, i);
      if (user === undefined) allUsers = false;
      const group = o.group;
      let g = arm.groups.get(group);
      if (!g) {
        g = { predictions: 0, withUser: 0, positives: 0, actions: 0, users: new Set() };
        arm.groups.set(group, g);
      }
      arm.predictions++;
      g.predictions++;
      if (o.label === 1) {
        arm.positives++;
        g.positives++;
      }
      if (o.action === 1) g.actions++;
      if (user !== undefined) {
        g.withUser++;
        arm.users.add(user);
        g.users.add(user);
      }
    });
    if (allUsers) arm.requestsWithUsers++;
  }
}

export interface Share {
  readonly name: string;
  readonly count: number;
  readonly share: number;
  readonly ci: { low: number; high: number };
  readonly expected: number;
}

export interface SplitCheck {
  readonly title: string;
  /** What the rows are: arm or group. */
  readonly label: string;
  /** users, requests or predictions */
  readonly unit: string;
  readonly rows: readonly Share[];
  readonly test: ChiSquare | undefined;
  readonly srm: boolean;
  readonly note?: string;
}

export interface GroupRow {
  readonly arm: string;
  readonly group: string;
  readonly predictions: number;
  readonly users: number;
  readonly positives: number;
  readonly positiveRate: number;
  readonly ci: { low: number; high: number };
  readonly treated: number;
}

export interface AbReport {
  readonly lines: number;
  readonly predictLines: number;
  readonly skipped: number;
  readonly unparsable: number;
  readonly firstTime: string | undefined;
  readonly lastTime: string | undefined;
  readonly arms: SplitCheck;
  readonly experiment: SplitCheck;
  readonly groups: readonly GroupRow[];
  /** Users seen on both arms (QA overrides, or a weight change inside the window). */
  readonly usersOnBothArms: number;
  readonly alpha: number;
}

export interface Expectations {
  /** Expected canary share of stage 1, 0..1. */
  readonly canaryShare: number;
  /** Expected experiment share of the canary's positives, 0..1. */
  readonly experimentShare: number;
  /** SRM significance level. */
  readonly alpha: number;
}

function split(
  title: string,
  label: string,
  unit: string,
  names: readonly [string, string],
  counts: readonly [number, number],
  share0: number,
  alpha: number,
): SplitCheck {
  const n = counts[0] + counts[1];
  const rows = names.map((name, i) => ({
    name,
    count: counts[i] as number,
    share: n === 0 ? 0 : (counts[i] as number) / n,
    ci: wilson(counts[i] as number, n),
    expected: i === 0 ? share0 : 1 - share0,
  }));
  const test = chiSquare2(counts as [number, number], share0);
  return {
    title,
    label,
    unit,
    rows,
    test,
    srm: test !== undefined && test.p < alpha,
    ...(test === undefined ? { note: 'too few to test (an expected count is under 5)' } : {}),
  };
}

/** Turns the tallies into shares, intervals and SRM verdicts. */
export function analyse(t: AbTally, e: Expectations): AbReport {
  const stable = t.arms.get('stable');
  const canary = t.arms.get('canary');
  // Users when every request of every arm carries them; otherwise requests (counting the
  // users of one arm against the requests of another would be a sample-ratio mismatch by construction).
  const present = [stable, canary].filter(
    (a): a is NonNullable<typeof a> => a !== undefined && a.requests > 0,
  );
  const byUsers = present.length > 0 && present.every((a) => a.requestsWithUsers === a.requests);
  const armCounts: [number, number] = byUsers
    ? [stable?.users.size ?? 0, canary?.users.size ?? 0]
    : [stable?.requests ?? 0, canary?.requests ?? 0];
  const arms = split(
    'Stage 1: Envoy split between deployments',
    'arm',
    byUsers ? 'users' : 'requests',
    ['stable', 'canary'],
    armCounts,
    1 - e.canaryShare,
    e.alpha,
  );

  const exp = canary?.groups.get('experiment');
  const ctl = canary?.groups.get('control');
  const stage2 = [exp, ctl].filter((g): g is NonNullable<typeof g> => g !== undefined && g.predictions > 0);
  const expByUsers = stage2.length > 0 && stage2.every((g) => g.withUser === g.predictions);
  const experiment = split(
    "Stage 2: the canary's positives, experiment vs control",
    'group',
    expByUsers ? 'users' : 'predictions',
    ['experiment', 'control'],
    expByUsers
      ? [exp?.users.size ?? 0, ctl?.users.size ?? 0]
      : [exp?.predictions ?? 0, ctl?.predictions ?? 0],
    e.experimentShare,
    e.alpha,
  );

  const order = ['baseline', 'experiment', 'control', 'canary_negative'];
  const groups: GroupRow[] = [];
  for (const armName of [...t.arms.keys()].sort((a, b) => (a === 'stable' ? -1 : b === 'stable' ? 1 : 0))) {
    const arm = t.arms.get(armName) as ArmTally;
    const names = [...arm.groups.keys()].sort(
      (a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99) || a.localeCompare(b),
    );
    for (const group of names) {
      const g = arm.groups.get(group) as GroupTally;
      groups.push({
        arm: armName,
        group,
        predictions: g.predictions,
        users: g.users.size,
        positives: g.positives,
        positiveRate: g.predictions === 0 ? 0 : g.positives / g.predictions,
        ci: wilson(g.positives, g.predictions),
        treated: g.actions,
      });
    }
    groups.push({
      arm: armName,
      group: '(all)',
      predictions: arm.predictions,
      users: arm.users.size,
      positives: arm.positives,
      positiveRate: arm.predictions === 0 ? 0 : arm.positives / arm.predictions,
      ci: wilson(arm.positives, arm.predictions),
      treated: [...arm.groups.values()].reduce((s, g) => s + g.actions, 0),
    });
  }

  let both = 0;
  if (stable && canary) for (const u of canary.users) if (stable.users.has(u)) both++;

  return {
    lines: t.lines,
    predictLines: t.predictLines,
    skipped: t.skipped,
    unparsable: t.unparsable,
    firstTime: t.firstTime,
    lastTime: t.lastTime,
    arms,
    experiment,
    groups,
    usersOnBothArms: both,
    alpha: e.alpha,
  };
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const int = (x: number) => x.toLocaleString('en-US');

function table(head: readonly string[], rows: readonly (readonly string[])[], rightFrom: number): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i >= rightFrom ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)].join('\n');
}

function formatSplit(s: SplitCheck, alpha: number): string {
  const rows = s.rows.map((r) => [
    r.name,
    int(r.count),
    pct(r.share),
    `[${pct(r.ci.low)}, ${pct(r.ci.high)}]`,
    pct(r.expected),
  ]);
  const verdict = !s.test
    ? `  not tested: ${s.note}`
    : s.srm
      ? `  SAMPLE RATIO MISMATCH: chi-square ${s.test.chi2.toFixed(2)}, p = ${s.test.p.toExponential(2)} < ${alpha}.\n` +
        '  The observed split is not the expected one: check the weights in force during this window\n' +
        '  (--since/--until around a change, --expected-canary), overrides, and missing log files.'
      : `  OK: chi-square ${s.test.chi2.toFixed(2)}, p = ${s.test.p.toFixed(3)} (no mismatch at alpha ${alpha})`;
  return [
    `${s.title} (unit: ${s.unit})`,
    table([s.label, s.unit, 'share', '95% CI', 'expected'], rows, 1),
    verdict,
  ].join('\n');
}

/** The report as the table the operator reads. */
export function formatReport(r: AbReport): string {
  const out: string[] = [];
  const window = r.firstTime ? `${r.firstTime} .. ${r.lastTime}` : 'no predictions';
  out.push(
    `A/B report: ${int(r.predictLines)} Predict calls from ${int(r.lines)} log lines (${window})` +
      (r.skipped + r.unparsable > 0
        ? `; ignored ${int(r.skipped)} failed calls and ${int(r.unparsable)} non-JSON lines`
        : ''),
  );
  out.push('');
  out.push(formatSplit(r.arms, r.alpha));
  if (r.usersOnBothArms > 0) {
    out.push(
      `  note: ${int(r.usersOnBothArms)} users appear on both arms (QA overrides, or weights changed in this window).`,
    );
  }
  out.push('');
  out.push('Groups: predictions, positive rate (model label 1) and treated (action 1)');
  out.push(
    table(
      ['arm', 'group', 'predictions', 'users', 'positives', 'positive rate', '95% CI', 'treated'],
      r.groups.map((g) => [
        g.arm,
        g.group,
        int(g.predictions),
        int(g.users),
        int(g.positives),
        pct(g.positiveRate),
        `[${pct(g.ci.low)}, ${pct(g.ci.high)}]`,
        int(g.treated),
      ]),
      2,
    ),
  );
  out.push('');
  out.push(formatSplit(r.experiment, r.alpha));
  return `${out.join('\n')}\n`;
}

/** Log files under `dir`, recursively: *.log, *.jsonl and their .gz archives; symlinks are skipped. */
export function findLogFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      // pino-roll keeps a `current.log` symlink to the active file: reading it would count twice.
      if (st.isSymbolicLink()) continue;
      if (st.isDirectory()) walk(p);
      else if (/\.(log|jsonl)(\.gz)?$/.test(name)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Feeds every line of `input` (gzip when `gz`) to `onLine`. */
export async function readLines(input: Readable, gz: boolean, onLine: (line: string) => void): Promise<void> {
  const stream = gz ? input.pipe(createGunzip()) : input;
  const rl = createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY });
  const failed = new Promise<never>((_, reject) => {
    input.once('error', reject);
    stream.once('error', reject);
  });
  await Promise.race([
    (async () => {
      for await (const line of rl) onLine(line);
    })(),
    failed,
  ]);
}

export const USAGE = `Usage: npm run ab-report -- [options] [files...]

Reads the servers' JSON logs (lines with msg "Predict" or "ModelInfer"; .gz archives too) and prints,
per arm and group, counts, positive rates and observed shares with 95% intervals,
and flags a sample ratio mismatch (chi-square test) in either split.

  --logs <dir>               read every *.log / *.log.gz under dir (default: logs, when no files are given)
  -                          read stdin (for example: docker compose logs --no-color --no-log-prefix stable canary)
  --expected-canary <pct>    the canary weight in force, 0-100 (default ${DEFAULT_WEIGHTS.canary})
  --experiment-share <0..1>  the canary's EXPERIMENT_SHARE (default 0.5)
  --alpha <p>                SRM significance level (default 0.001)
  --since <time>, --until <time>   only calls logged in [since, until) (ISO 8601)
  --json                     print the report as JSON
  --strict                   exit 3 when a mismatch is flagged
`;

export interface ReportArgs {
  readonly files: readonly string[];
  readonly expectations: Expectations;
  readonly since?: number;
  readonly until?: number;
  readonly json: boolean;
  readonly strict: boolean;
}

export function parseArgs(argv: readonly string[], cwd: string = process.cwd()): ReportArgs {
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseNodeArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        logs: { type: 'string' },
        'expected-canary': { type: 'string' },
        'experiment-share': { type: 'string' },
        alpha: { type: 'string' },
        since: { type: 'string' },
        until: { type: 'string' },
        json: { type: 'boolean' },
        strict: { type: 'boolean' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const num = (key: string, def: number, min: number, max: number, integer = false) => {
    const raw = values[key];
    if (raw === undefined) return def;
    const n = Number(raw);
    if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
      throw new UsageError(`--${key} must be a number from ${min} to ${max}, got "${raw}"`);
    }
    if (integer && !Number.isInteger(n)) throw new UsageError(`--${key} must be an integer, got "${raw}"`);
    return n;
  };
  const time = (key: string) => {
    const raw = values[key];
    if (raw === undefined) return undefined;
    const t = Date.parse(String(raw));
    if (Number.isNaN(t)) throw new UsageError(`--${key} must be an ISO 8601 time, got "${raw}"`);
    return t;
  };
  const canaryPct = num('expected-canary', DEFAULT_WEIGHTS.canary, 0, TOTAL_WEIGHT, true);
  const files: string[] = [];
  for (const p of positionals) files.push(p === '-' ? '-' : resolve(cwd, p));
  if (typeof values.logs === 'string' || files.length === 0) {
    const dir = resolve(cwd, typeof values.logs === 'string' ? values.logs : 'logs');
    try {
      files.push(...findLogFiles(dir));
    } catch (err) {
      throw new UsageError(`cannot read the log directory ${dir}: ${(err as Error).message}`);
    }
  }
  const since = time('since');
  const until = time('until');
  return {
    files,
    expectations: {
      canaryShare: canaryPct / TOTAL_WEIGHT,
      experimentShare: num('experiment-share', 0.5, 0, 1),
      alpha: num('alpha', 0.001, 1e-12, 0.5),
    },
    ...(since === undefined ? {} : { since }),
    ...(until === undefined ? {} : { until }),
    json: values.json === true,
    strict: values.strict === true,
  };
}

/** Reads every source into a tally. */
export async function tallyFiles(
  files: readonly string[],
  window: { since?: number; until?: number } = {},
  stdin: Readable = process.stdin,
): Promise<AbTally> {
  const tally = new AbTally(window);
  for (const f of files) {
    const input = f === '-' ? stdin : createReadStream(f);
    await readLines(input, f.endsWith('.gz'), (line) => tally.addLine(line));
  }
  return tally;
}

async function main(argv: readonly string[]): Promise<number> {
  let args: ReportArgs;
  try {
    args = parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`ab-report: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  if (args.files.length === 0) {
    process.stderr.write('ab-report: no log files found (looked for *.log, *.jsonl and .gz archives)\n');
    return 1;
  }
  const window = {
    ...(args.since === undefined ? {} : { since: args.since }),
    ...(args.until === undefined ? {} : { until: args.until }),
  };
  const report = analyse(await tallyFiles(args.files, window), args.expectations);
  process.stdout.write(args.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return args.strict && (report.arms.srm || report.experiment.srm) ? 3 : 0;
}

runIfMain(import.meta.url, 'ab-report', main);
