import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import { DynamicBatcher } from './batcher.js';
import type { BatchingConfig } from './config.js';
import { FieldError } from './errors.js';
import { checkGolden, type GoldenJob, type GoldenResult } from './golden-worker.js';
import {
  type GraphIO,
  InlineRunner,
  MeteredRunner,
  type Runner,
  sessionOptions,
  WorkerPoolRunner,
} from './inference-runner.js';
import { type Manifest, parseManifest } from './model-manifest.js';
import { Preprocessor } from './preprocess.js';
import { openRegularFile, readRegularFile, tooLarge } from './regular-file.js';

/** A version failed validation while loading; the message says why. */
export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
}

/** Tolerance for golden-vector replay, inputs and scores alike. */
export const GOLDEN_TOLERANCE = 1e-5;

/**
 * The largest files a version may have; anything bigger is refused before it
 * is read (MODEL_MAX_MANIFEST_BYTES, MODEL_MAX_GOLDEN_BYTES, MODEL_MAX_ONNX_BYTES).
 */
export interface FileLimits {
  readonly manifestBytes: number;
  readonly goldenBytes: number;
  readonly onnxBytes: number;
}

/** The defaults (config.ts documents them). */
export const DEFAULT_FILE_LIMITS: FileLimits = Object.freeze({
  manifestBytes: 1024 * 1024,
  goldenBytes: 16 * 1024 * 1024,
  onnxBytes: 1024 * 1024 * 1024,
});

/** Bytes hashed between two turns of the event loop while model.onnx is read. */
const HASH_CHUNK = 1024 * 1024;

/** How a version executes: threads, worker threads, dynamic batching. */
export interface SessionTuning {
  /** File size limits; DEFAULT_FILE_LIMITS when absent. */
  readonly fileLimits?: FileLimits;
  /** Threads for one operator; 1 suits small models on a small machine. */
  readonly intraOpThreads: number;
  /** 0 (default) runs inference on the event loop; N > 0 on N worker threads. */
  readonly workers?: number;
  /** Dynamic micro-batching; undefined = off. */
  readonly batching?: BatchingConfig | undefined;
  /** Called after each ONNX Runtime run with its rows and duration (metrics). */
  readonly observeRun?: (model: string, version: string, rows: number, seconds: number) => void;
}

interface GoldenCase {
  id?: string;
  record: Record<string, unknown>;
  inputs: number[];
  score: number;
}

/** A request's hold on a version (ModelVersion.lease). */
export interface ModelLease {
  readonly version: ModelVersion;
  /** Lets go; the session is freed once the version is retired and the last lease is released. */
  release(): void;
}

/**
 * One loaded, validated, warmed-up version of a model. Requests hold a
 * `lease()` while they use it; once the repository retires it (a newer
 * version took over, or its directory was removed), its ONNX Runtime session is
 * released as soon as the last lease is.
 */
export class ModelVersion {
  readonly loadedAt = new Date();
  private users = 0;
  private retired = false;
  private released: Promise<void> | undefined;

  private constructor(
    readonly manifest: Manifest,
    readonly dir: string,
    readonly preprocessor: Preprocessor,
    private readonly runner: Runner,
  ) {}

  get name(): string {
    return this.manifest.name;
  }

  get version(): string {
    return this.manifest.version;
  }

