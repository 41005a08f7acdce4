/** `npm run ab-report`'s command line, parsed into readout options. */
import { resolve } from 'node:path';
import { DEV_PSEUDONYM_KEY } from '../../../server/config.js';
import { intOption, numberOption, parseCommandLine, parseDuration } from '../args.js';
import { UsageError } from '../cli.js';
import { DEFAULT_WEIGHTS, TOTAL_WEIGHT } from '../envoy/config.js';
import { DEFAULT_EFFECT_OPTIONS } from './effect.js';
import { DEFAULT_ENGINE_OPTIONS } from './engine.js';
import { findLogFiles } from './log-files.js';
import { type ComparisonKind, DEFAULT_READOUT_OPTIONS, type ReadoutOptions } from './readout.js';
import { DEFAULT_DECISION_RULES } from './verdict.js';

export const USAGE = `Usage: npm run ab-report -- [options] [log files...]

Joins business outcomes to the servers' prediction logs and reports, per model
version pair: the assignment checks (stage 1 and stage 2 splits, sample ratio
mismatch), then for each metric experiment vs control among the canary's
positives, canary vs stable, and the canary if promoted (IPW) vs stable, with
rates, lifts, intervals, p-values and a verdict.

Input
  [files...] | --logs <dir>  log files (*.log, *.jsonl, .gz) or directories (default: logs/)
  -                          read the logs from stdin (e.g. docker compose logs --no-log-prefix stable canary)
  --outcomes <file>          bulk outcomes, CSV with a header or JSON lines, fields requestId, instance,
                             userId, model, metric, value, occurredAt (repeatable; "-" for stdin, .gz ok).
                             Raw userIds are pseudonymised with LOG_PSEUDONYM_KEY (the servers' key;
                             default the development key) unless LOG_USER_IDS=raw, as the servers do
Splits
  --expected-canary <pct>    the canary weight in force, 0-100 (default ${DEFAULT_WEIGHTS.canary})
  --experiment-share <0..1>  the canary's EXPERIMENT_SHARE (default ${DEFAULT_READOUT_OPTIONS.experimentShare})
  --srm-alpha <p>            sample-ratio-mismatch significance level (default ${DEFAULT_READOUT_OPTIONS.srmAlpha})
Exposure
  --since <time>, --until <time>  only predictions logged in [since, until) (ISO 8601)
  --window <dur>             count outcomes up to this long after exposure (e.g. 7d, 36h; default: no end)
  --delay <dur>              count outcomes only from this long after exposure (default 0)
  --stable-version <v>, --canary-version <v>  only the pairs with these versions
Statistics and verdict
  --metric <name>            the metric the verdict uses (default converted, else the first)
  --primary <comparison>     promoted (default), arms or positives
  --alpha <p>                significance level of the intervals and tests (default ${DEFAULT_EFFECT_OPTIONS.alpha})
  --decision <rule>          sequential (always-valid interval, default: safe to look every day) or fixed
  --min-sample <n>           users per arm before any verdict (default ${DEFAULT_DECISION_RULES.minSample})
  --margin <x>               relative lifts within ±x are no difference (default ${DEFAULT_DECISION_RULES.margin})
  --sequential-tuning <n>    where the always-valid interval is tightest, in users (default ${DEFAULT_EFFECT_OPTIONS.sequentialTuning})
Engine
  --memory-limit <size>      DuckDB memory limit (default ${DEFAULT_ENGINE_OPTIONS.memoryLimit}); past it, it spills to disk
  --threads <n>              DuckDB threads (default ${DEFAULT_ENGINE_OPTIONS.threads})
Output
  --json                     print the readout as JSON (verdict winner | no-difference | inconclusive | srm)
  --strict                   exit with the verdict (below)

Exit status: 0 the readout was printed; 1 it could not run (no log files, unreadable input);
2 bad options or a bad --outcomes file. With --strict: 0 the treatment wins or no difference,
3 sample ratio mismatch, 4 inconclusive, 5 the baseline wins.
`;

export interface ReportArgs {
  readonly options: Omit<ReadoutOptions, 'stdin'>;
  readonly json: boolean;
  readonly strict: boolean;
  readonly help: boolean;
  /** True when the pseudonym key is the built-in development key (worth a warning with bulk user ids). */
  readonly defaultKey: boolean;
}

