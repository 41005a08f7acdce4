/**
 * The experiment readout as a library: `readout(options)` reads the servers'
 * logs (and bulk outcomes), joins outcomes to exposures, and returns every
 * number and a verdict. `npm run ab-report` prints it; the rollout command
 * can call it to use the business metric as a gate beside the SLOs:
 *
 *   const r = await readout({ logs: ['logs'] });
 *   if (r.verdict === 'srm') abort(r.reason);
 *   else if (r.verdict === 'winner' && r.winner === 'stable') rollBack(r.reason);
 *   // 'inconclusive': not enough evidence either way yet (keep the canary share, look again)
 *
 * For each version pair and metric there are three comparisons:
 * - `positives` (stage 2, the notes' question): experiment (treated) vs
 *   control (untreated) among the canary's positive predictions: the causal
 *   value of acting on a positive;
 * - `arms` (stage 1): canary vs stable per user, as served: diluted, because
 *   the canary leaves its control group untreated;
 * - `promoted`: "the canary if it were promoted" (every positive treated)
 *   vs stable, by inverse-probability weighting of the treated share (Horvitz
 *   & Thompson 1952). Each canary unit i gets z_i = w_i·y_i with w_i = 1 if it
 *   never had a positive prediction, 1/s if it is in the experiment group,
 *   0 if in control (s = EXPERIMENT_SHARE); the estimate is the mean of z over
 *   all N canary units, with variance Var(z)/N, so
 *   μ̂ = (Σ_none y + Σ_experiment y / s) / N. Unbiased for the promoted
 *   canary's mean because each positive is treated with probability s.
 *
 * The top-level verdict is the primary comparison (default `promoted`) on the
 * primary metric (default `converted`, else the first metric) of the latest
 * pair.
 */

import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { type UserIdLogging, UserIds } from '../../../server/call-log.js';
import { DEV_PSEUDONYM_KEY } from '../../../server/config.js';
import { convertBulkOutcomes } from './bulk-outcomes.js';
import {
  type ArmSummary,
  compare,
  DEFAULT_EFFECT_OPTIONS,
  type Effect,
  type EffectOptions,
  type MetricType,
  type Moments,
  summarise,
} from './effect.js';
import { DEFAULT_ENGINE_OPTIONS, Engine, type EngineOptions } from './engine.js';
import {
  type ExposureRules,
  type IgnoredRow,
  type InputSummary,
  type MomentRow,
  type NotRandomised,
  type PairTally,
  type ResolutionRow,
  tallyExposures,
} from './exposure.js';
import { expandLogPaths, stage } from './log-files.js';
import { type Interval, type SplitCheck, splitCheck, wilson } from './srm.js';
import { DEFAULT_DECISION_RULES, type DecisionRules, decide, type Verdict } from './verdict.js';

export type { Verdict } from './verdict.js';

export type ComparisonKind = 'positives' | 'arms' | 'promoted';

export interface ReadoutOptions {
  /** Log files or directories (walked for *.log, *.jsonl and .gz); `-` reads `stdin`. */
  readonly logs: readonly string[];
  /** Bulk outcome files (CSV or JSON lines, .gz too); `-` reads `stdin`. */
  readonly outcomes: readonly string[];
  readonly stdin?: Readable;
  /** How the servers log user ids, and their pseudonym key: bulk user ids are turned into the same tokens. */
  readonly userIds: UserIdLogging;
  readonly pseudonymKey: string;
  /** Expected canary share of users (stage 1), 0..1. */
  readonly canaryShare: number;
  /** The canary's EXPERIMENT_SHARE (stage 2), 0..1: the expected split and the IPW weight. */
  readonly experimentShare: number;
  /** Significance level of the sample-ratio checks (default 0.001). */
  readonly srmAlpha: number;
  readonly effect: EffectOptions;
  readonly decision: DecisionRules;
  readonly exposure: ExposureRules;
  /** The metric the verdict uses (default `converted` when present, else the first). */
  readonly metric?: string;
  /** The comparison the verdict uses (default `promoted`). */
  readonly primary: ComparisonKind;
  /** Only pairs with these versions. */
  readonly stableVersion?: string;
  readonly canaryVersion?: string;
  readonly engine: EngineOptions;
}