  /**
   * Reads, verifies and warms up the version in `dir`: manifest schema, sha256
   * of model.onnx, the graph's input and output against the manifest, then a
   * replay of golden.json (when present) to 1e-5. Throws `ModelLoadError`.
   */
  static async load(
    dir: string,
    expect: { name: string; version: string },
    tuning: SessionTuning,
  ): Promise<ModelVersion> {
    const limits = tuning.fileLimits ?? DEFAULT_FILE_LIMITS;
    let manifest: Manifest;
    let manifestText: string;
    let preprocessor: Preprocessor;
    try {
      // Bounded before it is read, so parsing on this thread stays short (about 20 ms per MiB).
      manifestText = (
        await readRegularFile(join(dir, 'model.json'), limits.manifestBytes, 'MODEL_MAX_MANIFEST_BYTES')
      ).toString('utf8');
      manifest = parseManifest(JSON.parse(manifestText), expect);
      // Refuses a default that its own transform or range rejects.
      preprocessor = new Preprocessor(manifest);
    } catch (err) {
      throw new ModelLoadError(`model.json is invalid: ${(err as Error).message}`);
    }
    let bytes: Buffer;
    let sha: string;
    try {
      ({ bytes, sha } = await readAndHash(join(dir, 'model.onnx'), limits.onnxBytes));
    } catch (err) {
      throw new ModelLoadError(`model.onnx cannot be read: ${(err as Error).message}`);
    }
    if (sha !== manifest.sha256) {
      throw new ModelLoadError(`sha256 mismatch: model.onnx is ${sha}, the manifest says ${manifest.sha256}`);
    }
    let session: ort.InferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, sessionOptions(tuning.intraOpThreads));
    } catch (err) {
      throw new ModelLoadError(`ONNX Runtime cannot load model.onnx: ${(err as Error).message}`);
    }
    const io: GraphIO = { ...manifest.onnx, width: preprocessor.width };
    let runner: Runner;
    try {
      checkSignature(session, io);
      if ((tuning.workers ?? 0) > 0) {
        runner = await WorkerPoolRunner.create(bytes, io, tuning.workers ?? 1, tuning.intraOpThreads);
        await session.release();
      } else {
        runner = new InlineRunner(session, io);
      }
    } catch (err) {
      await session.release().catch(() => undefined);
      throw err instanceof ModelLoadError
        ? err
        : new ModelLoadError(`cannot start inference: ${(err as Error).message}`);
    }
    const observe = tuning.observeRun;
    if (observe)
      runner = new MeteredRunner(runner, (rows, s) => observe(manifest.name, manifest.version, rows, s));
    // With inference workers, as many coalesced runs at once as there are workers.
    if (tuning.batching)
      runner = new DynamicBatcher(runner, io.width, tuning.batching, Math.max(1, tuning.workers ?? 0));
    const version = new ModelVersion(manifest, dir, preprocessor, runner);
    try {
      await version.warmUp({ manifestText, maxGoldenBytes: limits.goldenBytes });
    } catch (err) {
      await runner.release().catch(() => undefined);
      throw err instanceof ModelLoadError
        ? err
        : new ModelLoadError(`warm-up failed: ${(err as Error).message}`);
    }
    return version;
  }

  /**
   * Replays golden.json if the version ships one, else runs one default row.
   * A large file is read, parsed and preprocessed on a worker thread
   * (golden-worker.ts); only the model run happens here.
   */
  private async warmUp(o: { manifestText: string; maxGoldenBytes: number }): Promise<void> {
    const golden = await checkGoldenOffThread({
      path: join(this.dir, 'golden.json'),
      maxBytes: o.maxGoldenBytes,
      manifestText: o.manifestText,
      expect: { name: this.name, version: this.version },
      tolerance: GOLDEN_TOLERANCE,
    });
    if (golden.kind === 'refused') throw new ModelLoadError(golden.reason);
    if (golden.kind === 'absent') {
      const scores = await this.score(new Float32Array(this.preprocessor.width), 1);
      if (!(scores[0] >= 0 && scores[0] <= 1))
        throw new ModelLoadError(`warm-up score ${scores[0]} is not a probability`);
      return;
    }
    const scores = await this.score(golden.rows, golden.n);
    for (let i = 0; i < golden.n; i++) {
      if (!(Math.abs((scores[i] as number) - (golden.scores[i] as number)) <= GOLDEN_TOLERANCE)) {
        throw new ModelLoadError(
          `golden vector mismatch: case ${golden.ids[i]}: score is ${scores[i]}, Python computed ${golden.scores[i]}`,
        );
      }
    }
  }

  /** Positive-class scores for `n` rows packed in `rows` (n × width). */
  score(rows: Float32Array, n: number): Promise<Float32Array> {
    return this.runner.run(rows, n);
  }

  /**
   * A lease on this version for one request: the session stays alive until
   * the lease is released, even if the repository retires the version
   * meanwhile. `release()` may be called more than once; only the first counts.
   */
  lease(): ModelLease {
    if (this.retired && this.users === 0 && this.released) {
      // The repository handed out a version it had already disposed of: a bug, never a silent crash in ORT.
      throw new Error(`model ${this.name}@${this.version} was released before this request leased it`);
    }
    this.users++;
    let held = true;
    return {
      version: this,
      release: () => {
        if (!held) return;
        held = false;
        this.users--;
        if (this.retired && this.users === 0) void this.dispose();
      },
    };
  }

  /** Called when the version stops being loaded: frees it once idle. */
  retire(): Promise<void> {
    this.retired = true;
    return this.users === 0 ? this.dispose() : Promise.resolve();
  }

  private dispose(): Promise<void> {
    this.released ??= this.runner.release().catch(() => undefined);
    return this.released;
  }
}

