/**
 * The readout's statistics (scripts/lib/ab/distributions.ts, srm.ts,
 * effect.ts, verdict.ts), against independent references, and their error
 * rates over many simulated experiments.
 *
 * Reference values were computed once (2026-12-01) in a scratch venv with
 * scipy 1.17.1 and gbstats 0.8.0 from PyPI (GrowthBook's stats engine):
 * `TwoSidedTTest`, `SequentialTwoSidedTTest` (tuning 5000) and
 * `EffectBayesianABTest` on `ProportionStatistic` / `SampleMeanStatistic`,
 * `scipy.stats.binomtest(...).proportion_ci(method="wilson")`,
 * `scipy.stats.chisquare`, `scipy.stats.t.ppf/cdf`, `scipy.stats.norm.ppf`.
 */
import { expect } from 'chai';
import { chiSquare1Sf, erfc, normalQuantile, tCdf, tQuantile } from '../../scripts/lib/ab/distributions.js';
import { compare, type Effect, type Moments, summarise } from '../../scripts/lib/ab/effect.js';
import { chiSquare2, splitCheck, wilson } from '../../scripts/lib/ab/srm.js';
import { decide } from '../../scripts/lib/ab/verdict.js';
import { mulberry32 } from '../../scripts/lib/random.js';

const ok = (e: Effect) => {
  if (!e.ok) throw new Error(`no test: ${e.reason}`);
  return e;
};

describe('ab statistics: distributions', () => {
  it("matches scipy's t and normal quantiles and t CDF", () => {
    const ppf: [number, number, number][] = [
      [0.975, 5, 2.5705818356363146],
      [0.975, 30, 2.0422724563012378],
      [0.975, 1.5, 6.016663104427929],
      [0.999, 12.3, 3.9047400496713127],
      [0.6, 200, 0.25368437919014747],
      [0.975, 1e6, 1.959966356814107],
    ];
    for (const [q, dof, want] of ppf)
      expect(tQuantile(q, dof), `t.ppf(${q}, ${dof})`).to.be.closeTo(want, 1e-6);
    const cdf: [number, number, number][] = [
      [2.0, 5, 0.9490302605850708],
      [-1.3, 17.5, 0.10523188448851287],
      [0.1, 3, 0.5366738255995971],
      [4.2, 1000, 0.9999854635389174],
    ];
    for (const [x, dof, want] of cdf) expect(tCdf(x, dof), `t.cdf(${x}, ${dof})`).to.be.closeTo(want, 1e-7);
    // erfc's 1.2e-7 fractional error bounds the normal functions' precision.
    expect(normalQuantile(0.5)).to.be.closeTo(0, 1e-7);
    expect(normalQuantile(0.975)).to.be.closeTo(1.959963984540054, 1e-7);
    expect(normalQuantile(0.001)).to.be.closeTo(-3.090232306167813, 1e-6);
    expect(normalQuantile(1e-9)).to.be.closeTo(-5.9978070150076865, 1e-5);
  });

  it('computes erfc and chi-square tails to the tabulated precision', () => {
    expect(erfc(0)).to.be.closeTo(1, 1e-7);
    expect(erfc(1)).to.be.closeTo(0.157299207, 1e-7);
    expect(erfc(-1)).to.be.closeTo(1.842700793, 1e-7);
    // χ²₁ critical values: 3.841 → p 0.05, 10.828 → p 0.001.
    expect(chiSquare1Sf(3.841459)).to.be.closeTo(0.05, 1e-6);
    expect(chiSquare1Sf(10.827566)).to.be.closeTo(0.001, 1e-7);
  });
});