export const DEFAULT_READOUT_OPTIONS: Omit<ReadoutOptions, 'logs'> = {
  outcomes: [],
  userIds: 'pseudonym',
  pseudonymKey: DEV_PSEUDONYM_KEY,
  canaryShare: 0.1,
  experimentShare: 0.5,
  srmAlpha: 0.001,
  effect: DEFAULT_EFFECT_OPTIONS,
  decision: DEFAULT_DECISION_RULES,
  exposure: { delayMs: 0 },
  primary: 'promoted',
  engine: DEFAULT_ENGINE_OPTIONS,
};

/** Predictions, users, positives and treated of one arm and group (`(all)`: the whole arm). */
export interface GroupRow {
  readonly arm: string;
  readonly group: string;
  readonly predictions: number;
  readonly users: number;
  readonly positives: number;
  readonly positiveRate: number;
  readonly ci: Interval;
  readonly treated: number;
}

export interface Assignment {
  /** Stage 1: stable vs canary. */
  readonly arms: SplitCheck;
  /** Stage 2: experiment vs control among the canary's positives. */
  readonly experiment: SplitCheck;
  readonly groups: readonly GroupRow[];
  /** Users seen on both arms (QA overrides, or a weight change in the window): excluded from comparisons. */
  readonly usersOnBothArms: number;
  /** Canary users seen in both stage-2 groups: excluded from comparisons. */
  readonly usersInBothGroups: number;
  /**
   * Per arm, the predictions of the pair's window that were not randomised
   * (forced by `x-ab-group`, pinned to a version; a call may be both) and the
   * units they name: no exposures, left out of every count and comparison.
   */
  readonly notRandomised: Readonly<Record<'stable' | 'canary', NotRandomised & { readonly units: number }>>;
}

export interface Comparison {
  readonly kind: ComparisonKind;
  readonly title: string;
  readonly metric: string;
  readonly metricType: MetricType;
  readonly baseline: ArmSummary;
  readonly treatment: ArmSummary;
  readonly effect: Effect;
  readonly verdict: Verdict;
  readonly winner?: string;
  readonly reason: string;
  /** Outcome rows left out by the time rules, and duplicates counted once. */
  readonly ignored: {
    readonly beforeExposure: number;
    readonly inDelay: number;
    readonly afterWindow: number;
    readonly duplicates: number;
  };
}

/** One version pair: its model, versions, experiment and window (first and last prediction counted). */
export interface PairReadout
  extends Pick<PairTally, 'model' | 'stableVersion' | 'canaryVersion' | 'experiment' | 'from' | 'to'> {
  readonly assignment: Assignment;
  readonly comparisons: readonly Comparison[];
  /** The primary metric of this pair, when it has outcomes. */
  readonly metric?: string;
  /** The primary comparison's verdict on the primary metric. */
  readonly verdict: Verdict;
  readonly winner?: string;
  readonly reason: string;
}

export interface OutcomeSummary {
  readonly fromLogs: number;
  readonly fromBulk: number;
  readonly metrics: readonly { model: string; metric: string; type: MetricType; outcomes: number }[];
  readonly resolution: readonly ResolutionRow[];
  readonly unexposed: readonly { model: string; metric: string; outcomes: number }[];
}

export interface Readout {
  readonly input: InputSummary & { readonly logFiles: number; readonly bulkFiles: number };
  readonly outcomes: OutcomeSummary;
  readonly pairs: readonly PairReadout[];
  /** The verdict of the primary comparison of the latest pair: what a gate acts on. */
  readonly verdict: Verdict;
  readonly winner?: string;
  readonly reason: string;
  readonly primary: { readonly comparison: ComparisonKind; readonly metric?: string; readonly pair?: number };
  /** The engine's settings and each statement's wall time. */
  readonly engine: EngineOptions & { readonly timings: readonly { statement: string; ms: number }[] };
  readonly settings: {
    readonly canaryShare: number;
    readonly experimentShare: number;
    readonly srmAlpha: number;
    readonly alpha: number;
    readonly sequentialTuning: number;
    readonly minSample: number;
    readonly margin: number;
    readonly decision: DecisionRules['decision'];
    readonly delayMs: number;
    readonly windowMs?: number;
    readonly since?: string;
    readonly until?: string;
  };
}

const TITLES: Record<ComparisonKind, string> = {
  positives: "Stage 2: experiment vs control among the canary's positives",
  arms: 'Stage 1: canary vs stable, as served (diluted by the untreated control group)',
  promoted: 'Canary if promoted (IPW) vs stable',
};

