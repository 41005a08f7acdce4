import { expect } from 'chai';
import type { Readout } from '../../scripts/lib/ab/readout.js';
import { UsageError } from '../../scripts/lib/cli.js';
import {
  type ArmCounters,
  analyse,
  armFigures,
  DEFAULT_THRESHOLDS,
  histogramQuantile,
  type Snapshot,
} from '../../scripts/lib/rollout/analysis.js';
import { businessCheck, promoteAllowed } from '../../scripts/lib/rollout/business.js';
import { parseRolloutArgs } from '../../scripts/lib/rollout/options.js';

const INF = Number.POSITIVE_INFINITY;

/** Counters of an arm: `ok` OK calls and `codes` others, all in the 1 ms bucket unless `slowMs`. */
function arm(o: {
  ok: number;
  codes?: Record<string, number>;
  envoy?: [number, number];
  slowMs?: number;
}): ArmCounters {
  const calls = o.ok + Object.values(o.codes ?? {}).reduce((a, b) => a + b, 0);
  const bound = (o.slowMs ?? 1) / 1000;
  const buckets = new Map<number, number>();
  for (const b of [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, INF]) buckets.set(b, b >= bound ? calls : 0);
  return {
    envoy: o.envoy ? { total: o.envoy[0], failure: o.envoy[1] } : undefined,
    byCode: { OK: o.ok, ...o.codes },
    buckets,
    endpoints: 1,
  };
}

const ZERO = arm({ ok: 0, envoy: [0, 0] });
const snap = (at: number, stable: ArmCounters, canary: ArmCounters): Snapshot => ({
  at,
  arms: { stable, canary },
});
const judge = (stable: ArmCounters, canary: ArmCounters) =>
  analyse(snap(0, ZERO, ZERO), snap(60_000, stable, canary));

describe('rollout analysis', () => {
  it('computes quantiles from cumulative buckets as histogram_quantile does', () => {
    const b = new Map([
      [0.1, 50],
      [0.2, 90],
      [0.4, 100],
      [INF, 100],
    ]);
    expect(histogramQuantile(0.5, b)).to.be.closeTo(0.1, 1e-12);
    expect(histogramQuantile(0.7, b)).to.be.closeTo(0.15, 1e-12); // 50 + (70-50)/(90-50) of the 0.1..0.2 bucket
    expect(histogramQuantile(0.99, b)).to.be.closeTo(0.38, 1e-12);
    expect(histogramQuantile(0.99, new Map([[INF, 0]]))).to.equal(undefined);
    // A rank in +Inf: the highest finite bound.
    expect(
      histogramQuantile(
        0.99,
        new Map([
          [0.1, 10],
          [INF, 100],
        ]),
      ),
    ).to.equal(0.1);
  });

  it("counts the servers' own failures, never the caller's mistakes, and adds what only Envoy saw", () => {
    const f = armFigures(
      ZERO,
      arm({ ok: 900, codes: { INVALID_ARGUMENT: 60, CANCELLED: 10, INTERNAL: 30 }, envoy: [1000, 100] }),
    );
    expect(f).to.include({ calls: 1000, failures: 30, callerErrors: 70, served: 1000 });
    // Envoy saw 150 failures, 70 were the callers': 80 failed, 50 of them without reaching a server.
    const g = armFigures(
      ZERO,
      arm({ ok: 900, codes: { INVALID_ARGUMENT: 60, CANCELLED: 10, INTERNAL: 30 }, envoy: [1050, 150] }),
    );
    expect(g.failures).to.equal(80);
    expect(g.errorRate).to.be.closeTo(80 / 1050, 1e-12);
    // Without Envoy's stats, the servers' counts.
    expect(armFigures(ZERO, arm({ ok: 90, codes: { UNAVAILABLE: 10 } }))).to.include({
      calls: 100,
      failures: 10,
    });
  });

  it('passes a healthy canary, and fails one above the absolute or the relative error limit', () => {
    const stable = arm({ ok: 9000, codes: { INTERNAL: 9 }, envoy: [9009, 9] });
    expect(judge(stable, arm({ ok: 1000, codes: { INTERNAL: 1 }, envoy: [1001, 1] })).verdict).to.equal(
      'pass',
    );
    const over = judge(stable, arm({ ok: 970, codes: { INTERNAL: 30 }, envoy: [1000, 30] }));
    expect(over.verdict).to.equal('fail');
    expect(over.summary).to.match(/^fail: error rate canary 3\.00% \(30 of 1000\)/);
    // 0.8% is under the 1% SLO but 0.7 points above stable's 0.1%: fails the relative limit.
    expect(judge(stable, arm({ ok: 992, codes: { INTERNAL: 8 }, envoy: [1000, 8] })).verdict).to.equal(
      'fail',
    );
  });

  it('is inconclusive on a short sample, except for a clear failure', () => {
    const stable = arm({ ok: 9000, envoy: [9000, 0] });
    const few = judge(stable, arm({ ok: 50, envoy: [50, 0] }));
    expect(few.verdict).to.equal('inconclusive');
    expect(few.summary).to.equal(`inconclusive: 50 canary calls (need ${DEFAULT_THRESHOLDS.minCalls})`);
    // One failure in 50 calls (2%) does not decide…
    expect(judge(stable, arm({ ok: 49, codes: { INTERNAL: 1 }, envoy: [50, 1] })).verdict).to.equal(
      'inconclusive',
    );
    // …25 of 50 does.
    expect(judge(stable, arm({ ok: 25, codes: { INTERNAL: 25 }, envoy: [50, 25] })).verdict).to.equal('fail');
    // No metrics endpoint answered: never a pass.
    const silent = { ...arm({ ok: 1000, envoy: [1000, 0] }), endpoints: 0 };
    expect(judge(stable, silent).summary).to.match(/no canary metrics endpoint answered/);
  });

  it('fails a slow canary: above the SLO, or far above stable', () => {
    const stable = arm({ ok: 5000, envoy: [5000, 0], slowMs: 1 });
    expect(judge(stable, arm({ ok: 1000, envoy: [1000, 0], slowMs: 250 })).summary).to.match(
      /p99 latency canary 24\d\.\d+ ms/,
    );
    expect(judge(stable, arm({ ok: 1000, envoy: [1000, 0], slowMs: 10 })).verdict).to.equal('fail');
    // 1.5× but under 2 ms apart: noise, a pass.
    expect(
      judge(arm({ ok: 5000, envoy: [5000, 0], slowMs: 0.5 }), arm({ ok: 1000, envoy: [1000, 0], slowMs: 1 }))
        .verdict,
    ).to.equal('pass');
  });
});