describe('ab statistics: assignment checks', () => {
  it('computes Wilson intervals as scipy does, exact at the ends', () => {
    // Newcombe (1998), Table I: 81/263 → 0.2553 to 0.3662.
    expect(wilson(81, 263).low).to.be.closeTo(0.2553, 5e-4);
    expect(wilson(81, 263).high).to.be.closeTo(0.3662, 5e-4);
    const scipy: [number, number, number, number][] = [
      [6, 40, 0.07061187717320358, 0.290723243664897],
      [12, 40, 0.18074845229746528, 0.45430018818144935],
      [22, 120, 0.12430300356014222, 0.2620091351717033],
    ];
    for (const [x, n, low, high] of scipy) {
      expect(wilson(x, n).low).to.be.closeTo(low, 1e-12);
      expect(wilson(x, n).high).to.be.closeTo(high, 1e-12);
    }
    expect(wilson(0, 10).low).to.equal(0);
    expect(wilson(10, 10).high).to.equal(1);
    expect(wilson(0, 0)).to.deep.equal({ low: 0, high: 1 });
  });

  it('tests splits with chi-square and flags a mismatch under alpha', () => {
    // scipy.stats.chisquare([181, 121], [0.6*302, 0.4*302]): 0.000551876, p 0.981258.
    const r = chiSquare2([181, 121], 0.6);
    expect(r?.chi2).to.be.closeTo(0.0005518763796908866, 1e-12);
    expect(r?.p).to.be.closeTo(0.9812577804863818, 1e-6);
    expect(chiSquare2([880, 120], 0.9)?.p).to.be.closeTo(0.035, 1e-4);
    expect(chiSquare2([40, 0], 0.9)).to.equal(undefined);
    expect(splitCheck('t', 'arm', 'users', ['a', 'b'], [880, 120], 0.9, 0.05).srm).to.equal(true);
    expect(splitCheck('t', 'arm', 'users', ['a', 'b'], [880, 120], 0.9, 0.001).srm).to.equal(false);
  });
});