const fmtP = (p: number) => (p < 0.001 ? p.toExponential(1) : p.toFixed(3));

/** The assignment checks of one pair (the users of every arm when every request carries one). */
function assignmentOf(t: PairTally, o: ReadoutOptions): Assignment {
  const arm = (name: 'stable' | 'canary') => t.assignments.find((a) => a.arm === name && a.grp === undefined);
  const group = (g: string) => t.assignments.find((a) => a.arm === 'canary' && a.grp === g);
  const stable = arm('stable');
  const canary = arm('canary');
  const present = [stable, canary].filter(
    (a): a is NonNullable<typeof a> => a !== undefined && a.requests > 0,
  );
  const byUsers = present.length > 0 && present.every((a) => a.requestsWithUsers === a.requests);
  const arms = splitCheck(
    'Stage 1: Envoy split between deployments',
    'arm',
    byUsers ? 'users' : 'requests',
    ['stable', 'canary'],
    byUsers ? [stable?.users ?? 0, canary?.users ?? 0] : [stable?.requests ?? 0, canary?.requests ?? 0],
    1 - o.canaryShare,
    o.srmAlpha,
  );
  const exp = group('experiment');
  const ctl = group('control');
  const stage2 = [exp, ctl].filter((g): g is NonNullable<typeof g> => g !== undefined && g.predictions > 0);
  const expByUsers = stage2.length > 0 && stage2.every((g) => g.withUser === g.predictions);
  const experiment = splitCheck(
    "Stage 2: the canary's positives, experiment vs control",
    'group',
    expByUsers ? 'users' : 'predictions',
    ['experiment', 'control'],
    expByUsers ? [exp?.users ?? 0, ctl?.users ?? 0] : [exp?.predictions ?? 0, ctl?.predictions ?? 0],
    o.experimentShare,
    o.srmAlpha,
  );
  const order = ['baseline', 'experiment', 'control', 'canary_negative'];
  const groups: GroupRow[] = [];
  for (const name of ['stable', 'canary'] as const) {
    const rows = t.assignments
      .filter((a) => a.arm === name && a.grp !== undefined)
      .sort((a, b) => (order.indexOf(a.grp ?? '') + 1 || 99) - (order.indexOf(b.grp ?? '') + 1 || 99));
    const all = arm(name);
    for (const a of [...rows, ...(all ? [all] : [])]) {
      groups.push({
        arm: name,
        group: a.grp ?? '(all)',
        predictions: a.predictions,
        users: a.users,
        positives: a.positives,
        positiveRate: a.predictions === 0 ? 0 : a.positives / a.predictions,
        ci: wilson(a.positives, a.predictions),
        treated: a.treated,
      });
    }
  }
  const left = (name: 'stable' | 'canary') => {
    const r = t.notRandomised.find((x) => x.arm === name);
    return {
      predictions: r?.predictions ?? 0,
      forced: r?.forced ?? 0,
      pinned: r?.pinned ?? 0,
      units: r?.units ?? 0,
    };
  };
  return {
    arms,
    experiment,
    groups,
    usersOnBothArms: t.bothArms,
    usersInBothGroups: t.bothGroups,
    notRandomised: { stable: left('stable'), canary: left('canary') },
  };
}

const add = (
  xs: readonly MomentRow[],
): Moments & { positiveUnits: number; withOutcome: number; duplicates: number } => ({
  n: xs.reduce((s, x) => s + x.n, 0),
  sum: xs.reduce((s, x) => s + x.sum, 0),
  sumSquares: xs.reduce((s, x) => s + x.sumSquares, 0),
  positiveUnits: xs.reduce((s, x) => s + x.positiveUnits, 0),
  withOutcome: xs.reduce((s, x) => s + x.withOutcome, 0),
  duplicates: xs.reduce((s, x) => s + x.duplicates, 0),
});

const mismatchText = (label: string, s: SplitCheck) =>
  `${label} (${s.rows.map((r) => `${r.name} ${r.count}`).join(' / ')} ${s.unit}, expected ${s.rows.map((r) => `${(100 * r.expected).toFixed(0)}%`).join('/')}: chi-square ${s.test?.chi2.toFixed(1)}, p = ${fmtP(s.test?.p ?? 1)})`;

