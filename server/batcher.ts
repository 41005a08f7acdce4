import type { BatchingConfig } from './config.js';
import type { Runner } from './inference-runner.js';

interface Queued {
  rows: Float32Array;
  n: number;
  resolve: (s: Float32Array) => void;
  reject: (e: unknown) => void;
}

/**
 * Dynamic micro-batching in the manner of Triton's dynamic batcher: queued
 * requests are merged into one ONNX Runtime run of at most `maxBatchSize`
 * rows, and each caller gets its own slice of the scores. A request at least
 * `maxBatchSize` rows long runs alone, at once. Configured by
 * `MODEL_BATCHING`, whose default coalesces every model (64 rows, 0 ms):
 * `npm run bench` found it ahead at every load from 8 to 200 concurrent
 * callers and level at one, with no added latency at 500/s (README,
 * Benchmarks).
 *
 * Two ways to form a batch:
 * - `maxQueueDelayMs` > 0: requests that arrive within that delay of the
 *   first queued one are merged (a timer; adds up to the delay to every call).
 * - `maxQueueDelayMs` = 0, coalescing (Triton's batcher with no queue delay):
 *   no timer. A request that finds the model idle is run once the event loop
 *   has handed out the requests it read with it (one `setImmediate`, the same
 *   hop onnxruntime-node's own `run()` takes); every request that arrives
 *   while a run is in progress waits for it and goes in the next run, as one
 *   batch. A lone request is never held back for company. With `lanes` > 1
 *   (a pool of inference workers), up to that many runs are in progress at
 *   once, each taking the next batch when it ends, so the pool stays busy.
 */
export class DynamicBatcher implements Runner {
  private queue: Queued[] = [];
  private queuedRows = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Coalescing: runs in progress or scheduled for this turn of the loop (at most `lanes`). */
  private active = 0;
  /** Callers of `release` waiting for the coalescing loop to go idle. */
  private idleWaiters: (() => void)[] = [];
  /** Runs started and not yet settled (release waits for them). */
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly inner: Runner,
    private readonly width: number,
    private readonly config: BatchingConfig,
    /** Coalescing runs at once: 1 inline, the pool's size with inference workers. */
    private readonly lanes = 1,
  ) {}

  private get coalescing(): boolean {
    return this.config.maxQueueDelayMs <= 0;
  }

  run(rows: Float32Array, n: number): Promise<Float32Array> {
    if (n >= this.config.maxBatchSize) return this.inner.run(rows, n);
    return new Promise((resolve, reject) => {
      if (this.coalescing) {
        this.queue.push({ rows, n, resolve, reject });
        this.queuedRows += n;
        if (this.active < this.lanes) {
          this.active++;
          setImmediate(() => this.coalesce());
        }
        return;
      }
      if (this.queuedRows + n > this.config.maxBatchSize) this.flush();
      this.queue.push({ rows, n, resolve, reject });
      this.queuedRows += n;
      if (this.queuedRows >= this.config.maxBatchSize) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.config.maxQueueDelayMs);
    });
  }

  /** Coalescing: runs what is queued (up to maxBatchSize rows), then again while more arrived meanwhile. */
  private coalesce(): void {
    if (this.queue.length === 0) {
      this.active--;
      if (this.active === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      return;
    }
    let take = 0;
    let rows = 0;
    while (take < this.queue.length) {
      const q = this.queue[take] as Queued;
      if (take > 0 && rows + q.n > this.config.maxBatchSize) break;
      rows += q.n;
      take++;
    }
    const batch = take === this.queue.length ? this.queue : this.queue.slice(0, take);
    this.queue = take === this.queue.length ? [] : this.queue.slice(take);
    this.queuedRows -= rows;
    this.dispatch(batch, rows, () => this.coalesce());
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue;
    const total = this.queuedRows;
    this.queue = [];
    this.queuedRows = 0;
    if (batch.length === 0) return;
    this.dispatch(batch, total, undefined);
  }

  /** One ONNX Runtime run of `batch` (`total` rows); each caller gets its own scores; then `next`. */
  private dispatch(batch: Queued[], total: number, next: (() => void) | undefined): void {
    let rows: Float32Array;
    if (batch.length === 1) {
      rows = (batch[0] as Queued).rows;
    } else {
      rows = new Float32Array(total * this.width);
      let offset = 0;
      for (const q of batch) {
        rows.set(q.rows, offset);
        offset += q.n * this.width;
      }
    }
    // A runner that throws instead of rejecting must still settle every member
    // (from the timer, a throw would be an uncaught exception).
    let run: Promise<Float32Array>;
    try {
      run = this.inner.run(rows, total);
    } catch (err) {
      run = Promise.reject(err);
    }
    const settled = run.then(
      (scores) => {
        if (batch.length === 1) {
          (batch[0] as Queued).resolve(scores);
        } else {
          let at = 0;
          for (const q of batch) {
            q.resolve(scores.subarray(at, at + q.n));
            at += q.n;
          }
        }
        next?.();
      },
      (err: unknown) => {
        for (const q of batch) q.reject(err);
        next?.();
      },
    );
    this.running.add(settled);
    void settled.finally(() => this.running.delete(settled));
  }

  /** Runs what is queued, waits for the runs in progress, then releases the inner runner. */
  async release(): Promise<void> {
    if (!this.coalescing) this.flush();
    // Coalescing: what is queued runs after the run in progress; wait until none is left.
    if (this.active > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    await Promise.all(this.running);
    await this.inner.release();
  }
}
