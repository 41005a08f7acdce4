/**
 * The probability distributions the readout needs (standard normal, Student's
 * t, chi-square with one degree of freedom), in plain TypeScript: a few
 * hundred calls per report, so no numerical library is worth its weight.
 * Every function is checked against scipy 1.17 in test/scripts/ab-stats.test.ts.
 */

/** 97.5th percentile of the standard normal: two-sided 95% intervals. */
export const Z95 = 1.959963984540054;

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

/** Φ(x), the standard normal CDF. */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

/** The standard normal density. */
function normalPdf(x: number): number {
  return Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
}

/**
 * Φ⁻¹(p): a starting value from Abramowitz & Stegun 26.2.23 (|error| < 4.5e-4),
 * refined by Newton steps on `normalCdf` to its own precision.
 */
export function normalQuantile(p: number): number {
  if (!(p > 0 && p < 1)) {
    if (p === 0) return Number.NEGATIVE_INFINITY;
    if (p === 1) return Number.POSITIVE_INFINITY;
    return Number.NaN;
  }
  const q = p < 0.5 ? p : 1 - p;
  const t = Math.sqrt(-2 * Math.log(q));
  let x =
    t -
    (2.515517 + 0.802853 * t + 0.010328 * t * t) / (1 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t ** 3);
  if (p < 0.5) x = -x;
  for (let i = 0; i < 4; i++) x -= (normalCdf(x) - p) / normalPdf(x);
  return x;
}

/** ln Γ(x) for x > 0 (Lanczos, g = 7, nine coefficients: about 15 significant digits). */
export function logGamma(x: number): number {
  const c = [
    0.99999999999980993, 676.5203681218851, -1259.1392167224028, 771.32342877765313, -176.61502916214059,
    12.507343278686905, -0.13857109526572012, 9.9843695780195716e-6, 1.5056327351493116e-7,
  ];
  if (x < 0.5) return Math.log(Math.PI / Math.abs(Math.sin(Math.PI * x))) - logGamma(1 - x);
  const y = x - 1;
  let a = c[0] as number;
  const t = y + 7.5;
  for (let i = 1; i < 9; i++) a += (c[i] as number) / (y + i);
  return 0.5 * Math.log(2 * Math.PI) + (y + 0.5) * Math.log(t) - t + Math.log(a);
}

/** The continued fraction of the incomplete beta function (modified Lentz; Numerical Recipes §6.4). */
function betaContinuedFraction(a: number, b: number, x: number): number {
  const tiny = 1e-300;
  let c = 1;
  let d = 1 - ((a + b) * x) / (a + 1);
  if (Math.abs(d) < tiny) d = tiny;
  d = 1 / d;
  let h = d;
  for (let m = 1; m <= 100_000; m++) {
    const m2 = 2 * m;
    let aa = (m * (b - m) * x) / ((a + m2 - 1) * (a + m2));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = (-(a + m) * (a + b + m) * x) / ((a + m2) * (a + m2 + 1));
    d = 1 + aa * d;
    if (Math.abs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (Math.abs(c) < tiny) c = tiny;
    d = 1 / d;
    const del = d * c;
    h *= del;
    if (Math.abs(del - 1) < 1e-15) break;
  }
  return h;
}

/** The regularised incomplete beta function I_x(a, b). */
export function incompleteBeta(x: number, a: number, b: number): number {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const front = Math.exp(logGamma(a + b) - logGamma(a) - logGamma(b) + a * Math.log(x) + b * Math.log(1 - x));
  // The fraction converges fast for x < (a+1)/(a+b+2); use the symmetry otherwise.
  return x < (a + 1) / (a + b + 2)
    ? (front * betaContinuedFraction(a, b, x)) / a
    : 1 - (front * betaContinuedFraction(b, a, 1 - x)) / b;
}

/** Beyond this many degrees of freedom Student's t is the normal to better than 1e-7. */
const T_AS_NORMAL_DOF = 1e8;

/** P(T ≤ t) for Student's t with `dof` degrees of freedom (any real dof > 0). */
export function tCdf(t: number, dof: number): number {
  if (!Number.isFinite(t)) return t > 0 ? 1 : 0;
  if (dof > T_AS_NORMAL_DOF) return normalCdf(t);
  // P(|T| > |t|) = I_{dof/(dof+t²)}(dof/2, 1/2).
  const tail = 0.5 * incompleteBeta(dof / (dof + t * t), dof / 2, 0.5);
  return t >= 0 ? 1 - tail : tail;
}

/** Student's t density. */
function tPdf(t: number, dof: number): number {
  return Math.exp(
    logGamma((dof + 1) / 2) -
      logGamma(dof / 2) -
      0.5 * Math.log(dof * Math.PI) -
      ((dof + 1) / 2) * Math.log1p((t * t) / dof),
  );
}

/** The p-quantile of Student's t: Newton's method from the normal quantile, bisection as a guard. */
export function tQuantile(p: number, dof: number): number {
  if (dof > T_AS_NORMAL_DOF) return normalQuantile(p);
  if (p === 0.5) return 0;
  if (p < 0.5) return -tQuantile(1 - p, dof);
  // Bracket [0, hi] with tCdf(hi) ≥ p, then Newton steps kept inside the bracket.
  let lo = 0;
  let hi = Math.max(1, normalQuantile(p));
  while (tCdf(hi, dof) < p) {
    lo = hi;
    hi *= 2;
  }
  let x = Math.min(Math.max(normalQuantile(p), lo), hi);
  for (let i = 0; i < 200; i++) {
    const f = tCdf(x, dof) - p;
    if (f > 0) hi = x;
    else lo = x;
    let next = x - f / tPdf(x, dof);
    if (!(next > lo && next < hi)) next = (lo + hi) / 2;
    if (Math.abs(next - x) <= 1e-14 * Math.max(1, Math.abs(x))) return next;
    x = next;
  }
  return x;
}

/** P(χ²₁ ≥ c) = erfc(√(c/2)): the upper tail of the chi-square with one degree of freedom. */
export function chiSquare1Sf(c: number): number {
  return erfc(Math.sqrt(c / 2));
}
