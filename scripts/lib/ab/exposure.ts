/**
 * The exposure join: from log lines and outcomes to per-arm tallies, under
 * the exposure rules. The statements are sql.ts's; this module runs them in
 * order on an engine and types what comes back.
 *
 * The rules (each one a test in test/scripts/ab-readout.test.ts):
 * - per model version pair, over the time both versions served (sql.ts
 *   PAIRS), never pooling runs with other versions behind an arm;
 * - a unit counts from its first exposure on its arm (stage 1), or from its
 *   first positive prediction (stage 2); outcomes before that, or before the
 *   delay has passed, or after the window, are ignored (and counted);
 * - only randomised predictions are exposures: one forced onto its arm
 *   (`x-ab-group`) or pinned to a version is counted and left out;
 * - a unit seen on both arms of a pair (a forced or pinned prediction on the
 *   other arm included), or in both stage-2 groups, is reported and left out
 *   of every comparison of that pair;
 * - the same (prediction or user, metric) counts once, however often sent.
 */
import type { Engine, Row } from './engine.js';
import * as SQL from './sql.js';

export interface ExposureRules {
  /** Only predictions logged in [since, until) (epoch ms). Outcomes are not cut: they follow exposures. */
  readonly since?: number;
  readonly until?: number;
  /** Outcomes count from exposure + delayMs... */
  readonly delayMs: number;
  /** ...to exposure + delayMs + windowMs; undefined: no end (GrowthBook's conversion window and delay). */
  readonly windowMs?: number;
}

/** Predictions left out as not randomised: all of them, those forced by `x-ab-group`, those pinned to a version (a call may be both). */
export interface NotRandomised {
  readonly predictions: number;
  readonly forced: number;
  readonly pinned: number;
}

export interface InputSummary {
  readonly predictionRequests: number;
  /** Every prediction read, randomised or not. */
  readonly predictions: number;
  readonly notRandomised: NotRandomised;
  readonly logOutcomes: number;
  readonly bulkOutcomes: number;
  readonly firstTime?: string;
  readonly lastTime?: string;
}

/** Assignment counts of one arm (grp undefined) or one of its groups. */
export interface AssignmentRow {
  readonly arm: 'stable' | 'canary';
  readonly grp?: string;
  readonly predictions: number;
  readonly withUser: number;
  readonly users: number;
  readonly positives: number;
  readonly treated: number;
  readonly requests: number;
  readonly requestsWithUsers: number;
  readonly firstT: number;
  readonly lastT: number;
}

/** Sufficient statistics of one cell: stage `arms` by arm and stratum, or `positives` by group. */
export interface MomentRow {
  readonly stage: 'arms' | 'positives';
  readonly grp: string;
  /** For stage `arms` on the canary: `experiment`, `control` or `none` (never positive). */
  readonly stratum: string;
  readonly metric: string;
  readonly n: number;
  readonly sum: number;
  readonly sumSquares: number;
  readonly positiveUnits: number;
  readonly withOutcome: number;
  readonly duplicates: number;
}

/** Outcome rows left out by the time rules. */
export interface IgnoredRow {
  readonly stage: 'arms' | 'positives';
  readonly metric: string;
  readonly beforeExposure: number;
  readonly inDelay: number;
  readonly afterWindow: number;
  readonly countedRows: number;
}

export interface PairTally {
  readonly pair: number;
  readonly model: string;
  readonly stableVersion: string;
  readonly canaryVersion: string;
  readonly experiment: string;
  /** The first and last prediction the pair counts. */
  readonly from: string;
  readonly to: string;
  readonly assignments: readonly AssignmentRow[];
  /** Units seen on both arms, and canary units seen in both stage-2 groups: excluded. */
  readonly bothArms: number;
  readonly bothGroups: number;
  /** The pair's predictions left out as not randomised, per arm that served them, with the units they name. */
  readonly notRandomised: readonly (NotRandomised & {
    readonly arm: 'stable' | 'canary';
    readonly units: number;
  })[];
  readonly moments: readonly MomentRow[];
  readonly ignored: readonly IgnoredRow[];
}

export interface MetricInfo {
  readonly model: string;
  readonly metric: string;
  readonly binomial: boolean;
  readonly outcomes: number;
}

/** How outcomes found their units. */
export interface ResolutionRow {
  readonly model: string;
  readonly metric: string;
  readonly resolved: 'prediction' | 'user' | 'ambiguous' | 'unmatched';
  readonly source: 'log' | 'bulk';
  readonly outcomes: number;
  readonly keys: number;
}

export interface Tallies {
  readonly input: InputSummary;
  readonly metrics: readonly MetricInfo[];
  readonly resolution: readonly ResolutionRow[];
  /** Outcomes whose unit was never exposed in any pair, per model and metric. */
  readonly unexposed: readonly { model: string; metric: string; outcomes: number }[];
  readonly pairs: readonly PairTally[];
}

const num = (v: unknown): number => (typeof v === 'number' ? v : Number(v ?? 0));
const str = (v: unknown): string => (v === null || v === undefined ? '' : String(v));
const iso = (v: unknown): string | undefined =>
  v === null || v === undefined ? undefined : new Date(num(v)).toISOString();

