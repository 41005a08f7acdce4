import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';

/** What a runner needs to score rows with one ONNX graph. */
export interface GraphIO {
  readonly input: string;
  readonly output: string;
  readonly positiveIndex: number;
  /** Model input columns per row. */
  readonly width: number;
}

/** Scores packed rows (n × width float32) and returns one positive-class score per row. */
export interface Runner {
  run(rows: Float32Array, n: number): Promise<Float32Array>;
  release(): Promise<void>;
}

/** ONNX Runtime session options shared by every runner. */
export function sessionOptions(intraOpThreads: number): ort.InferenceSession.SessionOptions {
  return {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: intraOpThreads,
    interOpNumThreads: 1,
  };
}

/** Picks the positive-class column out of an [n, k] probability tensor. */
export function positiveScores(probs: unknown, n: number, io: GraphIO): Float32Array {
  if (!(probs instanceof Float32Array) || probs.length % n !== 0) {
    throw new Error(`output "${io.output}" is not a float32 [${n}, k] tensor`);
  }
  const k = probs.length / n;
  if (io.positiveIndex >= k)
    throw new Error(`output "${io.output}" has ${k} columns, positiveIndex is ${io.positiveIndex}`);
  const scores = new Float32Array(n);
  for (let i = 0; i < n; i++) scores[i] = probs[i * k + io.positiveIndex] as number;
  return scores;
}

/**
 * Runs the session on the event loop. onnxruntime-node's `run()` is
 * synchronous inside a `setImmediate` (onnxruntime issue 19611), so the loop
 * is blocked for the inference: negligible for a logistic regression (a few
 * microseconds), not for large trees or networks; use `WorkerPoolRunner` there.
 */
export class InlineRunner implements Runner {
  constructor(
    private readonly session: ort.InferenceSession,
    private readonly io: GraphIO,
  ) {}

  async run(rows: Float32Array, n: number): Promise<Float32Array> {
    const feeds = { [this.io.input]: new ort.Tensor('float32', rows, [n, this.io.width]) };
    const result = await this.session.run(feeds, [this.io.output]);
    return positiveScores(result[this.io.output]?.data, n, this.io);
  }

  release(): Promise<void> {
    return this.session.release();
  }
}

/** Messages between the pool and `inference-worker.ts`. */
export type WorkerRequest = { id: number; rows: Float32Array; n: number };
export type WorkerReply =
  | { id: number; scores?: Float32Array; error?: string }
  | { ready: true }
  | { initError: string };

interface Pending {
  resolve: (s: Float32Array) => void;
  reject: (e: Error) => void;
}

interface PoolWorker {
  worker: Worker;
  pending: Map<number, Pending>;
}

/**
 * Runs inference on `size` worker threads, each with its own session, so the
 * event loop stays free to accept, decode and answer other calls while a large
 * model computes. Rows travel to the worker and scores back as transferred
 * buffers (no copy). Each call goes to the live worker with the fewest calls
 * pending. A worker that dies (a native crash, an out-of-memory kill) fails its
 * pending calls at once, leaves the pool, and is replaced.
 */
export class WorkerPoolRunner implements Runner {
  private nextId = 1;
  private readonly workers: PoolWorker[] = [];
  private released = false;

  private constructor(
    private readonly model: Uint8Array,
    private readonly io: GraphIO,
    private readonly intraOpThreads: number,
  ) {}

  static async create(
    model: Uint8Array,
    io: GraphIO,
    size: number,
    intraOpThreads: number,
  ): Promise<WorkerPoolRunner> {
    const pool = new WorkerPoolRunner(model, io, intraOpThreads);
    const started = await Promise.allSettled(Array.from({ length: size }, () => pool.spawn()));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      await pool.release();
      throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
    }
    return pool;
  }

  /** Number of live workers (for tests and diagnostics). */
  get size(): number {
    return this.workers.length;
  }

  private async spawn(): Promise<void> {
    const worker = new Worker(new URL('./inference-worker.js', import.meta.url), {
      workerData: { model: this.model, io: this.io, intraOpThreads: this.intraOpThreads },
    });
    const entry: PoolWorker = { worker, pending: new Map() };
    await new Promise<void>((resolve, reject) => {
      const onMessage = (msg: WorkerReply) => {
        if ('ready' in msg) resolve();
        else if ('initError' in msg) reject(new Error(msg.initError));
      };
      worker.once('message', onMessage);
      worker.once('error', reject);
      worker.once('exit', (code) => reject(new Error(`inference worker exited with ${code} while starting`)));
    });
    worker.on('message', (msg: WorkerReply) => {
      if (!('id' in msg)) return;
      const p = entry.pending.get(msg.id);
      entry.pending.delete(msg.id);
      if (msg.scores) p?.resolve(msg.scores);
      else p?.reject(new Error(msg.error ?? 'inference worker failed'));
    });
    worker.on('error', (err) => this.fail(entry, err));
    worker.on('exit', (code) => {
      this.fail(entry, new Error(`inference worker exited with ${code}`));
      if (!this.released) this.spawn().catch(() => undefined);
    });
    if (this.released) {
      await worker.terminate();
      return;
    }
    this.workers.push(entry);
  }

  /** Fails a worker's pending calls and takes it out of the pool. */
  private fail(entry: PoolWorker, err: Error): void {
    for (const p of entry.pending.values()) p.reject(err);
    entry.pending.clear();
    const i = this.workers.indexOf(entry);
    if (i >= 0) this.workers.splice(i, 1);
  }

  run(rows: Float32Array, n: number): Promise<Float32Array> {
    let target: PoolWorker | undefined;
    for (const w of this.workers) if (!target || w.pending.size < target.pending.size) target = w;
    if (!target) return Promise.reject(new Error('no inference worker is running'));
    const chosen = target;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      chosen.pending.set(id, { resolve, reject });
      const msg: WorkerRequest = { id, rows, n };
      // Transfer when the buffer is ours alone; a view into a larger buffer is copied.
      const whole = rows.byteOffset === 0 && rows.byteLength === rows.buffer.byteLength;
      chosen.worker.postMessage(msg, whole ? [rows.buffer as ArrayBuffer] : []);
    });
  }

  async release(): Promise<void> {
    this.released = true;
    const all = this.workers.splice(0);
    await Promise.all(all.map((w) => w.worker.terminate()));
  }
}

/** Reports each real ONNX Runtime run (rows and seconds), below any batching. */
export class MeteredRunner implements Runner {
  constructor(
    private readonly inner: Runner,
    private readonly observe: (rows: number, seconds: number) => void,
  ) {}

  async run(rows: Float32Array, n: number): Promise<Float32Array> {
    const t0 = performance.now();
    const scores = await this.inner.run(rows, n);
    this.observe(n, (performance.now() - t0) / 1000);
    return scores;
  }

  release(): Promise<void> {
    return this.inner.release();
  }
}
