import { createHash } from 'node:crypto';
import { expect } from 'chai';
import { ExperimentAssigner } from '../../server/experiment.js';

describe('experiment assigner (A/B stage 2)', () => {
  const exp = { name: 'positives-v1', salt: 's1', share: 0.5 };

  it('buckets a user by the first 4 bytes of sha256(salt:name:user), big-endian', () => {
    const a = new ExperimentAssigner('canary', exp);
    for (const user of ['u1', '102079311', 'ünï', '']) {
      const h = createHash('sha256').update(`s1:positives-v1:${user}`).digest();
      expect(a.bucket(user)).to.equal(h.readUInt32BE(0));
    }
  });

  it('gives every stable prediction the baseline group and action = label', () => {
    const a = new ExperimentAssigner('stable', exp);
    expect(a.assign(1, 'u1', 'r#0')).to.deep.equal({ group: 'baseline', action: 1 });
    expect(a.assign(0, 'u1', 'r#0')).to.deep.equal({ group: 'baseline', action: 0 });
  });

  it('puts canary negatives in canary_negative with action 0', () => {
    const a = new ExperimentAssigner('canary', exp);
    expect(a.assign(0, 'u1', 'r#0')).to.deep.equal({ group: 'canary_negative', action: 0 });
  });

  it('splits canary positives into experiment (action 1) and control (action 0), sticky per user', () => {
    const a = new ExperimentAssigner('canary', exp);
    const counts = { experiment: 0, control: 0 };
    const n = 4000;
    for (let u = 0; u < n; u++) {
      const first = a.assign(1, `user-${u}`, 'r#0');
      expect(a.assign(1, `user-${u}`, 'other#1')).to.deep.equal(first);
      expect(first.action).to.equal(first.group === 'experiment' ? 1 : 0);
      counts[first.group as 'experiment' | 'control']++;
    }
    // Binomial(n, 0.5): within 4σ.
    const sigma = Math.sqrt(n * 0.25);
    expect(Math.abs(counts.experiment - n / 2)).to.be.at.most(4 * sigma);
  });

  it('honours the configured share and reshuffles with the salt', () => {
    const a = new ExperimentAssigner('canary', { ...exp, share: 0.2 });
    const b = new ExperimentAssigner('canary', { ...exp, share: 0.2, salt: 's2' });
    const n = 4000;
    let inA = 0;
    let moved = 0;
    for (let u = 0; u < n; u++) {
      const ga = a.assign(1, String(u), '').group;
      if (ga === 'experiment') inA++;
      if (ga !== b.assign(1, String(u), '').group) moved++;
    }
    expect(Math.abs(inA - n * 0.2)).to.be.at.most(4 * Math.sqrt(n * 0.2 * 0.8));
    expect(moved).to.be.greaterThan(n * 0.1);
  });

  it('takes everyone at share 1 and no one at share 0', () => {
    const all = new ExperimentAssigner('canary', { ...exp, share: 1 });
    const none = new ExperimentAssigner('canary', { ...exp, share: 0 });
    for (let u = 0; u < 200; u++) {
      expect(all.assign(1, String(u), '').group).to.equal('experiment');
      expect(none.assign(1, String(u), '').group).to.equal('control');
    }
  });
});