/** Reads `logFiles` and the converted `bulkFiles` and tallies every pair. */
export async function tallyExposures(
  engine: Engine,
  sources: { readonly logFiles: readonly string[]; readonly bulkFiles: readonly string[] },
  rules: ExposureRules,
): Promise<Tallies> {
  await engine.run(sources.logFiles.length === 0 ? SQL.EMPTY_LINES : SQL.loadLines(sources.logFiles));
  await engine.run(
    SQL.loadPredictions({
      ...(rules.since === undefined ? {} : { since: rules.since }),
      ...(rules.until === undefined ? {} : { until: rules.until }),
    }),
  );
  await engine.run(SQL.loadOutcomes(sources.bulkFiles));
  await engine.run(SQL.DROP_LINES);
  const [inRow] = await engine.rows(SQL.INPUT_SUMMARY);
  const firstTime = iso(inRow?.first_t);
  const lastTime = iso(inRow?.last_t);
  const input: InputSummary = {
    predictionRequests: num(inRow?.prediction_requests),
    predictions: num(inRow?.predictions),
    notRandomised: {
      predictions: num(inRow?.not_randomised),
      forced: num(inRow?.forced),
      pinned: num(inRow?.pinned),
    },
    logOutcomes: num(inRow?.log_outcomes),
    bulkOutcomes: num(inRow?.bulk_outcomes),
    ...(firstTime === undefined ? {} : { firstTime }),
    ...(lastTime === undefined ? {} : { lastTime }),
  };

  for (const s of [
    SQL.PAIRS,
    SQL.PAIR_ARMS,
    SQL.NOT_RANDOMISED,
    SQL.EXPOSURES,
    SQL.COMPARISON_UNITS,
    SQL.RESOLVED_OUTCOMES,
    SQL.METRICS,
    SQL.JOINED,
  ]) {
    await engine.run(s);
  }
  const attribution = { delayMs: rules.delayMs, windowMs: rules.windowMs };
  await engine.run(SQL.unitValues(attribution));

  const byPair = <T>(rows: Row[], map: (r: Row) => T): Map<number, T[]> => {
    const out = new Map<number, T[]>();
    for (const r of rows) {
      const k = num(r.pair);
      const list = out.get(k) ?? [];
      list.push(map(r));
      out.set(k, list);
    }
    return out;
  };
  const assignments = byPair(
    await engine.rows(SQL.ASSIGNMENTS),
    (r): AssignmentRow => ({
      arm: str(r.arm) as AssignmentRow['arm'],
      ...(r.grp === null ? {} : { grp: str(r.grp) }),
      predictions: num(r.predictions),
      withUser: num(r.with_user),
      users: num(r.users),
      positives: num(r.positives),
      treated: num(r.treated),
      requests: num(r.requests),
      requestsWithUsers: num(r.requests_with_users),
      firstT: num(r.first_t),
      lastT: num(r.last_t),
    }),
  );
  const notRandomised = byPair(await engine.rows(SQL.NOT_RANDOMISED_ROWS), (r) => ({
    arm: str(r.arm) as AssignmentRow['arm'],
    predictions: num(r.predictions),
    forced: num(r.forced),
    pinned: num(r.pinned),
    units: num(r.units),
  }));
  const exclusions = new Map((await engine.rows(SQL.EXCLUSIONS)).map((r) => [num(r.pair), r]));
  const moments = byPair(
    await engine.rows(SQL.MOMENTS),
    (r): MomentRow => ({
      stage: str(r.stage) as MomentRow['stage'],
      grp: str(r.grp),
      stratum: str(r.stratum),
      metric: str(r.metric),
      n: num(r.n),
      sum: num(r.sum),
      sumSquares: num(r.sum_squares),
      positiveUnits: num(r.positive_units),
      withOutcome: num(r.with_outcome),
      duplicates: num(r.duplicates),
    }),
  );
  const ignored = byPair(
    await engine.rows(SQL.ignoredOutcomes(attribution)),
    (r): IgnoredRow => ({
      stage: str(r.stage) as IgnoredRow['stage'],
      metric: str(r.metric),
      beforeExposure: num(r.before_exposure),
      inDelay: num(r.in_delay),
      afterWindow: num(r.after_window),
      countedRows: num(r.counted_rows),
    }),
  );
  const pairs = (await engine.rows(SQL.PAIR_ROWS)).map((r): PairTally => {
    const pair = num(r.pair);
    const ex = exclusions.get(pair);
    const rows = assignments.get(pair) ?? [];
    return {
      pair,
      model: str(r.model),
      stableVersion: str(r.stable_version),
      canaryVersion: str(r.canary_version),
      experiment: str(r.experiment),
      from: iso(Math.min(...rows.map((a) => a.firstT))) ?? '',
      to: iso(Math.max(...rows.map((a) => a.lastT))) ?? '',
      assignments: rows,
      bothArms: num(ex?.both_arms),
      bothGroups: num(ex?.both_groups),
      notRandomised: notRandomised.get(pair) ?? [],
      moments: moments.get(pair) ?? [],
      ignored: ignored.get(pair) ?? [],
    };
  });
  const metrics = (await engine.rows(SQL.METRIC_ROWS)).map((r) => ({
    model: str(r.model),
    metric: str(r.metric),
    binomial: r.binomial === true,
    outcomes: num(r.outcomes),
  }));
  const resolution = (await engine.rows(SQL.RESOLUTION_ROWS)).map((r) => ({
    model: str(r.model),
    metric: str(r.metric),
    resolved: str(r.resolved) as ResolutionRow['resolved'],
    source: str(r.source) as ResolutionRow['source'],
    outcomes: num(r.outcomes),
    keys: num(r.keys),
  }));
  const unexposed = (await engine.rows(SQL.UNEXPOSED_OUTCOMES)).map((r) => ({
    model: str(r.model),
    metric: str(r.metric),
    outcomes: num(r.outcomes),
  }));
  return { input, metrics, resolution, unexposed, pairs };
}