describe('ab statistics: one comparison, as gbstats 0.8.0 computes it', () => {
  // Each case: baseline a, treatment b; gbstats' relative and absolute results.
  const cases = [
    {
      name: 'proportions 6/40 vs 12/40',
      a: { n: 40, sum: 6, sumSquares: 6 },
      b: { n: 40, sum: 12, sumSquares: 12 },
      typeB: 'binomial' as const,
      rel: {
        est: 1.0,
        ci: [-0.782345203109077, 2.782345203109077],
        p: 0.26718846996382895,
        seq: [-5.587097032174094, 7.587097032174094],
        seqP: 0.9894068210361013,
      },
      abs: {
        est: 0.15,
        ci: [-0.03304325118824408, 0.33304325118824407],
        seq: [-0.5264815561869532, 0.8264815561869533],
      },
      dof: 73.60205032618828,
      chance: 0.8682237613585136,
    },
    {
      name: 'proportions 18/180 vs 22/120',
      a: { n: 180, sum: 18, sumSquares: 18 },
      b: { n: 120, sum: 22, sumSquares: 22 },
      typeB: 'binomial' as const,
      rel: {
        est: 0.8333333333333331,
        ci: [-0.23338576695060753, 1.9000524336172737],
        p: 0.12506355601540298,
        seq: [-1.5734237766106247, 3.240090443277291],
        seqP: 0.8288053477544639,
      },
      abs: {
        est: 0.08333333333333331,
        ci: [0.0009236425596210601, 0.16574302410704556],
        seq: [-0.10260137913700731, 0.2692680458036739],
      },
      dof: 210.9640236924741,
      chance: 0.9382175084364719,
    },
    {
      name: 'proportion 18/180 vs a mean (n 120, Σ 28, Σ² 52)',
      a: { n: 180, sum: 18, sumSquares: 18 },
      b: { n: 120, sum: 28, sumSquares: 52 },
      typeB: 'mean' as const,
      rel: {
        est: 1.3333333333333333,
        ci: [-0.18464993161435306, 2.8513165982810196],
        p: 0.08471599001341668,
        seq: [-2.084741516186508, 4.751408182853175],
        seqP: 0.7477023758753459,
      },
      abs: {
        est: 0.13333333333333333,
        ci: [0.013446751609173663, 0.253219915057493],
        seq: [-0.1366178046328533, 0.40328447129951994],
      },
      dof: 156.74001956018506,
      chance: 0.9586248431290249,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const e = ok(compare(c.a, c.b, 'binomial', undefined, c.typeB));
      const rel = e.relative;
      if (!rel) throw new Error('no relative lift');
      expect(rel.estimate).to.be.closeTo(c.rel.est, 1e-12);
      expect(rel.ci.low).to.be.closeTo(c.rel.ci[0] as number, 1e-7);
      expect(rel.ci.high).to.be.closeTo(c.rel.ci[1] as number, 1e-7);
      expect(rel.sequentialCi.low).to.be.closeTo(c.rel.seq[0] as number, 1e-9);
      expect(rel.sequentialCi.high).to.be.closeTo(c.rel.seq[1] as number, 1e-9);
      expect(e.absolute.estimate).to.be.closeTo(c.abs.est, 1e-12);
      expect(e.absolute.ci.low).to.be.closeTo(c.abs.ci[0] as number, 1e-7);
      expect(e.absolute.ci.high).to.be.closeTo(c.abs.ci[1] as number, 1e-7);
      expect(e.absolute.sequentialCi.low).to.be.closeTo(c.abs.seq[0] as number, 1e-9);
      expect(e.absolute.sequentialCi.high).to.be.closeTo(c.abs.seq[1] as number, 1e-9);
      expect(e.dof).to.be.closeTo(c.dof, 1e-9);
      expect(e.pValue).to.be.closeTo(c.rel.p, 1e-7);
      expect(e.sequentialPValue).to.be.closeTo(c.rel.seqP, 1e-9);
      expect(e.chanceToBeat).to.be.closeTo(c.chance, 1e-7);
    });
  }

  it('gives a mean interval as scipy does, and refuses arms without variation', () => {
    // z = [1]*4 + [0]*36 + [2]*12 + [0]*68: mean ± t(0.975, 119)·sd/√120.
    const s = summarise('canary', { n: 120, sum: 28, sumSquares: 52 }, 'mean');
    expect(s.mean).to.be.closeTo(0.23333333333333334, 1e-15);
    expect(s.ci.low).to.be.closeTo(0.12160339713829531, 1e-9);
    expect(s.ci.high).to.be.closeTo(0.34506326952837135, 1e-9);
    const none = compare({ n: 100, sum: 0, sumSquares: 0 }, { n: 100, sum: 0, sumSquares: 0 }, 'binomial');
    expect(none.ok).to.equal(false);
  });
});

describe('ab statistics: verdicts', () => {
  const arm = (name: string, units: number, sum: number) =>
    summarise(name, { n: units, sum, sumSquares: sum }, 'binomial');
  const verdictOf = (a: Moments, b: Moments, more: { mismatches?: string[]; outcomes?: number } = {}) =>
    decide({
      baseline: arm('stable', a.n, a.sum),
      treatment: arm('canary', b.n, b.sum),
      effect: compare(a, b, 'binomial'),
      outcomes: more.outcomes ?? a.sum + b.sum,
      mismatches: more.mismatches ?? [],
    });
  const m = (n: number, sum: number): Moments => ({ n, sum, sumSquares: sum });

  it('names the winner only when the always-valid interval excludes 0, and never on a mismatch', () => {
    expect(verdictOf(m(20_000, 2000), m(20_000, 2400))).to.include({ verdict: 'winner', winner: 'canary' });
    expect(verdictOf(m(20_000, 2400), m(20_000, 2000))).to.include({ verdict: 'winner', winner: 'stable' });
    const srm = verdictOf(m(20_000, 2000), m(20_000, 2400), { mismatches: ['stage 1 (…)'] });
    expect(srm.verdict).to.equal('srm');
    expect(srm.reason).to.match(/no winner: sample ratio mismatch in stage 1/);
    expect(srm).to.not.have.property('winner');
  });

  it('says no-difference inside the margin, inconclusive otherwise, and why', () => {
    expect(verdictOf(m(2_000_000, 200_000), m(2_000_000, 200_100)).verdict).to.equal('no-difference');
    const wide = verdictOf(m(500, 50), m(500, 55));
    expect(wide.verdict).to.equal('inconclusive');
    expect(wide.reason).to.match(/includes 0 and reaches beyond ±5\.0%: more data needed/);
    expect(verdictOf(m(50, 5), m(50, 9)).reason).to.match(
      /too few users: stable has 50, canary has 50, at least 100/,
    );
    expect(verdictOf(m(500, 0), m(500, 0), { outcomes: 0 }).reason).to.match(/no outcomes recorded/);
  });
});

