/**
 * Unit tests of dynamic micro-batching (server/batcher.ts) over a fake inner
 * runner that records every run and settles it when the test says so.
 */
import { stat } from 'node:fs';
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

/**
 * A runner that records each run and scores row i as its first column, so a
 * caller can tell its own scores; `hold` keeps runs pending until released.
 */
class HoldingRunner implements Runner {
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
    const inner = new HoldingRunner();
    const b = coalescing(inner);
    const results = await Promise.all([1, 2, 3, 4, 5].map((k) => b.run(rowsFrom(k * 10), 1)));
    expect(inner.runs).to.deep.equal([5]);
    expect(results.map((s) => [...s])).to.deep.equal([[10], [20], [30], [40], [50]]);
  });

  it('keeps multi-row requests together and in order', async () => {
    const inner = new HoldingRunner();
    const b = coalescing(inner);
    const [a, c] = await Promise.all([b.run(rowsFrom(100, 3), 3), b.run(rowsFrom(200, 2), 2)]);
    expect(inner.runs).to.deep.equal([5]);
    expect([...(a as Float32Array)]).to.deep.equal([100, 101, 102]);
    expect([...(c as Float32Array)]).to.deep.equal([200, 201]);
  });

  it('never holds a lone request back: it runs at the first turn of the loop, before any timer', async () => {
    const inner = new HoldingRunner();
    const b = coalescing(inner);
    let timerFired = false;
    let timer: NodeJS.Timeout | undefined;
    let scores: Promise<Float32Array> | undefined;
    // Scheduled from an I/O callback, as a request arrives: from there the check phase
    // (setImmediate) always comes before the next timers phase. From elsewhere Node does
    // not order a 0 ms timer and an immediate, and the test would be a coin toss.
    await new Promise<void>((resolve) =>
      stat('.', () => {
        timer = setTimeout(() => {
          timerFired = true;
        }, 0);
        scores = b.run(rowsFrom(7), 1);
        // Immediates run in the order they were queued: the batcher's came first.
        setImmediate(resolve);
      }),
    );
    expect(inner.runs).to.deep.equal([1]);
    expect(timerFired).to.equal(false);
    expect([...(await (scores as Promise<Float32Array>))]).to.deep.equal([7]);
    clearTimeout(timer);
  });

  it('queues what arrives during a run and sends it as the next batch when the run ends', async () => {
    const inner = new HoldingRunner();
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

  it('with lanes (inference workers), keeps that many runs in progress, each taking the next batch', async () => {
    const inner = new HoldingRunner();
    inner.hold = true;
    const b = new DynamicBatcher(inner, WIDTH, { maxBatchSize: 64, maxQueueDelayMs: 0 }, 2);
    const first = b.run(rowsFrom(1), 1);
    await nextTurn();
    const second = b.run(rowsFrom(2), 1);
    await nextTurn();
    expect(inner.runs, 'a second run starts while the first is in progress').to.deep.equal([1, 1]);
    const later = [3, 4, 5].map((k) => b.run(rowsFrom(k), 1));
    await nextTurn();
    await nextTurn();
    expect(inner.runs, 'no third run while both lanes are busy').to.deep.equal([1, 1]);
    inner.hold = false;
    inner.releaseHeld();
    expect([...(await first), ...(await second)]).to.deep.equal([1, 2]);
    const rest = await Promise.all(later);
    expect(rest.map((s) => [...s])).to.deep.equal([[3], [4], [5]]);
    expect(inner.runs.slice(0, 2)).to.deep.equal([1, 1]);
    expect(inner.runs.slice(2).reduce((a, x) => a + x, 0)).to.equal(3);
    await b.release();
  });

  it('splits at maxBatchSize, and a request that size or larger runs alone', async () => {
    const inner = new HoldingRunner();
    const b = coalescing(inner, 4);
    const small = Array.from({ length: 10 }, (_, k) => b.run(rowsFrom(k), 1));
    const big = b.run(rowsFrom(50, 4), 4);
    const scores = await Promise.all(small);
    expect([...(await big)]).to.deep.equal([50, 51, 52, 53]);
    expect(scores.map((s) => s[0])).to.deep.equal([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(inner.runs).to.deep.equal([4, 4, 4, 2]);
  });

  it('fails every caller of a failed run, and the next batch still runs', async () => {
    const inner = new HoldingRunner();
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
    const inner = new HoldingRunner();
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

  it('rejects every member when the inner runner throws instead of rejecting', async () => {
    const boom = new Error('boom');
    const throwing: Runner = {
      run: () => {
        throw boom;
      },
      release: async () => undefined,
    };
    const b = coalescing(throwing);
    const results = await Promise.allSettled([b.run(rowsFrom(1), 1), b.run(rowsFrom(2), 1)]);
    expect(results.map((r) => (r.status === 'rejected' ? r.reason : r.value))).to.deep.equal([boom, boom]);
    await b.release();
  });
});
