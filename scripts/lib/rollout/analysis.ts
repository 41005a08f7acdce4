/**
 * The canary analysis: one comparison of canary with stable over an interval,
 * from two snapshots of live counters, judged against thresholds into
 * `pass | fail | inconclusive`. Pure functions; the snapshots come from
 * scripts/lib/rollout/sources.ts.
 *
 * Per arm, over the interval:
 *   calls      Envoy's count of data-plane calls routed to the arm (grpc_stats:
 *              `cluster.<c>.grpc.<service>.<method>.total`, c = stable, or canary
 *              and canary_with_fallback), else the servers' own count;
 *   failures   server-side failures: the servers' non-OK statuses that are not
 *              the caller's mistake (INVALID_ARGUMENT, NOT_FOUND… and CANCELLED
 *              are excluded), or, when larger, the failures Envoy saw minus the
 *              servers' caller mistakes — which adds what never reached a
 *              server (resets, no healthy upstream, injected faults);
 *   error rate failures / calls;
 *   p99        from the servers' `inference_request_duration_seconds` histogram
 *              buckets, interpolated within the bucket as Prometheus'
 *              `histogram_quantile` does.
 * The matching PromQL is in the README ("Canary analysis").
 */

/** Methods that carry predictions; ListModels, metadata and outcomes are not judged. */
export const DATA_PLANE_METHODS: readonly string[] = ['Predict', 'ModelInfer'];

/**
 * Statuses that say the caller was wrong, not the server (grpc status codes
 * doc): never counted as failures. CANCELLED: the caller went away.
 */
export const CALLER_CODES: ReadonlySet<string> = new Set([
  'CANCELLED',
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'UNAUTHENTICATED',
  'FAILED_PRECONDITION',
  'OUT_OF_RANGE',
]);

export type Arm = 'stable' | 'canary';

/** Failed canary calls that fail the error-rate check even before the sample is complete. */
export const FAILURES_ON_SHORT_SAMPLE = 10;

/** Cumulative counters of one arm at one moment. */
export interface ArmCounters {
  /** Envoy's grpc_stats totals for the arm, undefined when Envoy's stats were not read. */
  readonly envoy: { readonly total: number; readonly failure: number } | undefined;
  /** The servers' requests by status name, summed over the arm's servers (data-plane methods). */
  readonly byCode: Readonly<Record<string, number>>;
  /** The servers' latency histogram: cumulative counts per upper bound in seconds (`+Inf` last). */
  readonly buckets: ReadonlyMap<number, number>;
  /** How many of the arm's metrics endpoints answered. */
  readonly endpoints: number;
}

export interface Snapshot {
  readonly at: number;
  readonly arms: Readonly<Record<Arm, ArmCounters>>;
}

/** Thresholds of the analysis; defaults in DEFAULT_THRESHOLDS (README documents them). */
export interface Thresholds {
  /** The canary's error rate must stay at or below this (absolute SLO). */
  readonly maxErrorRate: number;
  /** …and at most this much above stable's (percentage points as a fraction). */
  readonly maxErrorRateIncrease: number;
  /** The canary's p99 must stay at or below this (the seed's RT target: 100 ms). */
  readonly maxP99Ms: number;
  /** …and at most this multiple of stable's p99 — judged only when it is also `minP99IncreaseMs` above it. */
  readonly maxP99Ratio: number;
  readonly minP99IncreaseMs: number;
  /** Fewer calls than this on either arm in the interval: inconclusive, never a pass. */
  readonly minCalls: number;
}

export const DEFAULT_THRESHOLDS: Thresholds = Object.freeze({
  maxErrorRate: 0.01,
  maxErrorRateIncrease: 0.005,
  maxP99Ms: 100,
  maxP99Ratio: 1.5,
  minP99IncreaseMs: 2,
  minCalls: 200,
});

/** One arm's figures over the interval. */
export interface ArmFigures {
  readonly calls: number;
  readonly failures: number;
  readonly errorRate: number | undefined;
  readonly p99Ms: number | undefined;
  /** Calls the servers counted (any status), for comparison with Envoy's. */
  readonly served: number;
  readonly callerErrors: number;
}

