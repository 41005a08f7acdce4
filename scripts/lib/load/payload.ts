/**
 * The Predict request a load test sends, as ghz templates: the seed's sample
 * record (and optionally a few more), with a different user on every call so
 * that both A/B stages see a spread of users:
 *   - stage 1, Envoy's 90/10 stable/canary split, hashes the `x-user-id` header;
 *   - stage 2, the canary's experiment/control split of positive predictions,
 *     hashes the same user id.
 *
 * Templates are Go text/template with ghz's call data (`.RequestNumber`, 0, 1,
 * 2, … per call) and the sprig functions ghz registers (`add`, `mod`); see
 * ghz v0.121 runner/calldata.go. Body and header use the same expression, so
 * for every call `instances[0].userId` (a JSON number) equals `x-user-id`
 * (a string, as metadata must be).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REQUEST_ID_HEADER, USER_ID_HEADER } from '../../../server/headers.js';
import { versionsIn } from '../versions.js';

/** The seed's sample record, exactly as written in the engineering notes ("服务在线指标"). */
export const SEED_RECORD: Readonly<Record<string, string | number>> = Object.freeze({
  userId: 102079311,
  birthday: '1995-04-29T00:00:00.000+0000',
  appId: 20000,
  channel: 1,
  countryId: 182,
  createTime: '2020-11-02T02:51:19.000+0000',
  languageId: '20',
  type: 6,
  stoneVersion: 'other',
  platformType: 2,
  screenSize: '720*1440',
  deviceName: 'TECNO-BB4k',
});

/** Call n is user `USER_ID_BASE + n`: the first call is the seed's own user. */
export const USER_ID_BASE = SEED_RECORD.userId as number;

/** The user id of call n, as a template expression (sprig's `add`). */
const USER_ID_EXPR = `add ${USER_ID_BASE} .RequestNumber`;

/** The user id of call n, as a template. */
const USER_ID_TEMPLATE = `{{${USER_ID_EXPR}}}`;

/** A record to send, and where it came from (for the summary). */
export interface PayloadRecord {
  readonly id: string;
  readonly record: Readonly<Record<string, unknown>>;
}

export interface PredictTemplate {
  /** The request body template (ghz `--data-file` contents). */
  readonly data: string;
  /** Metadata templates. */
  readonly metadata: Readonly<Record<string, string>>;
}

const USER_PLACEHOLDER = '"__LOADTEST_USER_ID__"';

/** One record as JSON with its userId replaced by the per-call template variable. */
function recordTemplate(record: Readonly<Record<string, unknown>>): string {
  const json = JSON.stringify({ ...record, userId: '__LOADTEST_USER_ID__' });
  // Go templates treat `{{` as an action, so JSON holding it would break the body.
  if (json.replace(USER_PLACEHOLDER, '').includes('{{')) {
    throw new Error('payload records must not contain "{{"');
  }
  return json.replace(USER_PLACEHOLDER, '{{$u}}');
}

/**
 * The ghz templates for Predict on `model` (and `version`, empty for the
 * served one). Call n sends `records[n mod records.length]` with userId and
 * `x-user-id` set to `USER_ID_BASE + n`, and `x-request-id` `<runId>-<n>`, so
 * load-test calls are easy to find in the server logs.
 */
export function predictTemplate(
  records: readonly PayloadRecord[],
  opts: { model: string; version: string; runId: string },
): PredictTemplate {
  const head = JSON.stringify({ model: opts.model, version: opts.version }).slice(0, -1);
  return perCallTemplate(records, opts.runId, (record) => `${head},"instances":[${recordTemplate(record)}]}`);
}

/**
 * The body and metadata templates of a load test: call n sends the body of
 * `records[n mod records.length]` (`bodyOf` writes it, with `{{$u}}` for the
 * call's user), `x-user-id` `USER_ID_BASE + n` and `x-request-id` `<runId>-<n>`.
 */
function perCallTemplate(
  records: readonly PayloadRecord[],
  runId: string,
  bodyOf: (record: Readonly<Record<string, unknown>>) => string,
): PredictTemplate {
  if (records.length === 0) throw new Error('at least one payload record is needed');
  const body =
    records.length === 1
      ? bodyOf((records[0] as PayloadRecord).record)
      : // `{{if eq $i 0}}…{{else if eq $i 1}}…{{end}}`: text/template has no literals to index.
        `${records.map((r, i) => `{{${i === 0 ? 'if' : 'else if'} eq $i ${i}}}${bodyOf(r.record)}`).join('')}{{end}}`;
  const vars =
    `{{$u := ${USER_ID_EXPR}}}` +
    (records.length > 1 ? `{{$i := mod .RequestNumber ${records.length}}}` : '');
  return {
    data: `${vars}${body}`,
    metadata: {
      [USER_ID_HEADER]: USER_ID_TEMPLATE,
      [REQUEST_ID_HEADER]: `${runId}-{{.RequestNumber}}`,
    },
  };
}

/** One ModelInfer input in proto JSON, as ghz reads it. */
export interface ModelInferInputJson {
  readonly name: string;
  readonly datatype: 'INT64' | 'FP64' | 'BYTES';
  readonly shape: readonly [1];
  readonly contents:
    | { readonly int64_contents: readonly number[] }
    | { readonly fp64_contents: readonly number[] }
    | { readonly bytes_contents: readonly string[] };
}

/**
 * One record as the inputs of a ModelInfer request (the Open Inference
 * Protocol, server/open-inference-tensors.ts): one input of shape [1] per
 * field, in typed `contents` (JSON cannot write raw little-endian bytes, nor
 * a template compute them per call), integers as INT64, other numbers as
 * FP64, strings as BYTES (base64, as proto JSON writes bytes).
 */