/** The three comparisons of one pair on one metric. */
function comparisonsOf(
  t: PairTally,
  a: Assignment,
  metric: string,
  type: MetricType,
  o: ReadoutOptions,
): Comparison[] {
  const cells = t.moments.filter((m) => m.metric === metric);
  const cell = (stage: MomentRow['stage'], grp: string, stratum?: string) =>
    add(
      cells.filter(
        (m) => m.stage === stage && m.grp === grp && (stratum === undefined || m.stratum === stratum),
      ),
    );
  const ignoredOf = (stage: IgnoredRow['stage'], duplicates: number) => {
    const i = t.ignored.find((x) => x.stage === stage && x.metric === metric);
    return {
      beforeExposure: i?.beforeExposure ?? 0,
      inDelay: i?.inDelay ?? 0,
      afterWindow: i?.afterWindow ?? 0,
      duplicates,
    };
  };
  const stage1 = a.arms.srm ? [mismatchText('stage 1', a.arms)] : [];
  const stage2 = a.experiment.srm ? [mismatchText('stage 2', a.experiment)] : [];
  const build = (
    kind: ComparisonKind,
    base: ReturnType<typeof add> & { name: string },
    treat: ReturnType<typeof add> & { name: string },
    typeB: MetricType,
    mismatches: string[],
    stage: IgnoredRow['stage'],
  ): Comparison => {
    const baseline = summarise(base.name, base, type, base.positiveUnits);
    const treatment = summarise(treat.name, treat, typeB, typeB === type ? treat.positiveUnits : undefined);
    const effect = compare(base, treat, type, o.effect, typeB);
    const d = decide(
      { baseline, treatment, effect, outcomes: base.withOutcome + treat.withOutcome, mismatches },
      o.decision,
    );
    return {
      kind,
      title: TITLES[kind],
      metric,
      metricType: type,
      baseline,
      treatment,
      effect,
      verdict: d.verdict,
      ...(d.winner === undefined ? {} : { winner: d.winner }),
      reason: d.reason,
      ignored: ignoredOf(stage, base.duplicates + treat.duplicates),
    };
  };
  const control = { ...cell('positives', 'control'), name: 'control' };
  const experiment = { ...cell('positives', 'experiment'), name: 'experiment' };
  const stable = { ...cell('arms', 'stable'), name: 'stable' };
  const canary = { ...cell('arms', 'canary'), name: 'canary' };
  // IPW: z = y on never-positive canary units, y/s on experiment units, 0 on control units.
  const s = o.experimentShare;
  const none = cell('arms', 'canary', 'none');
  const treated = cell('arms', 'canary', 'experiment');
  const promoted = {
    n: canary.n,
    sum: none.sum + treated.sum / s,
    sumSquares: none.sumSquares + treated.sumSquares / (s * s),
    positiveUnits: canary.positiveUnits,
    withOutcome: canary.withOutcome,
    duplicates: canary.duplicates,
    name: 'canary',
  };
  const out = [build('positives', control, experiment, type, stage2, 'positives')];
  out.push(build('arms', stable, canary, type, stage1, 'arms'));
  if (s > 0) out.push(build('promoted', stable, promoted, 'mean', [...stage1, ...stage2], 'arms'));
  return out;
}