/**
 * Reads model.onnx into one buffer and hashes it a chunk at a time, so
 * hashing a large model never blocks the event loop for more than a chunk
 * (about 2 ms); one update over 200 MB blocked it for 1.3 s.
 */
async function readAndHash(path: string, maxBytes: number): Promise<{ bytes: Buffer; sha: string }> {
  const { file, size } = await openRegularFile(path);
  try {
    if (size > maxBytes) throw tooLarge(size, maxBytes, 'MODEL_MAX_ONNX_BYTES');
    const bytes = Buffer.allocUnsafe(size);
    const hash = createHash('sha256');
    let offset = 0;
    while (offset < size) {
      const { bytesRead } = await file.read(bytes, offset, Math.min(HASH_CHUNK, size - offset), offset);
      if (bytesRead === 0) break;
      hash.update(bytes.subarray(offset, offset + bytesRead));
      offset += bytesRead;
    }
    return { bytes: bytes.subarray(0, offset), sha: hash.digest('hex') };
  } finally {
    await file.close();
  }
}

/**
 * golden.json files up to this size are checked inline (under 10 ms); larger
 * ones on a worker thread, whose start costs about 100 ms but no stall.
 */
const GOLDEN_INLINE_BYTES = 256 * 1024;

/** Checks golden.json inline when small, else on golden-worker.ts; a worker that dies refuses the version. */
async function checkGoldenOffThread(job: GoldenJob): Promise<GoldenResult> {
  const size = await stat(job.path).then(
    (s) => s.size,
    () => 0,
  );
  if (size <= GOLDEN_INLINE_BYTES) return checkGolden(job);
  return new Promise((resolve) => {
    const worker = new Worker(new URL('./golden-worker.js', import.meta.url), { workerData: job });
    let settled = false;
    const settle = (r: GoldenResult) => {
      if (settled) return;
      settled = true;
      resolve(r);
      void worker.terminate();
    };
    worker.once('message', (r: GoldenResult) => settle(r));
    worker.once('error', (err) =>
      settle({ kind: 'refused', reason: `golden.json check failed: ${err.message}` }),
    );
    worker.once('exit', (code) =>
      settle({ kind: 'refused', reason: `golden.json check exited with ${code}` }),
    );
  });
}

/** Checks the graph's input and output against what the manifest declares. */
function checkSignature(session: ort.InferenceSession, io: GraphIO): void {
  const meta = session.inputMetadata.find((m) => m.name === io.input);
  if (!meta) {
    throw new ModelLoadError(
      `the graph has no input "${io.input}" (it has ${session.inputNames.join(', ')})`,
    );
  }
  if (meta.isTensor) {
    if (meta.type !== 'float32')
      throw new ModelLoadError(`input "${io.input}" is ${meta.type}, expected float32`);
    const last = meta.shape[meta.shape.length - 1];
    if (meta.shape.length !== 2 || (typeof last === 'number' && last !== io.width)) {
      throw new ModelLoadError(
        `input "${io.input}" has shape [${meta.shape.join(', ')}] but the manifest's fields produce ${io.width} columns`,
      );
    }
  }
  if (!session.outputNames.includes(io.output)) {
    throw new ModelLoadError(
      `the graph has no output "${io.output}" (it has ${session.outputNames.join(', ')})`,
    );
  }
}

/**
 * Runs golden cases through preprocessing and the session; returns a
 * description of the first mismatch beyond `GOLDEN_TOLERANCE`, or undefined.
 */
export async function replayGolden(
  version: ModelVersion,
  cases: readonly GoldenCase[],
  nowMs: number,
): Promise<string | undefined> {
  const width = version.preprocessor.width;
  const rows = new Float32Array(cases.length * width);
  for (const [i, c] of cases.entries()) {
    try {
      version.preprocessor.fill(c.record, nowMs, rows, i * width);
    } catch (err) {
      return `case ${c.id ?? i}: ${err instanceof FieldError ? err.message : String(err)}`;
    }
    for (let j = 0; j < width; j++) {
      if (!(Math.abs(rows[i * width + j] - (c.inputs[j] ?? Number.NaN)) <= GOLDEN_TOLERANCE)) {
        return `case ${c.id ?? i}: input ${version.manifest.featureNames[j]} is ${rows[i * width + j]}, Python computed ${c.inputs[j]}`;
      }
    }
  }
  const scores = await version.score(rows, cases.length);
  for (const [i, c] of cases.entries()) {
    if (!(Math.abs(scores[i] - c.score) <= GOLDEN_TOLERANCE)) {
      return `case ${c.id ?? i}: score is ${scores[i]}, Python computed ${c.score}`;
    }
  }
  return undefined;
}
