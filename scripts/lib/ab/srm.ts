/**
 * The assignment checks: is each split (Envoy's stable/canary, the canary's
 * experiment/control) the split it should be? Observed shares with 95% Wilson
 * intervals, and Pearson's chi-square test of the counts against the expected
 * shares. A p-value under the SRM alpha (default 0.001, GrowthBook's
 * `srmThreshold`) is a sample ratio mismatch: the assignment is broken or the
 * data is filtered, and no comparison built on that split can be trusted.
 */
import { chiSquare1Sf, Z95 } from './distributions.js';

/** A two-sided interval. */
export interface Interval {
  readonly low: number;
  readonly high: number;
}

/** The Wilson score interval for `x` successes in `n` trials (Wilson 1927). */
export function wilson(x: number, n: number, z = Z95): Interval {
  if (n === 0) return { low: 0, high: 1 };
  const p = x / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n))) / denom;
  // Exact ends when all or none succeeded (the formula lands a rounding error away).
  return { low: x === 0 ? 0 : Math.max(0, centre - half), high: x === n ? 1 : Math.min(1, centre + half) };
}

export interface ChiSquare {
  readonly chi2: number;
  /** P(χ²₁ ≥ chi2): the chance of a split at least this far off if the expected shares hold. */
  readonly p: number;
}

/**
 * Pearson's chi-square goodness-of-fit test for two categories (one degree of
 * freedom). Undefined when an expected count is below 5, where the
 * approximation is poor.
 */
export function chiSquare2(observed: readonly [number, number], share0: number): ChiSquare | undefined {
  const n = observed[0] + observed[1];
  const e0 = n * share0;
  const e1 = n * (1 - share0);
  if (e0 < 5 || e1 < 5) return undefined;
  const chi2 = (observed[0] - e0) ** 2 / e0 + (observed[1] - e1) ** 2 / e1;
  return { chi2, p: chiSquare1Sf(chi2) };
}

/** One side of a split. */
export interface Share {
  readonly name: string;
  readonly count: number;
  readonly share: number;
  readonly ci: Interval;
  readonly expected: number;
}

/** A split, its test and its verdict. */
export interface SplitCheck {
  readonly title: string;
  /** What the rows are: arm or group. */
  readonly label: string;
  /** `users`, `requests` or `predictions`: the unit of randomisation the logs allow. */
  readonly unit: string;
  readonly rows: readonly Share[];
  readonly test: ChiSquare | undefined;
  /** True on a sample ratio mismatch (p < alpha). */
  readonly srm: boolean;
  readonly note?: string;
}

/** Checks the split `counts` of `names` against the expected share of the first. */
export function splitCheck(
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