export type Verdict = 'pass' | 'fail' | 'inconclusive';

/** One check of one metric: its values, the limit, and whether it held. */
export interface Check {
  readonly name: string;
  readonly verdict: Verdict;
  readonly canary: number | undefined;
  readonly stable: number | undefined;
  readonly delta: number | undefined;
  readonly limit: string;
  readonly detail: string;
}

export interface Analysis {
  readonly verdict: Verdict;
  readonly from: string;
  readonly to: string;
  readonly intervalMs: number;
  readonly arms: Readonly<Record<Arm, ArmFigures>>;
  readonly checks: readonly Check[];
  readonly thresholds: Thresholds;
  /** True when stable's figures are the previous step's (this interval had too few stable calls). */
  readonly stableFromBaseline: boolean;
  /** One sentence: why it failed, or what is missing. */
  readonly summary: string;
}

function diffRecord(
  a: Readonly<Record<string, number>>,
  b: Readonly<Record<string, number>>,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)]))
    out[k] = Math.max(0, (b[k] ?? 0) - (a[k] ?? 0));
  return out;
}

/**
 * The q-quantile of a cumulative histogram (upper bound → cumulative count),
 * in the bound's unit, as Prometheus' `histogram_quantile`: linear within the
 * bucket, the highest finite bound when the rank falls in `+Inf`.
 */
export function histogramQuantile(q: number, buckets: ReadonlyMap<number, number>): number | undefined {
  const bounds = [...buckets.keys()].sort((x, y) => x - y);
  const total = buckets.get(Number.POSITIVE_INFINITY) ?? buckets.get(bounds.at(-1) as number) ?? 0;
  if (!(total > 0)) return undefined;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const b of bounds) {
    const c = buckets.get(b) ?? 0;
    if (c >= rank) {
      if (b === Number.POSITIVE_INFINITY) return prevBound;
      if (c === prevCount) return b;
      return prevBound + ((b - prevBound) * (rank - prevCount)) / (c - prevCount);
    }
    prevBound = b;
    prevCount = c;
  }
  return prevBound;
}

/** An arm's figures between two snapshots. */
export function armFigures(before: ArmCounters, after: ArmCounters): ArmFigures {
  const codes = diffRecord(before.byCode, after.byCode);
  let served = 0;
  let serverFailures = 0;
  let callerErrors = 0;
  for (const [code, n] of Object.entries(codes)) {
    served += n;
    if (code === 'OK') continue;
    if (CALLER_CODES.has(code)) callerErrors += n;
    else serverFailures += n;
  }
  let calls = served;
  let failures = serverFailures;
  if (before.envoy && after.envoy) {
    calls = Math.max(0, after.envoy.total - before.envoy.total);
    const envoyFailures = Math.max(0, after.envoy.failure - before.envoy.failure);
    failures = Math.max(serverFailures, envoyFailures - callerErrors);
  }
  const buckets = new Map<number, number>();
  for (const [b, c] of after.buckets) buckets.set(b, Math.max(0, c - (before.buckets.get(b) ?? 0)));
  const p99 = histogramQuantile(0.99, buckets);
  return {
    calls,
    failures,
    errorRate: calls > 0 ? failures / calls : undefined,
    p99Ms: p99 === undefined ? undefined : p99 * 1000,
    served,
    callerErrors,
  };
}

const pct = (x: number | undefined) => (x === undefined ? 'n/a' : `${(100 * x).toFixed(2)}%`);
const ms = (x: number | undefined) => (x === undefined ? 'n/a' : `${x.toFixed(2)} ms`);

/**
 * Judges canary against stable between two snapshots. `stableBaseline` stands
 * in for stable when stable has too few calls of its own in this interval —
 * at a 100% canary step no user reaches stable — so the relative limits
 * compare with stable as it was measured at the previous step.
 */
