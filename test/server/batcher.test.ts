import { expect } from 'chai';
import { DynamicBatcher } from '../../server/batcher.js';
import type { Runner } from '../../server/inference-runner.js';

const WIDTH = 2;

/**
 * A runner that records each run and scores row i as its first column, so a
 * caller can tell its own scores; `hold` keeps runs pending until released.
 */
class FakeRunner implements Runner {
  readonly runs: number[] = [];
  private held: (() => void)[] = [];
  hold = false;
  fail = false;
  released = false;

  run(rows: Float32Array, n: number): Promise<Float32Array> {
    this.runs.push(n);
    const scores = new Float32Array(n);
    for (let i = 0; i < n; i++) scores[i] = rows[i * WIDTH] as number;
    const fail = this.fail;
    return new Promise((resolve, reject) => {
      const settle = () => (fail ? reject(new Error('inner failed')) : resolve(scores));
      if (this.hold) this.held.push(settle);
      else settle();
    });
  }

  /** Lets every held run finish. */
  releaseHeld(): void {
    for (const settle of this.held.splice(0)) settle();
  }

  async release(): Promise<void> {
    this.released = true;
  }
}

/** `n` rows whose first columns are `first`, `first + 1`, … */
function rowsFrom(first: number, n = 1): Float32Array {
  const rows = new Float32Array(n * WIDTH);
  for (let i = 0; i < n; i++) rows[i * WIDTH] = first + i;
  return rows;
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('coalescing batcher (MODEL_BATCHING with a 0 ms delay)', () => {
  const coalescing = (inner: Runner, maxBatchSize = 64) =>
    new DynamicBatcher(inner, WIDTH, { maxBatchSize, maxQueueDelayMs: 0 });

  it('runs the requests of one turn of the event loop as one batch, each caller getting its own scores', async () => {
    const inner = new FakeRunner();
    const b = coalescing(inner);
    const results = await Promise.all([1, 2, 3, 4, 5].map((k) => b.run(rowsFrom(k * 10), 1)));
    expect(inner.runs).to.deep.equal([5]);
    expect(results.map((s) => [...s])).to.deep.equal([[10], [20], [30], [40], [50]]);
  });

  it('keeps multi-row requests together and in order', async () => {
    const inner = new FakeRunner();
    const b = coalescing(inner);
    const [a, c] = await Promise.all([b.run(rowsFrom(100, 3), 3), b.run(rowsFrom(200, 2), 2)]);
    expect(inner.runs).to.deep.equal([5]);
    expect([...(a as Float32Array)]).to.deep.equal([100, 101, 102]);
    expect([...(c as Float32Array)]).to.deep.equal([200, 201]);
  });

  it('never holds a lone request back: it runs at the first turn of the loop, before any timer', async () => {
    const inner = new FakeRunner();
    const b = coalescing(inner);
    let timerFired = false;
    const timer = setTimeout(() => {
      timerFired = true;
    }, 0);
    const scores = b.run(rowsFrom(7), 1);
    // Immediates run in the order they were queued: the batcher's came first.
    await nextTurn();
    expect(inner.runs).to.deep.equal([1]);
    expect(timerFired).to.equal(false);
    expect([...(await scores)]).to.deep.equal([7]);
    clearTimeout(timer);
  });

  it('queues what arrives during a run and sends it as the next batch when the run ends', async () => {
    const inner = new FakeRunner();
    inner.hold = true;
    const b = coalescing(inner);
    const first = b.run(rowsFrom(1), 1);
    await nextTurn();
    expect(inner.runs).to.deep.equal([1]);
    const later = [2, 3, 4].map((k) => b.run(rowsFrom(k), 1));
    await nextTurn();
    await nextTurn();
    expect(inner.runs, 'nothing else runs while the first run is in progress').to.deep.equal([1]);
    inner.hold = false;
    inner.releaseHeld();
    expect([...(await first)]).to.deep.equal([1]);
    const rest = await Promise.all(later);
    expect(inner.runs).to.deep.equal([1, 3]);
    expect(rest.map((s) => [...s])).to.deep.equal([[2], [3], [4]]);
  });

  it('splits at maxBatchSize, and a request that size or larger runs alone', async () => {
    const inner = new FakeRunner();
    const b = coalescing(inner, 4);
    const small = Array.from({ length: 10 }, (_, k) => b.run(rowsFrom(k), 1));
    const big = b.run(rowsFrom(50, 4), 4);
    const scores = await Promise.all(small);
    expect([...(await big)]).to.deep.equal([50, 51, 52, 53]);
    expect(scores.map((s) => s[0])).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(inner.runs).to.deep.equal([4, 4, 4, 2]);
  });

  it('fails every caller of a failed run, and the next batch still runs', async () => {
    const inner = new FakeRunner();
    inner.hold = true;
    inner.fail = true;
    const b = coalescing(inner);
    const failed = [b.run(rowsFrom(1), 1), b.run(rowsFrom(2), 1)];
    await nextTurn();
    inner.fail = false;
    inner.hold = false;
    const ok = b.run(rowsFrom(3), 1);
    inner.releaseHeld();
    for (const p of failed) {
      const err = await p.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(String(err)).to.include('inner failed');
    }
    expect([...(await ok)]).to.deep.equal([3]);
  });

  it('release waits for queued requests before releasing the session', async () => {
    const inner = new FakeRunner();
    inner.hold = true;
    const b = coalescing(inner);
    const pending = [b.run(rowsFrom(1), 1), b.run(rowsFrom(2), 1)];
    await nextTurn();
    const third = b.run(rowsFrom(3), 1);
    const released = b.release();
    await nextTurn();
    expect(inner.released).to.equal(false);
    inner.hold = false;
    inner.releaseHeld();
    await Promise.all([...pending, third, released]);
    expect(inner.released).to.equal(true);
    expect(inner.runs).to.deep.equal([2, 1]);
  });
});
