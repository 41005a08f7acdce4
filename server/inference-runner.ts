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
 * buffers (no copy). Each call goes to the worker with the fewest calls pending.
 */
export class WorkerPoolRunner implements Runner {
  private nextId = 1;
  private constructor(private readonly workers: PoolWorker[]) {}

  static async create(
    model: Uint8Array,
    io: GraphIO,
    size: number,
    intraOpThreads: number,
  ): Promise<WorkerPoolRunner> {
    const url = new URL('./inference-worker.js', import.meta.url);
    const started = await Promise.allSettled(
      Array.from({ length: size }, async (): Promise<PoolWorker> => {
        const worker = new Worker(url, { workerData: { model, io, intraOpThreads } });
        const pending = new Map<number, Pending>();
        await new Promise<void>((resolve, reject) => {
          const onMessage = (msg: WorkerReply) => {
            if ('ready' in msg) resolve();
            else if ('initError' in msg) reject(new Error(msg.initError));
          };
          worker.once('message', onMessage);
          worker.once('error', reject);
        });
        worker.on('message', (msg: WorkerReply) => {
          if (!('id' in msg)) return;
          const p = pending.get(msg.id);
          pending.delete(msg.id);
          if (msg.scores) p?.resolve(msg.scores);
          else p?.reject(new Error(msg.error ?? 'inference worker failed'));
        });
        worker.on('error', (err) => {
          for (const p of pending.values()) p.reject(err);
          pending.clear();
        });
        return { worker, pending };
      }),
    );
    const ok = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failed) {
      await Promise.all(ok.map((w) => w.worker.terminate()));
      throw failed.reason instanceof Error ? failed.reason : new Error(String(failed.reason));
    }
    return new WorkerPoolRunner(ok);
  }

  run(rows: Float32Array, n: number): Promise<Float32Array> {
    let target = this.workers[0] as PoolWorker;
    for (const w of this.workers) if (w.pending.size < target.pending.size) target = w;
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      target.pending.set(id, { resolve, reject });
      const msg: WorkerRequest = { id, rows, n };
      // Transfer when the buffer is ours alone; a view into a larger buffer is copied.
      const whole = rows.byteOffset === 0 && rows.byteLength === rows.buffer.byteLength;
      target.worker.postMessage(msg, whole ? [rows.buffer as ArrayBuffer] : []);
    });
  }

  async release(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.worker.terminate()));
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