export function modelInferInputs(record: Readonly<Record<string, unknown>>): ModelInferInputJson[] {
  return Object.entries(record).map(([name, v]) =>
    typeof v === 'number'
      ? Number.isInteger(v)
        ? { name, datatype: 'INT64', shape: [1], contents: { int64_contents: [v] } }
        : { name, datatype: 'FP64', shape: [1], contents: { fp64_contents: [v] } }
      : {
          name,
          datatype: 'BYTES',
          shape: [1],
          contents: { bytes_contents: [Buffer.from(String(v), 'utf8').toString('base64')] },
        },
  );
}

/**
 * One record as ModelInfer inputs with `raw_input_contents`, the encoding
 * tritonclient always sends (proto JSON: bytes in base64): each field's one
 * element little-endian, a BYTES element as a 4-byte little-endian length
 * then its UTF-8 bytes. Datatypes as `modelInferInputs`.
 */
export function modelInferRaw(record: Readonly<Record<string, unknown>>): {
  inputs: { name: string; datatype: string; shape: [1] }[];
  raw_input_contents: string[];
} {
  const inputs: { name: string; datatype: string; shape: [1] }[] = [];
  const raw: string[] = [];
  for (const t of modelInferInputs(record)) {
    let b: Buffer;
    if ('int64_contents' in t.contents) {
      b = Buffer.alloc(8);
      b.writeBigInt64LE(BigInt(t.contents.int64_contents[0] as number));
    } else if ('fp64_contents' in t.contents) {
      b = Buffer.alloc(8);
      b.writeDoubleLE(t.contents.fp64_contents[0] as number);
    } else {
      const text = Buffer.from(t.contents.bytes_contents[0] as string, 'base64');
      b = Buffer.alloc(4 + text.length);
      b.writeUInt32LE(text.length);
      text.copy(b, 4);
    }
    inputs.push({ name: t.name, datatype: t.datatype, shape: [1] });
    raw.push(b.toString('base64'));
  }
  return { inputs, raw_input_contents: raw };
}

/** A record's ModelInfer inputs as a template whose userId input is the per-call user. */
function inputsTemplate(record: Readonly<Record<string, unknown>>): string {
  const { userId: _u, ...rest } = record;
  const json = JSON.stringify(modelInferInputs(rest));
  if (json.includes('{{')) throw new Error('payload records must not contain "{{"');
  const user = '{"name":"userId","datatype":"INT64","shape":[1],"contents":{"int64_contents":[{{$u}}]}}';
  return json === '[]' ? `[${user}]` : `[${user},${json.slice(1)}`;
}

/**
 * The ghz templates for the Open Inference Protocol's ModelInfer: the same
 * records, users and request ids as `predictTemplate`, call for call, so the
 * server scores and logs exactly the records a Predict load test would send.
 */
export function modelInferTemplate(
  records: readonly PayloadRecord[],
  opts: { model: string; version: string; runId: string },
): PredictTemplate {
  const head = JSON.stringify({ model_name: opts.model, model_version: opts.version }).slice(0, -1);
  return perCallTemplate(records, opts.runId, (record) => `${head},"inputs":${inputsTemplate(record)}}`);
}

/**
 * What `predictTemplate` produces for call `n`, computed here rather than by
 * ghz: the tests use it to check the template, and it documents the contract.
 */
export function expectedCall(
  records: readonly PayloadRecord[],
  opts: { model: string; version: string; runId: string },
  n: number,
): { body: unknown; metadata: Record<string, string> } {
  const rec = records[n % records.length] as PayloadRecord;
  const user = USER_ID_BASE + n;
  return {
    body: { model: opts.model, version: opts.version, instances: [{ ...rec.record, userId: user }] },
    metadata: { [USER_ID_HEADER]: String(user), [REQUEST_ID_HEADER]: `${opts.runId}-${n}` },
  };
}

interface GoldenFile {
  cases?: { id?: unknown; record?: unknown; label?: unknown }[];
}

/**
 * The seed record plus the positive (label 1) golden cases of every local
 * version of `model` under `modelRoot` (the pipeline writes golden.json next to
 * each model). The seed record scores 0 on the demo models, so without
 * positives the canary would put every call in `canary_negative` and the
 * experiment/control split (A/B stage 2) would never be exercised.
 * Missing or unreadable files are skipped: the seed record alone still works.
 */
export function mixedRecords(modelRoot: string, model: string): PayloadRecord[] {
  const out: PayloadRecord[] = [{ id: 'seed', record: SEED_RECORD }];
  let versions: string[];
  try {
    versions = versionsIn(join(modelRoot, model));
  } catch {
    return out;
  }
  const seen = new Set<string>();
  for (const v of versions) {
    let golden: GoldenFile;
    try {
      golden = JSON.parse(readFileSync(join(modelRoot, model, v, 'golden.json'), 'utf8')) as GoldenFile;
    } catch {
      continue;
    }
    for (const c of golden.cases ?? []) {
      if (c.label !== 1 || typeof c.record !== 'object' || c.record === null) continue;
      const key = JSON.stringify(c.record);
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ id: `${v}/${String(c.id)}`, record: c.record as Record<string, unknown> });
    }
  }
  return out;
}

/** Records from a JSON file holding an array of objects. */
export function recordsFromFile(path: string): PayloadRecord[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`--payload ${path}: could not read JSON (${(err as Error).message})`);
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length === 0 ||
    !parsed.every((r) => typeof r === 'object' && r !== null && !Array.isArray(r))
  ) {
    throw new Error(`--payload ${path}: expected a non-empty JSON array of record objects`);
  }
  return parsed.map((record: Record<string, unknown>, i) => ({ id: `${path}#${i}`, record }));
}
