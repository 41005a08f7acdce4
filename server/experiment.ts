import { hash } from 'node:crypto';
import type { Role } from './config.js';

/** The A/B group of one prediction. */
export type Group = 'baseline' | 'experiment' | 'control' | 'canary_negative';

/** Where one prediction lands, and what the caller should do with it. */
export interface Assignment {
  readonly group: Group;
  /** The model's label, except 0 for `control`: those positives stay untreated. */
  readonly action: 0 | 1;
}

/**
 * Stage 2 of the A/B design (seed notes, "A/B测试"): on the canary, the new
 * model's positive predictions are split into an experiment group (treated)
 * and a control group (deliberately untreated), so the value of predicting 1
 * can be measured. The split is a salted hash of the user, so the same user
 * always lands in the same group of one experiment, and changing the salt or
 * the experiment name reshuffles users for a new experiment.
 *
 * On a stable server every prediction is `baseline` with `action = label`: that
 * traffic is the "old algorithm group".
 */
export class ExperimentAssigner {
  private readonly threshold: number;

  constructor(
    readonly role: Role,
    private readonly experiment: { readonly name: string; readonly salt: string; readonly share: number },
  ) {
    // Compare the hash's top 32 bits against share·2^32; share 1 takes everyone.
    this.threshold = Math.round(experiment.share * 2 ** 32);
  }

  /** The experiment's name, logged with every prediction so readouts never pool two experiments. */
  get experimentName(): string {
    return this.experiment.name;
  }

  /** The bucket of `user` in [0, 2^32): the first 4 bytes of sha256(salt:name:user). */
  bucket(user: string): number {
    // One-shot hash: no Hash object per prediction.
    return hash('sha256', `${this.experiment.salt}:${this.experiment.name}:${user}`, 'buffer').readUInt32BE(
      0,
    );
  }

  /**
   * Assigns one prediction. `user` is the x-user-id metadata or the instance's
   * userId; without one, `fallbackKey` (request id and index, built only when
   * needed) keeps the split random but reproducible from the logs.
   */
  assign(label: 0 | 1, user: string | undefined, fallbackKey: string | (() => string)): Assignment {
    if (this.role === 'stable') return { group: 'baseline', action: label };
    if (label === 0) return { group: 'canary_negative', action: 0 };
    const key = user ?? (typeof fallbackKey === 'function' ? fallbackKey() : fallbackKey);
    return this.bucket(key) < this.threshold
      ? { group: 'experiment', action: 1 }
      : { group: 'control', action: 0 };
  }
}
