/**
 * The QA file (`qa.json`) every version ships: requests and the responses a
 * tester should see. Shared by `qa` (which runs it) and `publish-model` (which
 * refuses a version whose qa.json is malformed). Format, as the Python pipeline
 * writes it (scripts/pipeline/publish.py):
 *
 * ```jsonc
 * { "model": "conversion", "version": "20261124T041750Z",
 *   "expectedAt": "2026-11-24T04:17:50.000Z", "horizonDays": 180,   // optional
 *   "cases": [ { "name": "seed sample",
 *                "request": { "model": "...", "version": "...", "requestId": "qa-1", "instances": [ {...} ] },
 *                "expect": { "code": "OK", "predictions": [ { "label": 0, "score": 0.0039 } ],
 *                            "scoreTolerance": 0.01 } } ] }
 * ```
 */
import { status } from '@grpc/grpc-js';

/** One request and what its response must be. */
export interface QaCase {
  readonly name: string;
  readonly request: {
    readonly model: string;
    readonly version: string;
    readonly requestId: string;
    readonly instances: Record<string, unknown>[];
  };
  readonly expect: {
    /** A gRPC status name, as grpc-js's `status` enum spells it (`OK`, `INVALID_ARGUMENT`, …). */
    readonly code: string;
    readonly predictions: readonly { readonly label: number; readonly score: number }[] | undefined;
    /** Allowed |score − expected|; undefined means the caller's default. */
    readonly scoreTolerance: number | undefined;
  };
}

export interface QaFile {
  readonly model: string;
  readonly version: string;
  /** When the expected scores were computed (age features depend on `now`). */
  readonly expectedAt: string | undefined;
  /** Days after `expectedAt` for which the expected labels stay valid. */
  readonly horizonDays: number | undefined;
  readonly cases: readonly QaCase[];
}

/** The file does not have the shape above; the message names the path. */
export class QaFileError extends Error {
  override name = 'QaFileError';
}

/** gRPC status names (`OK`, `CANCELLED`, …) from grpc-js's numeric enum. */
const STATUS_NAMES: ReadonlySet<string> = new Set(Object.keys(status).filter((k) => Number.isNaN(Number(k))));

/** The name of a numeric gRPC status, e.g. 3 → `INVALID_ARGUMENT`. */
export function statusName(code: number): string {
  return (status as unknown as Record<number, string>)[code] ?? `UNKNOWN_STATUS_${code}`;
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new QaFileError(`${where} must be an object`);
  return v as Record<string, unknown>;
}

function str(v: unknown, where: string, allowEmpty = false): string {
  if (typeof v !== 'string' || (!allowEmpty && v === '')) {
    throw new QaFileError(`${where} must be a ${allowEmpty ? '' : 'non-empty '}string`);
  }
  return v;
}

function finite(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new QaFileError(`${where} must be a finite number`);
  return v;
}

function parseCase(v: unknown, i: number): QaCase {
  const where = `cases[${i}]`;
  const c = obj(v, where);
  const name = str(c.name, `${where}.name`);
  const req = obj(c.request, `${where}.request`);
  const instances = req.instances ?? [];
  if (!Array.isArray(instances)) throw new QaFileError(`${where}.request.instances must be a list`);
  const records = instances.map((x, j) => obj(x, `${where}.request.instances[${j}]`));
  const exp = obj(c.expect, `${where}.expect`);
  const code = str(exp.code, `${where}.expect.code`);
  if (!STATUS_NAMES.has(code)) {
    throw new QaFileError(
      `${where}.expect.code "${code}" is not a gRPC status name (OK, INVALID_ARGUMENT, …)`,
    );
  }
  let predictions: { label: number; score: number }[] | undefined;
  if (exp.predictions !== undefined) {
    if (!Array.isArray(exp.predictions)) throw new QaFileError(`${where}.expect.predictions must be a list`);
    if (code !== 'OK') throw new QaFileError(`${where}.expect.predictions only makes sense with code OK`);
    predictions = exp.predictions.map((p, j) => {
      const pw = `${where}.expect.predictions[${j}]`;
      const o = obj(p, pw);
      const label = finite(o.label, `${pw}.label`);
      if (label !== 0 && label !== 1) throw new QaFileError(`${pw}.label must be 0 or 1`);
      return { label, score: finite(o.score, `${pw}.score`) };
    });
    if (predictions.length !== records.length) {
      throw new QaFileError(
        `${where}.expect.predictions has ${predictions.length} entries for ${records.length} instances`,
      );
    }
  }
  let scoreTolerance: number | undefined;
  if (exp.scoreTolerance !== undefined) {
    scoreTolerance = finite(exp.scoreTolerance, `${where}.expect.scoreTolerance`);
    if (scoreTolerance < 0) throw new QaFileError(`${where}.expect.scoreTolerance must be ≥ 0`);
  }
  return {
    name,
    request: {
      model: str(req.model, `${where}.request.model`),
      version: req.version === undefined ? '' : str(req.version, `${where}.request.version`, true),
      requestId: req.requestId === undefined ? '' : str(req.requestId, `${where}.request.requestId`, true),
      instances: records,
    },
    expect: { code, predictions, scoreTolerance },
  };
}

/**
 * Validates a parsed qa.json. Case names must be unique, since reports and
 * failures name cases. Throws `QaFileError` naming the offending path.
 */
export function parseQaFile(json: unknown): QaFile {
  const q = obj(json, 'qa.json');
  if (!Array.isArray(q.cases) || q.cases.length === 0)
    throw new QaFileError('cases must be a non-empty list');
  const cases = q.cases.map(parseCase);
  const seen = new Set<string>();
  for (const c of cases) {
    if (seen.has(c.name)) throw new QaFileError(`case name "${c.name}" is used twice`);
    seen.add(c.name);
  }
  let expectedAt: string | undefined;
  if (q.expectedAt !== undefined) {
    expectedAt = str(q.expectedAt, 'expectedAt');
    if (Number.isNaN(Date.parse(expectedAt))) throw new QaFileError('expectedAt must be an ISO timestamp');
  }
  return {
    model: str(q.model, 'model'),
    version: str(q.version, 'version'),
    expectedAt,
    horizonDays: q.horizonDays === undefined ? undefined : finite(q.horizonDays, 'horizonDays'),
    cases,
  };
}
