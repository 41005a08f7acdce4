/**
 * One comparison of a treatment against a baseline on one metric, following
 * the conventions of GrowthBook's open stats engine, gbstats
 * (github.com/growthbook/growthbook, packages/stats/gbstats; checked against
 * gbstats 0.8.0 from PyPI in test/scripts/ab-stats.test.ts):
 *
 * - Per arm, sufficient statistics over units (users): n, Σy, Σy². A binomial
 *   metric (every value 0 or 1) has mean p = Σy/n and variance p(1−p)
 *   (gbstats `ProportionStatistic`); any other metric has the sample mean and
 *   the unbiased variance (Σy² − (Σy)²/n)/(n−1) (`SampleMeanStatistic`).
 * - Absolute lift Δ = m_b − m_a with Var = v_b/n_b + v_a/n_a.
 * - Relative lift Δ/m_a, with the delta-method variance
 *   Var = v_b/(m_a² n_b) + v_a m_b²/(m_a⁴ n_a) (`frequentist_variance`).
 * - Welch–Satterthwaite degrees of freedom
 *   ν = (v_b/n_b + v_a/n_a)² / (v_b²/(n_b²(n_b−1)) + v_a²/(n_a²(n_a−1))).
 * - Two-sided p-value 2(1 − F_ν(|lift|/se)) and intervals lift ± F_ν⁻¹(1−α/2)·se
 *   (`TwoSidedTTest`), reported on the relative scale as gbstats does.
 * - The always-valid interval of `SequentialTwoSidedTTest` (Waudby-Smith et
 *   al. 2023, "Time-uniform central limit theory and asymptotic confidence
 *   sequences", arXiv:2103.06476 eq. 9; ρ from eq. 161, p-value eq. 155):
 *   with N = n_a + n_b, s² = Var·N, τ the tuning parameter (5000, gbstats'
 *   default) and ρ = √((−2 ln α + ln(1 − 2 ln α))/τ), the half-width is
 *   √s² · √(2(Nρ² + 1) ln(√(Nρ² + 1)/α) / (Nρ)²). It holds at every sample
 *   size at once, so an operator may look every day and stop when it excludes 0.
 * - Chance to beat the baseline: gbstats' `EffectBayesianABTest` with its
 *   default improper flat prior on the relative lift, so the posterior is
 *   N(lift, se²) and the chance is Φ(lift/se).
 */
import { normalCdf, tCdf, tQuantile } from './distributions.js';
import { type Interval, wilson } from './srm.js';

/** Sufficient statistics of one arm on one metric, over its units. */
export interface Moments {
  /** Units exposed. */
  readonly n: number;
  /** Σ y over units (the conversions for a binomial metric). */
  readonly sum: number;
  /** Σ y² over units. */
  readonly sumSquares: number;
}

export type MetricType = 'binomial' | 'mean';

/** The mean of one arm. */
export function meanOf(m: Moments): number {
  return m.n === 0 ? 0 : m.sum / m.n;
}

/** The per-unit variance of one arm: p(1−p) for a binomial metric, else the unbiased sample variance. */
export function varianceOf(m: Moments, type: MetricType): number {
  const mean = meanOf(m);
  if (type === 'binomial') return mean * (1 - mean);
  if (m.n < 2) return 0;
  return Math.max(0, (m.sumSquares - (m.sum * m.sum) / m.n) / (m.n - 1));
}

/** One arm as the report shows it. */
export interface ArmSummary {
  readonly name: string;
  readonly units: number;
  /** Units with y > 0 (for a binomial metric: converted units), when known. */
  readonly converted?: number;
  readonly sum: number;
  readonly mean: number;
  /** 95% interval of the mean: Wilson for a binomial metric, mean ± t·sd/√n otherwise. */
  readonly ci: Interval;
}

/** The arm's summary, with its 95% interval. */
export function summarise(name: string, m: Moments, type: MetricType, converted?: number): ArmSummary {
  const mean = meanOf(m);
  let ci: Interval;
  if (type === 'binomial') {
    ci = wilson(m.sum, m.n);
  } else if (m.n < 2) {
    ci = { low: Number.NEGATIVE_INFINITY, high: Number.POSITIVE_INFINITY };
  } else {
    const half = tQuantile(0.975, m.n - 1) * Math.sqrt(varianceOf(m, type) / m.n);
    ci = { low: mean - half, high: mean + half };
  }
  return { name, units: m.n, ...(converted === undefined ? {} : { converted }), sum: m.sum, mean, ci };
}

