import { expect } from 'chai';
import { waitFor, waitUntil } from '../../scripts/lib/wait-for.js';

const noValue = () => undefined;

describe('waitFor: the shared poll loop', () => {
  it('resolves with the first value a probe returns', async () => {
    let n = 0;
    expect(
      await waitFor('the third probe', () => (++n === 3 ? 'done' : undefined), {
        timeoutMs: 5000,
        intervalMs: 1,
      }),
    ).to.equal('done');
    expect(n).to.equal(3);
  });

  it('tries a probe that throws again, and names its last error on the timeout', async () => {
    let n = 0;
    const err = await waitFor(
      'a probe that always throws',
      () => {
        n++;
        throw new Error(`boom ${n}`);
      },
      { timeoutMs: 30, intervalMs: 5 },
    ).then(noValue, (e: Error) => e);
    expect(n).to.be.greaterThan(1);
    expect(err?.message).to.equal(
      `timed out after 30 ms waiting for a probe that always throws (last error: boom ${n})`,
    );
  });

  it("with onError 'throw', fails at once with the probe's own error", async () => {
    let n = 0;
    const err = await waitUntil(
      'a condition that throws',
      () => {
        n++;
        throw new Error('bad state');
      },
      { timeoutMs: 5000, intervalMs: 1, onError: 'throw' },
    ).then(noValue, (e: Error) => e);
    expect(err?.message).to.equal('bad state');
    expect(n).to.equal(1);
  });

  it('waitUntil times out naming what it waited for', async () => {
    const err = await waitUntil('never', () => false, { timeoutMs: 20, intervalMs: 5 }).then(
      noValue,
      (e: Error) => e,
    );
    expect(err?.message).to.equal('timed out after 20 ms waiting for never');
  });
});