export function analyse(
  before: Snapshot,
  after: Snapshot,
  t: Thresholds = DEFAULT_THRESHOLDS,
  stableBaseline?: ArmFigures,
): Analysis {
  const measured = armFigures(before.arms.stable, after.arms.stable);
  const useBaseline =
    stableBaseline !== undefined && measured.calls < t.minCalls && stableBaseline.calls >= t.minCalls;
  const arms = {
    stable: useBaseline ? (stableBaseline as ArmFigures) : measured,
    canary: armFigures(before.arms.canary, after.arms.canary),
  };
  const { stable, canary } = arms;
  const checks: Check[] = [];
  const missing: string[] = [];
  for (const arm of ['canary', 'stable'] as const) {
    if (arm === 'stable' && useBaseline) continue;
    if (after.arms[arm].endpoints === 0) missing.push(`no ${arm} metrics endpoint answered`);
    if (arms[arm].calls < t.minCalls) missing.push(`${arms[arm].calls} ${arm} calls (need ${t.minCalls})`);
  }
  checks.push({
    name: 'sample',
    verdict: missing.length ? 'inconclusive' : 'pass',
    canary: canary.calls,
    stable: stable.calls,
    delta: undefined,
    limit: `≥ ${t.minCalls} calls per arm`,
    detail: missing.length
      ? missing.join('; ')
      : `${canary.calls} canary and ${stable.calls} stable calls${useBaseline ? ' (stable: its figures at the previous step; no user reaches it now)' : ''}`,
  });

  if (canary.errorRate !== undefined) {
    const over = canary.errorRate > t.maxErrorRate;
    const inc = stable.errorRate === undefined ? undefined : canary.errorRate - stable.errorRate;
    const rel = inc !== undefined && inc > t.maxErrorRateIncrease;
    // On a short sample only a clear failure counts (≥ FAILURES_ON_SHORT_SAMPLE failed calls):
    // a canary failing most calls needs no full sample to be judged, one unlucky call does not decide.
    const judged = missing.length === 0 || canary.failures >= FAILURES_ON_SHORT_SAMPLE;
    checks.push({
      name: 'error rate',
      verdict: judged && (over || rel) ? 'fail' : missing.length ? 'inconclusive' : 'pass',
      canary: canary.errorRate,
      stable: stable.errorRate,
      delta: inc,
      limit: `≤ ${pct(t.maxErrorRate)} and ≤ stable + ${pct(t.maxErrorRateIncrease)}`,
      detail: `canary ${pct(canary.errorRate)} (${canary.failures} of ${canary.calls}), stable ${pct(stable.errorRate)} (${stable.failures} of ${stable.calls})`,
    });
  }
  if (canary.p99Ms !== undefined) {
    const over = canary.p99Ms > t.maxP99Ms;
    const inc = stable.p99Ms === undefined ? undefined : canary.p99Ms - stable.p99Ms;
    const rel =
      stable.p99Ms !== undefined &&
      inc !== undefined &&
      canary.p99Ms > stable.p99Ms * t.maxP99Ratio &&
      inc > t.minP99IncreaseMs;
    checks.push({
      name: 'p99 latency',
      verdict: missing.length ? 'inconclusive' : over || rel ? 'fail' : 'pass',
      canary: canary.p99Ms,
      stable: stable.p99Ms,
      delta: inc,
      limit: `≤ ${t.maxP99Ms} ms and ≤ ${t.maxP99Ratio}× stable (when > ${t.minP99IncreaseMs} ms above it)`,
      detail: `canary ${ms(canary.p99Ms)}, stable ${ms(stable.p99Ms)}`,
    });
  }
  // A pass needs the full sample; a failure may show earlier (error rate above).
  const failed = checks.filter((c) => c.verdict === 'fail');
  const verdict: Verdict = failed.length ? 'fail' : missing.length ? 'inconclusive' : 'pass';
  const summary = failed.length
    ? `fail: ${failed.map((c) => `${c.name} ${c.detail}, limit ${c.limit}`).join('; ')}`
    : missing.length
      ? `inconclusive: ${missing.join('; ')}`
      : `pass: ${checks.map((c) => c.detail).join('; ')}`;
  return {
    verdict,
    from: new Date(before.at).toISOString(),
    to: new Date(after.at).toISOString(),
    intervalMs: after.at - before.at,
    arms,
    checks,
    thresholds: t,
    stableFromBaseline: useBaseline,
    summary,
  };
}
