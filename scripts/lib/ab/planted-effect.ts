/**
 * The planted effect of the demo and the tests: how likely a prediction is to
 * convert, by what the model said and what was done with it. Treating a
 * positive (action 1) adds an uplift, larger on the canary because its
 * positives are better targeted (they respond more to the action) than
 * stable's. In the demo a prediction's label says nothing about the user's
 * own propensity (both base rates are equal), so only the action moves
 * conversions; the tests also plant a label effect.
 *
 * `truth` turns the probabilities into what each comparison of the readout
 * should find, given who was exposed: the quantity a correct readout's
 * interval must cover.
 */
import type { Group } from '../../../server/experiment.js';

export interface PlantedEffect {
  /** P(convert) after a negative prediction (label 0). */
  readonly negative: number;
  /** P(convert) after an untreated positive (label 1, action 0). */
  readonly positive: number;
  /** Added to `positive` when the canary treats a positive (experiment). */
  readonly canaryUplift: number;
  /** Added to `positive` when stable treats a positive (stable treats every positive). */
  readonly stableUplift: number;
}

/** The demo's effect: everyone converts at 8% untreated; treated canary positives 3 points more, stable's 1 point. */
export const DEMO_EFFECT: PlantedEffect = {
  negative: 0.08,
  positive: 0.08,
  canaryUplift: 0.03,
  stableUplift: 0.01,
};

/** P(convert) of one prediction. */
export function conversionProbability(
  e: PlantedEffect,
  p: { readonly arm: 'stable' | 'canary'; readonly label: 0 | 1; readonly action: 0 | 1 },
): number {
  if (p.label === 0) return e.negative;
  if (p.action === 0) return e.positive;
  return e.positive + (p.arm === 'canary' ? e.canaryUplift : e.stableUplift);
}

/** One unit's predictions on its arm, in time order, as the readout counts them. */
export interface UnitExposure {
  readonly arm: 'stable' | 'canary';
  readonly predictions: readonly { readonly label: 0 | 1; readonly group: Group; readonly action: 0 | 1 }[];
}

/** P(the unit converts at least once), as served or with the canary promoted (every positive treated). */
export function unitProbability(e: PlantedEffect, u: UnitExposure, promoted = false): number {
  let none = 1;
  for (const p of u.predictions) {
    const action = promoted && u.arm === 'canary' ? p.label : p.action;
    none *= 1 - conversionProbability(e, { arm: u.arm, label: p.label, action });
  }
  return 1 - none;
}

/** What each comparison should find: absolute and relative lift, treatment vs baseline. */
export interface Truth {
  readonly positives: {
    readonly baseline: number;
    readonly treatment: number;
    readonly absolute: number;
    readonly relative: number;
  };
  readonly arms: Truth['positives'];
  readonly promoted: Truth['positives'];
}

const lift = (baseline: number, treatment: number) => ({
  baseline,
  treatment,
  absolute: treatment - baseline,
  relative: (treatment - baseline) / baseline,
});

/**
 * The expected readout given the exposed units: means of unit probabilities
 * per arm (stage 1), per stage-2 group from the first positive on (stage 2),
 * and of the promoted canary. Units whose first positive is in a group are
 * that group's.
 */
export function truth(e: PlantedEffect, units: readonly UnitExposure[]): Truth {
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const stable = units.filter((u) => u.arm === 'stable');
  const canary = units.filter((u) => u.arm === 'canary');
  const fromFirstPositive = (u: UnitExposure): UnitExposure => {
    const i = u.predictions.findIndex((p) => p.group === 'experiment' || p.group === 'control');
    return { arm: u.arm, predictions: u.predictions.slice(i) };
  };
  const inGroup = (g: Group) =>
    canary.filter(
      (u) => u.predictions.find((p) => p.group === 'experiment' || p.group === 'control')?.group === g,
    );
  return {
    positives: lift(
      mean(inGroup('control').map((u) => unitProbability(e, fromFirstPositive(u)))),
      mean(inGroup('experiment').map((u) => unitProbability(e, fromFirstPositive(u)))),
    ),
    arms: lift(
      mean(stable.map((u) => unitProbability(e, u))),
      mean(canary.map((u) => unitProbability(e, u))),
    ),
    promoted: lift(
      mean(stable.map((u) => unitProbability(e, u))),
      mean(canary.map((u) => unitProbability(e, u, true))),
    ),
  };
}