describe('ab statistics: error rates over simulated experiments', () => {
  /** Binomial(n, p) by n Bernoulli draws: exact, and fast enough at these sizes. */
  const binomial = (rand: () => number, n: number, p: number) => {
    let k = 0;
    for (let i = 0; i < n; i++) if (rand() < p) k++;
    return k;
  };

  it('flags about 5% of 1000 A/A experiments at alpha 0.05 (fixed horizon), and fewer with the always-valid test', () => {
    const rand = mulberry32(20261201);
    let fixed = 0;
    let sequential = 0;
    const runs = 1000;
    for (let r = 0; r < runs; r++) {
      const a = binomial(rand, 2000, 0.1);
      const b = binomial(rand, 2000, 0.1);
      const e = ok(compare(m2(2000, a), m2(2000, b), 'binomial'));
      if (e.pValue < 0.05) fixed++;
      const ci = e.relative?.sequentialCi;
      if (ci && (ci.low > 0 || ci.high < 0)) sequential++;
    }
    expect(fixed / runs, `fixed-horizon false positives ${fixed}/${runs}`).to.be.within(0.03, 0.07);
    expect(sequential / runs, `always-valid false positives ${sequential}/${runs}`).to.be.at.most(0.05);
  });

  it('keeps the IPW estimate of the promoted canary unbiased: ~5% false positives in 1000 A/A runs, and covers a planted lift', () => {
    // Units: canary share 50% of 4000; 30% of canary units positive, half of those treated (s = 0.5).
    const rand = mulberry32(7);
    const s = 0.5;
    const run = (lift: number) => {
      let stable: Moments = { n: 0, sum: 0, sumSquares: 0 };
      let canary: Moments = { n: 0, sum: 0, sumSquares: 0 };
      for (let i = 0; i < 4000; i++) {
        const positive = rand() < 0.3;
        if (rand() < 0.5) {
          // Stable treats every positive, at the same base rates: an A/A when lift = 0.
          const y = rand() < (positive ? 0.12 + 0.03 : 0.05) ? 1 : 0;
          stable = { n: stable.n + 1, sum: stable.sum + y, sumSquares: stable.sumSquares + y };
        } else {
          const treated = positive && rand() < s;
          const y = rand() < (positive ? (treated ? 0.12 + 0.03 + lift : 0.12) : 0.05) ? 1 : 0;
          const z = positive ? (treated ? y / s : 0) : y;
          canary = { n: canary.n + 1, sum: canary.sum + z, sumSquares: canary.sumSquares + z * z };
        }
      }
      return ok(compare(stable, canary, 'binomial', undefined, 'mean'));
    };
    let flagged = 0;
    for (let r = 0; r < 1000; r++) if (run(0).pValue < 0.05) flagged++;
    expect(flagged / 1000, `IPW A/A false positives ${flagged}/1000`).to.be.within(0.03, 0.07);
    // Planted: promoted canary converts 0.3 × 0.10 = +3 points above stable; 95% of intervals cover it.
    let covered = 0;
    for (let r = 0; r < 200; r++) {
      const ci = run(0.1).absolute.ci;
      if (ci.low <= 0.03 && 0.03 <= ci.high) covered++;
    }
    expect(covered / 200, `coverage ${covered}/200`).to.be.within(0.9, 0.99);
  });
});

const m2 = (n: number, sum: number): Moments => ({ n, sum, sumSquares: sum });
