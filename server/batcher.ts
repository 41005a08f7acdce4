import type { BatchingConfig } from './config.js';
import type { Runner } from './inference-runner.js';

interface Queued {
  rows: Float32Array;
  n: number;
  resolve: (s: Float32Array) => void;
  reject: (e: unknown) => void;
}

/**
 * Dynamic micro-batching in the manner of Triton's dynamic batcher: requests
 * that arrive within `maxQueueDelayMs` of the first queued one are merged into
 * one ONNX Runtime run of at most `maxBatchSize` rows, and each caller gets its
 * own slice of the scores. A request at least `maxBatchSize` rows long runs
 * alone, at once. Off unless configured (`MODEL_BATCHING`).
 */
export class DynamicBatcher implements Runner {
  private queue: Queued[] = [];
  private queuedRows = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Runs started and not yet settled (release waits for them). */
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly inner: Runner,
    private readonly width: number,
    private readonly config: BatchingConfig,
  ) {}

  run(rows: Float32Array, n: number): Promise<Float32Array> {
    if (n >= this.config.maxBatchSize) return this.inner.run(rows, n);
    return new Promise((resolve, reject) => {
      if (this.queuedRows + n > this.config.maxBatchSize) this.flush();
      this.queue.push({ rows, n, resolve, reject });
      this.queuedRows += n;
      if (this.queuedRows >= this.config.maxBatchSize) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.config.maxQueueDelayMs);
    });
  }

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.queue;
    const total = this.queuedRows;
    this.queue = [];
    this.queuedRows = 0;
    if (batch.length === 0) return;
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
        let at = 0;
        for (const q of batch) {
          q.resolve(scores.slice(at, at + q.n));
          at += q.n;
        }
      },
      (err: unknown) => {
        for (const q of batch) q.reject(err);
      },
    );
    this.running.add(settled);
    void settled.finally(() => this.running.delete(settled));
  }

  /** Runs what is queued, waits for the runs in progress, then releases the inner runner. */
  async release(): Promise<void> {
    this.flush();
    await Promise.all(this.running);
    await this.inner.release();
  }
}