/** A lift on one scale. */
export interface Lift {
  readonly estimate: number;
  readonly se: number;
  /** Fixed-horizon (1−α) interval, Student's t with Welch's degrees of freedom. */
  readonly ci: Interval;
  /** Always-valid (1−α) interval (asymptotic confidence sequence). */
  readonly sequentialCi: Interval;
}

export interface EffectOptions {
  /** Two-sided significance level of the intervals and tests (default 0.05). */
  readonly alpha: number;
  /** The sequential tuning parameter τ: the interval is tightest near N ≈ τ (gbstats default 5000). */
  readonly sequentialTuning: number;
}

export const DEFAULT_EFFECT_OPTIONS: EffectOptions = { alpha: 0.05, sequentialTuning: 5000 };

/** The test of treatment `b` against baseline `a`, or why there is none. */
export type Effect =
  | {
      readonly ok: true;
      readonly absolute: Lift;
      /** Undefined when the baseline mean is 0 (no relative lift). */
      readonly relative: Lift | undefined;
      /** The scale the p-values and the chance to beat refer to: relative unless the baseline mean is 0. */
      readonly scale: 'relative' | 'absolute';
      readonly dof: number;
      /** Two-sided fixed-horizon p-value (Welch). */
      readonly pValue: number;
      /** Always-valid p-value (can be read at any time). */
      readonly sequentialPValue: number;
      /** Posterior P(treatment better than baseline), flat prior. */
      readonly chanceToBeat: number;
    }
  | { readonly ok: false; readonly reason: string };

/** √(2(Nρ²+1) ln(√(Nρ²+1)/α) / (Nρ)²): the sequential half-width per unit of √s². */
function sequentialFactor(total: number, alpha: number, tuning: number): { factor: number; rho: number } {
  const rho = Math.sqrt((-2 * Math.log(alpha) + Math.log(-2 * Math.log(alpha) + 1)) / tuning);
  const nr2 = total * rho * rho;
  return {
    factor: Math.sqrt((2 * (nr2 + 1) * Math.log(Math.sqrt(nr2 + 1) / alpha)) / (total * rho) ** 2),
    rho,
  };
}

/** Compares treatment `b` with baseline `a`. */
export function compare(
  a: Moments,
  b: Moments,
  type: MetricType,
  options: EffectOptions = DEFAULT_EFFECT_OPTIONS,
  /** The treatment's metric type when it differs (the IPW estimate is a mean even of a binomial metric). */
  typeB: MetricType = type,
): Effect {
  const { alpha, sequentialTuning } = options;
  if (a.n < 2 || b.n < 2) return { ok: false, reason: 'fewer than 2 units in an arm' };
  const ma = meanOf(a);
  const mb = meanOf(b);
  const va = varianceOf(a, type);
  const vb = varianceOf(b, typeB);
  if (va <= 0 && vb <= 0)
    return { ok: false, reason: 'no variation in either arm (every unit has the same value)' };
  const dof =
    (vb / b.n + va / a.n) ** 2 / (vb ** 2 / (b.n ** 2 * (b.n - 1)) + va ** 2 / (a.n ** 2 * (a.n - 1)));
  const crit = tQuantile(1 - alpha / 2, dof);
  const total = a.n + b.n;
  const { factor, rho } = sequentialFactor(total, alpha, sequentialTuning);
  const lift = (estimate: number, variance: number): Lift => {
    const se = Math.sqrt(variance);
    const half = crit * se;
    const seqHalf = Math.sqrt(variance * total) * factor;
    return {
      estimate,
      se,
      ci: { low: estimate - half, high: estimate + half },
      sequentialCi: { low: estimate - seqHalf, high: estimate + seqHalf },
    };
  };
  const absolute = lift(mb - ma, vb / b.n + va / a.n);
  const relative =
    ma === 0 ? undefined : lift((mb - ma) / ma, vb / (ma ** 2 * b.n) + (va * mb ** 2) / (ma ** 4 * a.n));
  const on = relative ?? absolute;
  const z = on.se === 0 ? 0 : on.estimate / on.se;
  // Eq. 155 of arXiv:2103.06476 as gbstats writes it: st² = lift²·N/Var, e = exp(ρ²st²/(2(Nρ²+1)))/√(Nρ²+1).
  const tr2p1 = total * rho * rho + 1;
  const evalue = Math.exp((rho * rho * z * z * total) / (2 * tr2p1)) / Math.sqrt(tr2p1);
  return {
    ok: true,
    absolute,
    relative,
    scale: relative === undefined ? 'absolute' : 'relative',
    dof,
    pValue: Math.min(1, 2 * tCdf(-Math.abs(z), dof)),
    sequentialPValue: Math.min(1, 1 / evalue),
    chanceToBeat: normalCdf(z),
  };
}