/** Parses the command line; `env` supplies LOG_PSEUDONYM_KEY and LOG_USER_IDS (the servers' settings). */
export function parseArgs(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>> = {},
  cwd: string = process.cwd(),
): ReportArgs {
  const { values, positionals } = parseCommandLine(
    argv,
    {
      logs: { type: 'string', multiple: true },
      outcomes: { type: 'string', multiple: true },
      'expected-canary': { type: 'string' },
      'experiment-share': { type: 'string' },
      'srm-alpha': { type: 'string' },
      since: { type: 'string' },
      until: { type: 'string' },
      window: { type: 'string' },
      delay: { type: 'string' },
      'stable-version': { type: 'string' },
      'canary-version': { type: 'string' },
      metric: { type: 'string' },
      primary: { type: 'string' },
      alpha: { type: 'string' },
      decision: { type: 'string' },
      'min-sample': { type: 'string' },
      margin: { type: 'string' },
      'sequential-tuning': { type: 'string' },
      'memory-limit': { type: 'string' },
      threads: { type: 'string' },
      json: { type: 'boolean' },
      strict: { type: 'boolean' },
    },
    true,
  );
  const string = (key: string): string | undefined => {
    const v = (values as Record<string, unknown>)[key];
    return typeof v === 'string' ? v : undefined;
  };
  const num = (key: string, def: number, min: number, max: number, integer = false) =>
    (integer ? intOption : numberOption)(string(key), `--${key}`, min, max) ?? def;
  const time = (key: string) => {
    const raw = string(key);
    if (raw === undefined) return undefined;
    const t = Date.parse(raw);
    if (Number.isNaN(t)) throw new UsageError(`--${key} must be an ISO 8601 time, got "${raw}"`);
    return t;
  };
  const oneOf = <T extends string>(key: string, allowed: readonly T[], def: T): T => {
    const raw = string(key);
    if (raw === undefined) return def;
    if (!(allowed as readonly string[]).includes(raw)) {
      throw new UsageError(`--${key} must be one of ${allowed.join(', ')}, got "${raw}"`);
    }
    return raw as T;
  };
  if (values.help === true) {
    return {
      options: { ...DEFAULT_READOUT_OPTIONS, logs: [] },
      json: false,
      strict: false,
      help: true,
      defaultKey: true,
    };
  }

  const canaryPct = num('expected-canary', DEFAULT_WEIGHTS.canary, 0, TOTAL_WEIGHT, true);
  const logs: string[] = positionals.map((p) => (p === '-' ? '-' : resolve(cwd, p)));
  const dirs = (values.logs as string[] | undefined) ?? [];
  for (const d of dirs.length > 0 || logs.length > 0 ? dirs : ['logs']) {
    const dir = resolve(cwd, d);
    try {
      logs.push(...findLogFiles(dir));
    } catch (err) {
      throw new UsageError(`cannot read the log directory ${dir}: ${(err as Error).message}`);
    }
  }
  const outcomes = ((values.outcomes as string[] | undefined) ?? []).map((f) =>
    f === '-' ? '-' : resolve(cwd, f),
  );
  if (outcomes.includes('-') && logs.includes('-')) {
    throw new UsageError('stdin can feed the logs or the outcomes, not both');
  }
  const since = time('since');
  const until = time('until');
  const windowRaw = string('window');
  const delayRaw = string('delay');
  const windowMs = windowRaw === undefined ? undefined : parseDuration(windowRaw, '--window');
  const userIds = env.LOG_USER_IDS === 'raw' ? 'raw' : 'pseudonym';
  const key = env.LOG_PSEUDONYM_KEY ?? '';
  const metric = string('metric');
  const stableVersion = string('stable-version');
  const canaryVersion = string('canary-version');
  const memoryLimit = string('memory-limit') ?? DEFAULT_ENGINE_OPTIONS.memoryLimit;
  if (!/^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i.test(memoryLimit)) {
    throw new UsageError(`--memory-limit must be a size such as 512MB or 2GB, got "${memoryLimit}"`);
  }
  return {
    options: {
      ...DEFAULT_READOUT_OPTIONS,
      logs,
      outcomes,
      userIds,
      pseudonymKey: key === '' ? DEV_PSEUDONYM_KEY : key,
      canaryShare: canaryPct / TOTAL_WEIGHT,
      experimentShare: num('experiment-share', DEFAULT_READOUT_OPTIONS.experimentShare, 0, 1),
      srmAlpha: num('srm-alpha', DEFAULT_READOUT_OPTIONS.srmAlpha, 1e-12, 0.5),
      effect: {
        alpha: num('alpha', DEFAULT_EFFECT_OPTIONS.alpha, 1e-6, 0.5),
        sequentialTuning: num('sequential-tuning', DEFAULT_EFFECT_OPTIONS.sequentialTuning, 1, 1e12),
      },
      decision: {
        minSample: num('min-sample', DEFAULT_DECISION_RULES.minSample, 2, 1e12, true),
        margin: num('margin', DEFAULT_DECISION_RULES.margin, 0, 10),
        decision: oneOf('decision', ['sequential', 'fixed'] as const, DEFAULT_DECISION_RULES.decision),
      },
      exposure: {
        ...(since === undefined ? {} : { since }),
        ...(until === undefined ? {} : { until }),
        delayMs: delayRaw === undefined ? 0 : parseDuration(delayRaw, '--delay'),
        ...(windowMs === undefined ? {} : { windowMs }),
      },
      ...(metric === undefined ? {} : { metric }),
      primary: oneOf<ComparisonKind>(
        'primary',
        ['promoted', 'arms', 'positives'],
        DEFAULT_READOUT_OPTIONS.primary,
      ),
      ...(stableVersion === undefined ? {} : { stableVersion }),
      ...(canaryVersion === undefined ? {} : { canaryVersion }),
      engine: { memoryLimit, threads: num('threads', DEFAULT_ENGINE_OPTIONS.threads, 1, 64, true) },
    },
    json: values.json === true,
    strict: values.strict === true,
    help: false,
    defaultKey: key === '',
  };
}
