/**
 * Unit tests of dynamic micro-batching (server/batcher.ts) over a fake inner
 * runner that records every run and settles it when the test says so.
 */
import { expect } from 'chai';
import { DynamicBatcher } from '../../server/batcher.js';
import type { Runner } from '../../server/inference-runner.js';

const WIDTH = 2;

interface Run {
  /** Each row's first column, so a test can tell whose rows were merged. */
  ids: number[];
  n: number;
  resolve(): void;
  reject(err: unknown): void;
}

/** A runner whose score for a row is its first column; runs settle by hand (or at once with `auto`). */
class FakeRunner implements Runner {
  readonly runs: Run[] = [];
  readonly events: string[] = [];

  constructor(private readonly auto = false) {}

  run(rows: Float32Array, n: number): Promise<Float32Array> {
    expect(rows.length, 'rows × width').to.equal(n * WIDTH);
    const ids = Array.from({ length: n }, (_, i) => rows[i * WIDTH] as number);
    this.events.push(`run ${ids.join(',')}`);
    return new Promise((resolve, reject) => {
      this.runs.push({ ids, n, resolve: () => resolve(Float32Array.from(ids)), reject });
      if (this.auto) this.runs.at(-1)?.resolve();
    });
  }

  async release(): Promise<void> {
    this.events.push('release');
  }
}

/** `n` rows whose first columns are the given ids. */
function rows(...ids: number[]): Float32Array {
  const out = new Float32Array(ids.length * WIDTH);
  ids.forEach((id, i) => {
    out[i * WIDTH] = id;
    out[i * WIDTH + 1] = -1;
  });
  return out;
}

