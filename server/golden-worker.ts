/**
 * A worker thread that reads and checks a large golden.json off the event
 * loop (small ones are checked inline, by the same function): size check, parse, and every case's preprocessing against the
 * inputs Python computed, with the same Preprocessor the server uses (built
 * from the same model.json text). It hands back only the packed input rows
 * and expected scores (transferred, not copied), so a large golden file costs
 * the serving thread nothing but the model run. See model-version.ts.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { FieldError } from './errors.js';
import { parseManifest } from './model-manifest.js';
import { Preprocessor, parseIsoDate } from './preprocess.js';
import { FileTooLargeError, readRegularFile } from './regular-file.js';

/** What the worker is given. */
export interface GoldenJob {
  readonly path: string;
  readonly maxBytes: number;
  readonly manifestText: string;
  readonly expect: { readonly name: string; readonly version: string };
  readonly tolerance: number;
}

/** What it answers: absent, refused (a reason), or the rows to score. */
export type GoldenResult =
  | { readonly kind: 'absent' }
  | { readonly kind: 'refused'; readonly reason: string }
  | {
      readonly kind: 'rows';
      readonly rows: Float32Array;
      readonly scores: Float64Array;
      readonly n: number;
      /** Case ids (or their index), for the message of a score mismatch. */
      readonly ids: readonly string[];
    };

interface GoldenCase {
  id?: string;
  record: Record<string, unknown>;
  inputs: number[];
  score: number;
}

/** The whole check; run on a worker for large files (model-version.ts), inline for small ones. */
export async function checkGolden(job: GoldenJob): Promise<GoldenResult> {
  let text: string;
  try {
    text = (await readRegularFile(job.path, job.maxBytes, 'MODEL_MAX_GOLDEN_BYTES')).toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'absent' };
    if (err instanceof FileTooLargeError) return { kind: 'refused', reason: `golden.json is ${err.message}` };
    return { kind: 'refused', reason: `golden.json is unreadable: ${(err as Error).message}` };
  }
  let golden: { referenceTime?: unknown; cases?: unknown };
  try {
    golden = JSON.parse(text) as typeof golden;
  } catch (err) {
    return { kind: 'refused', reason: `golden.json is unreadable: ${(err as Error).message}` };
  }
  const now = typeof golden?.referenceTime === 'string' ? parseIsoDate(golden.referenceTime) : undefined;
  if (now === undefined || !Array.isArray(golden.cases) || golden.cases.length === 0) {
    return { kind: 'refused', reason: 'golden.json needs a referenceTime and at least one case' };
  }
  const manifest = parseManifest(JSON.parse(job.manifestText), job.expect);
  const pre = new Preprocessor(manifest);
  const cases = golden.cases as GoldenCase[];
  const width = pre.width;
  const rows = new Float32Array(cases.length * width);
  const scores = new Float64Array(cases.length);
  const ids: string[] = [];
  const names = manifest.featureNames;
  for (const [i, c] of cases.entries()) {
    const id = typeof c?.id === 'string' ? c.id : String(i);
    ids.push(id);
    try {
      pre.fill(c.record, now, rows, i * width);
    } catch (err) {
      return {
        kind: 'refused',
        reason: `golden vector mismatch: case ${id}: ${err instanceof FieldError ? err.message : String(err)}`,
      };
    }
    for (let j = 0; j < width; j++) {
      if (!(Math.abs((rows[i * width + j] as number) - (c.inputs?.[j] ?? Number.NaN)) <= job.tolerance)) {
        return {
          kind: 'refused',
          reason: `golden vector mismatch: case ${id}: input ${names[j]} is ${rows[i * width + j]}, Python computed ${c.inputs?.[j]}`,
        };
      }
    }
    scores[i] = typeof c.score === 'number' ? c.score : Number.NaN;
  }
  return { kind: 'rows', rows, scores, n: cases.length, ids };
}

const port = parentPort;
if (port) {
  checkGolden(workerData as GoldenJob).then(
    (result) => {
      const transfer =
        result.kind === 'rows'
          ? [result.rows.buffer as ArrayBuffer, result.scores.buffer as ArrayBuffer]
          : [];
      port.postMessage(result, transfer);
    },
    (err: unknown) =>
      port.postMessage({
        kind: 'refused',
        reason: `golden.json check failed: ${err instanceof Error ? err.message : String(err)}`,
      }),
  );
}