describe('rollout command line', () => {
  const parse = (...argv: string[]) => parseRolloutArgs(argv, '/proj');
  it('parses each action with its defaults', () => {
    const s = parse('start');
    expect(s).to.include({
      action: 'start',
      intervalMs: 60_000,
      failureThreshold: 2,
      maxHolds: 5,
      baseCanary: 10,
    });
    expect(s.steps).to.deep.equal([10, 25, 50, 100]);
    expect(s.thresholds).to.deep.equal(DEFAULT_THRESHOLDS);
    expect(parse('canary', '20261201T084232Z').operand).to.equal('20261201T084232Z');
    expect(parse('weights', '25').operand).to.equal('25');
    expect(parse('weights', '--canary', '25').operand).to.equal('25');
    expect(
      parse('start', '--steps', '5,50', '--interval', '30s', '--routes', 'r/routes.yaml').statePath,
    ).to.equal('/proj/rollout.json');
  });
  it('refuses bad input with one sentence naming it', () => {
    const bad: [string[], RegExp][] = [
      [[], /name an action/],
      [['deploy'], /unknown action "deploy"/],
      [['canary'], /canary needs the version/],
      [['canary', 'latest'], /canary needs the version/],
      [['weights', '101'], /weights must be an integer from 0 to 100/],
      [['start', '--steps', '50,25'], /--steps must be ascending/],
      [['start', '--steps', '0,25'], /--steps must be an integer from 1 to 100/],
      [['start', '--interval', 'soon'], /--interval must be a duration/],
      [['status', 'extra'], /unexpected argument "extra"/],
      [['start', '--canary', '5'], /--canary goes with the weights action/],
      [['start', '--nope'], /Unknown option/],
    ];
    for (const [argv, re] of bad) expect(() => parse(...argv), argv.join(' ')).to.throw(UsageError, re);
  });
});

describe('rollout analysis at a 100% canary step', () => {
  it("judges the canary against stable's figures from the previous step, and says so", () => {
    const stable = arm({ ok: 5000, codes: { INTERNAL: 5 }, envoy: [5005, 5] });
    const previous = armFigures(ZERO, stable);
    const noStable = arm({ ok: 0, envoy: [0, 0] });
    const healthy = analyse(
      snap(0, ZERO, ZERO),
      snap(60_000, noStable, arm({ ok: 4000, envoy: [4000, 0] })),
      DEFAULT_THRESHOLDS,
      previous,
    );
    expect(healthy.verdict).to.equal('pass');
    expect(healthy.stableFromBaseline).to.equal(true);
    expect(healthy.checks[0]?.detail).to.match(/stable: its figures at the previous step/);
    // Without a baseline, no verdict: nothing to compare with.
    expect(
      analyse(snap(0, ZERO, ZERO), snap(60_000, noStable, arm({ ok: 4000, envoy: [4000, 0] }))).verdict,
    ).to.equal('inconclusive');
    // The baseline still catches a canary that got worse than stable was.
    const worse = analyse(
      snap(0, ZERO, ZERO),
      snap(60_000, noStable, arm({ ok: 3960, codes: { INTERNAL: 40 }, envoy: [4000, 40] })),
      DEFAULT_THRESHOLDS,
      previous,
    );
    expect(worse.verdict).to.equal('fail');
  });
});

describe('rollout business check (the experiment readout as a gate)', () => {
  const r = (verdict: string, winner?: string) => ({ verdict, winner, reason: 'why' }) as unknown as Readout;
  it('fails a step on a stable winner or a sample-ratio mismatch, passes otherwise (guard)', () => {
    expect(businessCheck(r('winner', 'stable')).verdict).to.equal('fail');
    expect(businessCheck(r('srm')).verdict).to.equal('fail');
    for (const ok of [r('winner', 'canary'), r('no-difference'), r('inconclusive')]) {
      expect(businessCheck(ok).verdict).to.equal('pass');
    }
    expect(businessCheck('no server logs at /x')).to.include({
      verdict: 'pass',
      detail: 'not judged: no server logs at /x',
    });
  });
  it('lets promote --business require through only on a canary winner or no difference', () => {
    expect(promoteAllowed(r('winner', 'canary')).ok).to.equal(true);
    expect(promoteAllowed(r('no-difference')).ok).to.equal(true);
    for (const no of [r('winner', 'stable'), r('srm'), r('inconclusive')])
      expect(promoteAllowed(no).ok).to.equal(false);
    expect(promoteAllowed('no server logs').ok).to.equal(false);
  });
});
