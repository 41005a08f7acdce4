/**
 * The verdict of one comparison, in the order the guardrails apply:
 *
 * 1. `srm`: a split the comparison rests on has a sample ratio mismatch. No
 *    winner, whatever the numbers say: the arms are not what they should be.
 * 2. `inconclusive`: no outcomes at all, fewer units than `minSample` in an
 *    arm, no test possible (no variation), or an interval that includes 0 and
 *    is wider than the margin.
 * 3. `winner`: the decision interval of the lift excludes 0; `winner` names
 *    the better arm (the baseline when the treatment is worse).
 * 4. `no-difference`: the decision interval lies inside ±margin: whatever the
 *    difference is, it is smaller than the margin that matters.
 *
 * The decision interval is the always-valid (sequential) one by default:
 * whoever runs the report every day, or a rollout gate that polls it, is
 * peeking, and the fixed-horizon interval's 5% error rate holds only for one
 * look planned in advance (`decision: 'fixed'`).
 */
import type { ArmSummary, Effect } from './effect.js';
import type { Interval } from './srm.js';

export type Verdict = 'winner' | 'no-difference' | 'inconclusive' | 'srm';

export interface DecisionRules {
  /** Fewest units per arm before any verdict but `srm` (default 100). */
  readonly minSample: number;
  /** Relative lifts within ±margin count as no difference (default 0.05: 5% of the baseline). */
  readonly margin: number;
  /** Which interval decides: `sequential` (always valid, default) or `fixed` (one planned look). */
  readonly decision: 'sequential' | 'fixed';
}

export const DEFAULT_DECISION_RULES: DecisionRules = { minSample: 100, margin: 0.05, decision: 'sequential' };

export interface Decision {
  readonly verdict: Verdict;
  /** The better arm's name, for `winner`. */
  readonly winner?: string;
  /** One sentence: why this verdict. */
  readonly reason: string;
}

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const span = (i: Interval, asPct: boolean) =>
  asPct ? `[${pct(i.low)}, ${pct(i.high)}]` : `[${i.low.toPrecision(3)}, ${i.high.toPrecision(3)}]`;

/** The verdict of one comparison. `mismatches` names each broken split it rests on. */
export function decide(
  input: {
    readonly baseline: ArmSummary;
    readonly treatment: ArmSummary;
    readonly effect: Effect;
    /** Outcomes counted in either arm (after the exposure rules). */
    readonly outcomes: number;
    readonly mismatches: readonly string[];
  },
  rules: DecisionRules = DEFAULT_DECISION_RULES,
): Decision {
  const { baseline, treatment, effect } = input;
  if (input.mismatches.length > 0) {
    return {
      verdict: 'srm',
      reason: `no winner: sample ratio mismatch in ${input.mismatches.join(' and ')}; the arms are not comparable`,
    };
  }
  if (input.outcomes === 0) {
    return {
      verdict: 'inconclusive',
      reason: 'no outcomes recorded for these users: nothing to compare yet',
    };
  }
  const small = [baseline, treatment].filter((a) => a.units < rules.minSample);
  if (small.length > 0) {
    return {
      verdict: 'inconclusive',
      reason: `too few users: ${small.map((a) => `${a.name} has ${a.units}`).join(', ')}, at least ${rules.minSample} per arm are needed`,
    };
  }
  if (!effect.ok) return { verdict: 'inconclusive', reason: `no test: ${effect.reason}` };
  const lift = effect.relative ?? effect.absolute;
  const asPct = effect.relative !== undefined;
  const ci = rules.decision === 'sequential' ? lift.sequentialCi : lift.ci;
  const which = `${rules.decision === 'sequential' ? 'always-valid' : 'fixed-horizon'} interval of the ${effect.scale} lift`;
  if (ci.low > 0 || ci.high < 0) {
    const better = ci.low > 0 ? treatment : baseline;
    return { verdict: 'winner', winner: better.name, reason: `the ${which} ${span(ci, asPct)} excludes 0` };
  }
  if (effect.relative !== undefined && ci.low >= -rules.margin && ci.high <= rules.margin) {
    return {
      verdict: 'no-difference',
      reason: `the ${which} ${span(ci, asPct)} lies within ±${pct(rules.margin)}`,
    };
  }
  return {
    verdict: 'inconclusive',
    reason: `the ${which} ${span(ci, asPct)} includes 0${effect.relative !== undefined ? ` and reaches beyond ±${pct(rules.margin)}` : ''}: more data needed`,
  };
}