const scores = (p: Promise<Float32Array>) => p.then((s) => [...s]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('DynamicBatcher', () => {
  const open: DynamicBatcher[] = [];
  const batcher = (inner: Runner, maxBatchSize: number, maxQueueDelayMs: number) => {
    const b = new DynamicBatcher(inner, WIDTH, { maxBatchSize, maxQueueDelayMs });
    open.push(b);
    return b;
  };
  afterEach(async () => {
    // No timer outlives a test.
    for (const b of open.splice(0)) await b.release();
  });

  it('merges requests that arrive within the delay into one run; each caller gets its own slice, in order', async () => {
    const inner = new FakeRunner(true);
    const b = batcher(inner, 64, 20);
    const a = scores(b.run(rows(1, 2), 2));
    const c = scores(b.run(rows(3), 1));
    const d = scores(b.run(rows(4, 5, 6), 3));
    expect(inner.runs, 'nothing runs before the delay').to.have.length(0);
    expect(await Promise.all([a, c, d])).to.deep.equal([[1, 2], [3], [4, 5, 6]]);
    expect(inner.runs.map((r) => r.ids)).to.deep.equal([[1, 2, 3, 4, 5, 6]]);
  });

  it('runs a lone request after maxQueueDelayMs, not before', async () => {
    const inner = new FakeRunner(true);
    const b = batcher(inner, 64, 60);
    const t0 = performance.now();
    const got = scores(b.run(rows(7), 1));
    await sleep(20);
    expect(inner.runs, 'run before the delay').to.have.length(0);
    expect(await got).to.deep.equal([7]);
    expect(performance.now() - t0).to.be.at.least(55);
  });

  it('counts the delay from the first queued request, not from the last', async () => {
    const inner = new FakeRunner(true);
    const b = batcher(inner, 64, 100);
    const first = scores(b.run(rows(1), 1));
    await sleep(60);
    const second = scores(b.run(rows(2), 1));
    // Due at least 120 ms after the first request: Node runs timers in order of due
    // time, so the batch timer (due at 100 ms) has fired by then.
    const runsBy120 = await new Promise<number>((r) => setTimeout(() => r(inner.runs.length), 60));
    expect(runsBy120, 'runs 120 ms after the first request').to.be.at.least(1);
    expect(await first).to.deep.equal([1]);
    await b.release();
    expect(await second).to.deep.equal([2]);
  });

  it('flushes at once when the queue reaches maxBatchSize, without waiting for the delay', () => {
    const inner = new FakeRunner();
    const b = batcher(inner, 4, 60_000);
    void b.run(rows(1, 2), 2);
    expect(inner.runs).to.have.length(0);
    void b.run(rows(3, 4), 2);
    expect(inner.runs.map((r) => r.ids)).to.deep.equal([[1, 2, 3, 4]]);
    for (const r of inner.runs) r.resolve();
  });

  it('flushes the queue first when a request would overflow maxBatchSize', async () => {
    const inner = new FakeRunner(true);
    const b = batcher(inner, 4, 60_000);
    const first = scores(b.run(rows(1, 2, 3), 3));
    const second = scores(b.run(rows(4, 5), 2));
    expect(inner.runs.map((r) => r.ids)).to.deep.equal([[1, 2, 3]]);
    expect(await first).to.deep.equal([1, 2, 3]);
    await b.release();
    expect(await second).to.deep.equal([4, 5]);
    expect(inner.runs.map((r) => r.ids)).to.deep.equal([
      [1, 2, 3],
      [4, 5],
    ]);
  });

  it('runs a request of at least maxBatchSize rows alone and at once, leaving the queue as it was', async () => {
    const inner = new FakeRunner(true);
    const b = batcher(inner, 3, 60_000);
    const small = scores(b.run(rows(1), 1));
    const big = scores(b.run(rows(10, 11, 12), 3));
    expect(inner.runs.map((r) => r.ids)).to.deep.equal([[10, 11, 12]]);
    expect(await big).to.deep.equal([10, 11, 12]);
    const bigger = scores(b.run(rows(20, 21, 22, 23), 4));
    expect(await bigger).to.deep.equal([20, 21, 22, 23]);
    expect(inner.runs, 'the small request is still queued').to.have.length(2);
    await b.release();
    expect(await small).to.deep.equal([1]);
  });

  it('rejects every member of a batch whose run fails, with that error', async () => {
    const inner = new FakeRunner();
    const b = batcher(inner, 3, 60_000);
    const members = [b.run(rows(1), 1), b.run(rows(2, 3), 2)];
    const boom = new Error('ORT failed');
    inner.runs[0]?.reject(boom);
    const settled = await Promise.allSettled(members);
    expect(settled.map((s) => (s.status === 'rejected' ? s.reason : s.status))).to.deep.equal([boom, boom]);
    // The next batch is unaffected.
    const next = scores(b.run(rows(4, 5, 6), 3));
    inner.runs[1]?.resolve();
    expect(await next).to.deep.equal([4, 5, 6]);
  });

  it('release() runs what is queued before releasing the inner runner', async () => {
    const inner = new FakeRunner(true);
    const b = batcher(inner, 64, 60_000);
    const queued = scores(b.run(rows(8, 9), 2));
    expect(inner.runs).to.have.length(0);
    await b.release();
    expect(inner.events).to.deep.equal(['run 8,9', 'release']);
    expect(await queued).to.deep.equal([8, 9]);
  });

  it('rejects every member when the inner runner throws instead of rejecting, also from the timer', async () => {
    const boom = new Error('boom');
    const throwing: Runner = {
      run: () => {
        throw boom;
      },
      release: async () => undefined,
    };
    const b = new DynamicBatcher(throwing, WIDTH, { maxBatchSize: 8, maxQueueDelayMs: 1 });
    const results = await Promise.allSettled([b.run(rows(1), 1), b.run(rows(2), 1)]);
    expect(results.map((r) => (r.status === 'rejected' ? r.reason : r.value))).to.deep.equal([boom, boom]);
  });

  it('release() waits for a run in progress before releasing the inner runner', async () => {
    const inner = new FakeRunner();
    const b = new DynamicBatcher(inner, WIDTH, { maxBatchSize: 8, maxQueueDelayMs: 50 });
    const pending = b.run(rows(7), 1);
    const released = b.release();
    await Promise.resolve();
    expect(inner.events).to.deep.equal(['run 7']);
    inner.runs[0]?.resolve();
    await released;
    expect(await pending).to.deep.equal(Float32Array.from([7]));
    expect(inner.events).to.deep.equal(['run 7', 'release']);
  });
});