/** Runs the readout. Options not given take DEFAULT_READOUT_OPTIONS. */
export async function readout(
  options: Partial<ReadoutOptions> & { readonly logs: readonly string[] },
): Promise<Readout> {
  const o: ReadoutOptions = { ...DEFAULT_READOUT_OPTIONS, ...options };
  const engine = await Engine.open(o.engine);
  try {
    const stdin = o.stdin ?? process.stdin;
    const logFiles: string[] = [];
    for (const p of o.logs) {
      if (p === '-') logFiles.push(await stage(stdin, join(engine.dir, 'stdin.log')));
      else logFiles.push(...expandLogPaths([p]));
    }
    const userIds = new UserIds(o.userIds, o.pseudonymKey);
    const bulkFiles: string[] = [];
    for (const [i, f] of o.outcomes.entries()) {
      const out = join(engine.dir, `bulk-${i}.jsonl`);
      await convertBulkOutcomes(f, out, userIds, stdin);
      bulkFiles.push(out);
    }
    const tallies = await tallyExposures(engine, { logFiles, bulkFiles }, o.exposure);

    const metricsOf = (model: string) => tallies.metrics.filter((m) => m.model === model);
    const pairs: PairReadout[] = [];
    for (const t of tallies.pairs) {
      if (o.stableVersion !== undefined && t.stableVersion !== o.stableVersion) continue;
      if (o.canaryVersion !== undefined && t.canaryVersion !== o.canaryVersion) continue;
      const assignment = assignmentOf(t, o);
      const metrics = metricsOf(t.model);
      const comparisons = metrics.flatMap((m) =>
        comparisonsOf(t, assignment, m.metric, m.binomial ? 'binomial' : 'mean', o),
      );
      const primaryMetric =
        o.metric ?? (metrics.some((m) => m.metric === 'converted') ? 'converted' : metrics[0]?.metric);
      const primary = comparisons.find((c) => c.kind === o.primary && c.metric === primaryMetric);
      let verdict: Pick<PairReadout, 'verdict' | 'winner' | 'reason'>;
      if (primary) {
        verdict = {
          verdict: primary.verdict,
          ...(primary.winner ? { winner: primary.winner } : {}),
          reason: primary.reason,
        };
      } else {
        const srm = [assignment.arms, assignment.experiment].filter((s) => s.srm);
        verdict =
          srm.length > 0
            ? {
                verdict: 'srm',
                reason: `no winner: sample ratio mismatch in ${srm.map((s) => mismatchText(s === assignment.arms ? 'stage 1' : 'stage 2', s)).join(' and ')}`,
              }
            : {
                verdict: 'inconclusive',
                reason:
                  primaryMetric === undefined
                    ? `no outcomes recorded for model ${t.model}: nothing to compare yet (send RecordOutcomes, or --outcomes FILE)`
                    : `no outcomes recorded for metric ${primaryMetric} of model ${t.model}`,
              };
      }
      pairs.push({
        model: t.model,
        stableVersion: t.stableVersion,
        canaryVersion: t.canaryVersion,
        experiment: t.experiment,
        from: t.from,
        to: t.to,
        assignment,
        comparisons,
        ...(primaryMetric === undefined ? {} : { metric: primaryMetric }),
        ...verdict,
      });
    }
    const latestIndex = pairs.reduce(
      (best, p, i) => (best < 0 || p.to >= (pairs[best] as PairReadout).to ? i : best),
      -1,
    );
    const latest = pairs[latestIndex];
    const top = latest
      ? {
          verdict: latest.verdict,
          ...(latest.winner ? { winner: latest.winner } : {}),
          reason: latest.reason,
        }
      : {
          verdict: 'inconclusive' as const,
          reason:
            tallies.input.predictions === 0
              ? 'no predictions in the logs read'
              : 'no version pair: stable and canary never served in the same window',
        };
    const latestMetric = latest ? latest.metric : o.metric;
    const { since, until, delayMs, windowMs } = o.exposure;
    return {
      input: { ...tallies.input, logFiles: logFiles.length, bulkFiles: bulkFiles.length },
      outcomes: {
        fromLogs: tallies.input.logOutcomes,
        fromBulk: tallies.input.bulkOutcomes,
        metrics: tallies.metrics.map((m) => ({
          model: m.model,
          metric: m.metric,
          type: m.binomial ? 'binomial' : 'mean',
          outcomes: m.outcomes,
        })),
        resolution: tallies.resolution,
        unexposed: tallies.unexposed,
      },
      pairs,
      ...top,
      primary: {
        comparison: o.primary,
        ...(latestMetric === undefined ? {} : { metric: latestMetric }),
        ...(latest ? { pair: latestIndex } : {}),
      },
      engine: { ...o.engine, timings: engine.timings },
      settings: {
        canaryShare: o.canaryShare,
        experimentShare: o.experimentShare,
        srmAlpha: o.srmAlpha,
        alpha: o.effect.alpha,
        sequentialTuning: o.effect.sequentialTuning,
        minSample: o.decision.minSample,
        margin: o.decision.margin,
        decision: o.decision.decision,
        delayMs,
        ...(windowMs === undefined ? {} : { windowMs }),
        ...(since === undefined ? {} : { since: new Date(since).toISOString() }),
        ...(until === undefined ? {} : { until: new Date(until).toISOString() }),
      },
    };
  } finally {
    engine.close();
  }
}
