/**
 * The Open Inference Protocol's tensors ↔ business records: how a ModelInfer
 * request's inputs become the raw records Predict takes (one named input per
 * manifest field, shape [N]), and how scored records become its outputs.
 *
 * Wire formats (open_inference_grpc.proto; the spec's "Tensor Data"):
 * `raw_input_contents[k]` holds input k's elements flattened, little-endian;
 * a BYTES element is a 4-byte little-endian length and then its bytes. Typed
 * `contents` carry the same elements in the repeated field of the datatype.
 * A request uses one or the other, never both.
 *
 * Input mapping (README "Open Inference Protocol"):
 *
 * | manifest field                        | datatype (metadata)  | also accepted        |
 * | ------------------------------------- | -------------------- | -------------------- |
 * | number, `numeric` transform           | FP64                 | FP32, INT64, INT32   |
 * | number, category or no transform      | INT64                | INT32, FP64, FP32    |
 * | string (text, ISO dates, screen size) | BYTES (UTF-8)        |                      |
 *
 * Every value then goes through the same preprocessing as Predict's, so an
 * INT64 beyond ±(2^53−1) becomes the float64 the Struct wire would carry,
 * and is refused as a category exactly as Predict refuses it.
 */
import type { Metadata } from '@grpc/grpc-js';
import { invalidArgument } from './errors.js';
import type {
  InferParameter,
  InferTensorContents,
  ModelInferRequest,
  ModelInferResponse_InferOutputTensor,
} from './generated/inference/oip/open_inference_grpc.js';
import type { FieldSpec } from './model-manifest.js';
import type { PredictionCall, ScoredInstance } from './prediction-pipeline.js';
import { checkBatch, checkModelRef, checkRequestId, headerUser } from './request-validation.js';

/** ModelInfer's outputs, in the order returned when a request asks for none in particular. */
export const OUTPUTS = [
  { name: 'score', datatype: 'FP32' },
  { name: 'label', datatype: 'INT64' },
  { name: 'group', datatype: 'BYTES' },
  { name: 'action', datatype: 'INT64' },
] as const;

export type OutputName = (typeof OUTPUTS)[number]['name'];

const OUTPUT_NAMES: ReadonlySet<string> = new Set(OUTPUTS.map((o) => o.name));

/** Numeric datatypes a `number` field accepts, with their raw element size in bytes. */
const NUMBER_DATATYPES: Readonly<Record<string, number>> = { INT64: 8, INT32: 4, FP64: 8, FP32: 4 };

/**
 * `content_type` parameters of MLServer's and KServe's codecs that mean "these
 * elements as they are": the pandas codec (`pd` on the request, `str` or
 * `datetime` on BYTES columns) and the numpy codec (`np`). Others (`base64`,
 * for example) would change what the bytes mean, so they are refused.
 */
const PLAIN_CONTENT_TYPES: ReadonlySet<string> = new Set(['pd', 'np', 'str', 'datetime']);

/** The datatype ModelMetadata advertises for a manifest field. */
export function inputDatatype(field: FieldSpec): 'INT64' | 'FP64' | 'BYTES' {
  if (field.type === 'string') return 'BYTES';
  return field.transform?.kind === 'numeric' ? 'FP64' : 'INT64';
}

/** One input tensor that passed the shape checks; its elements are read against a manifest later. */
export interface InputTensor {
  readonly name: string;
  readonly datatype: string;
  /** `raw_input_contents[k]`, or undefined when the request carries typed contents. */
  readonly raw: Buffer | undefined;
  readonly contents: InferTensorContents | undefined;
}

/** A ModelInfer request that passed every check that needs no manifest. */
export interface ValidModelInfer extends PredictionCall {
  readonly requestId: string | undefined;
  /** N: the first dimension every input shares. */
  readonly rows: number;
  readonly inputs: readonly InputTensor[];
  /** The outputs to return, in the order to return them. */
  readonly outputs: readonly OutputName[];
}

function checkContentType(params: { readonly [key: string]: InferParameter }, where: string): void {
  const p = params.content_type;
  if (p === undefined) return;
  if (p.stringParam === undefined || !PLAIN_CONTENT_TYPES.has(p.stringParam)) {
    throw invalidArgument(
      `${where} content_type must be one of ${[...PLAIN_CONTENT_TYPES].join(', ')}: elements are read as they are`,
    );
  }
}

/**
 * The checks of a ModelInfer request that need no manifest, before any lookup:
 * names and ids (as Predict's), the A/B key header, one shape [N] (or [N, 1])
 * shared by every input with N within the batch limit, raw or typed contents
 * (never both), and known, distinct outputs.
 */
export function validateModelInfer(
  req: ModelInferRequest,
  metadata: Metadata,
  maxBatchInstances: number,
): ValidModelInfer {
  const requestId = checkRequestId(req.id, 'id');
  checkModelRef(req.modelName, req.modelVersion, { model: 'model_name', version: 'model_version' });
  checkContentType(req.parameters, 'the request parameter');
  if (req.inputs.length === 0) {
    throw invalidArgument('inputs is empty; send one input per model field (ModelMetadata lists them)');
  }
  const raw = req.rawInputContents;
  if (raw.length > 0) {
    const typed = req.inputs.find((t) => t.contents !== undefined);
    if (typed) {
      throw invalidArgument(
        `input ${typed.name} has typed contents but the request also has raw_input_contents; use one or the other for every input`,
      );
    }
    if (raw.length !== req.inputs.length) {
      throw invalidArgument(
        `raw_input_contents has ${raw.length} entries for ${req.inputs.length} inputs; send one per input, in the order of inputs`,
      );
    }
  }
  let rows: number | undefined;
  const seen = new Set<string>();
  const inputs = req.inputs.map((t, k): InputTensor => {
    if (seen.has(t.name)) throw invalidArgument(`input ${t.name} appears more than once`);
    seen.add(t.name);
    if (raw.length === 0 && t.contents === undefined) {
      throw invalidArgument(`input ${t.name} has no contents and the request has no raw_input_contents`);
    }
    const s = t.shape;
    const n = s[0];
    if (!((s.length === 1 || (s.length === 2 && s[1] === 1)) && n !== undefined && n >= 0)) {
      throw invalidArgument(
        `input ${t.name} has shape [${s.join(', ')}]; each input is one column of N records: shape [N] (or [N, 1])`,
      );
    }
    if (rows !== undefined && n !== rows) {
      throw invalidArgument(`input ${t.name} has ${n} rows but the inputs before it have ${rows}`);
    }
    rows = n;
    checkContentType(t.parameters, `input ${t.name}`);
    return { name: t.name, datatype: t.datatype, raw: raw[k], contents: t.contents };
  });
  checkBatch(rows ?? 0, maxBatchInstances, "the batch (the inputs' shape [N])");

  const outputs: OutputName[] = [];
  for (const o of req.outputs) {
    if (!OUTPUT_NAMES.has(o.name)) {
      throw invalidArgument(
        `unknown output "${o.name.slice(0, 64)}"; the outputs are ${[...OUTPUT_NAMES].join(', ')}`,
      );
    }
    if (outputs.includes(o.name as OutputName)) throw invalidArgument(`output ${o.name} is asked for twice`);
    if (o.parameters.classification !== undefined) {
      throw invalidArgument(`output ${o.name}: the classification extension is not supported`);
    }
    outputs.push(o.name as OutputName);
  }
  return {
    model: req.modelName,
    version: req.modelVersion,
    requestId,
    user: headerUser(metadata),
    rows: rows ?? 0,
    inputs,
    outputs: outputs.length > 0 ? outputs : OUTPUTS.map((o) => o.name),
  };
}

/**
 * Input k's raw elements as numbers. Read through a DataView, little-endian
 * as the spec says: a Buffer from the protobuf decoder is a slice of the
 * message at any byte offset, and a Float64Array or BigInt64Array over it
 * would throw on an unaligned offset (or need a copy first).
 */
function rawNumbers(t: InputTensor, raw: Buffer, n: number): number[] {
  const size = NUMBER_DATATYPES[t.datatype] as number;
  if (raw.length !== n * size) {
    throw invalidArgument(
      `input ${t.name} has shape [${n}] but its raw content has ${raw.length} bytes; ${n} ${t.datatype} elements are ${n * size} bytes`,
    );
  }
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    switch (t.datatype) {
      case 'INT64':
        // Exact below 2^53; beyond, one rounding of the exact sum: the float64 Number(bigint) gives.
        out[i] = view.getInt32(i * 8 + 4, true) * 2 ** 32 + view.getUint32(i * 8, true);
        break;
      case 'INT32':
        out[i] = view.getInt32(i * 4, true);
        break;
      case 'FP64':
        out[i] = view.getFloat64(i * 8, true);
        break;
      default:
        out[i] = view.getFloat32(i * 4, true);
    }
  }
  return out;
}

/**
 * Input k's raw BYTES elements: each a 4-byte little-endian length, then that
 * many bytes, decoded as UTF-8 (invalid sequences become U+FFFD, as the
 * protobuf decoder does for Predict's strings). The elements must fill the
 * buffer exactly.
 */
export function rawStrings(name: string, raw: Buffer, n: number): string[] {
  const out: string[] = new Array(n);
  let at = 0;
  for (let i = 0; i < n; i++) {
    if (at + 4 > raw.length) {
      throw invalidArgument(
        `input ${name} has shape [${n}] but its raw BYTES content ends after ${i} elements (${raw.length} bytes)`,
      );
    }
    const len = raw.readUInt32LE(at);
    at += 4;
    if (len > raw.length - at) {
      throw invalidArgument(
        `input ${name} row ${i}: its length prefix says ${len} bytes but only ${raw.length - at} remain in the raw content`,
      );
    }
    out[i] = raw.toString('utf8', at, at + len);
    at += len;
  }
  if (at !== raw.length) {
    throw invalidArgument(
      `input ${name} has shape [${n}] but its raw BYTES content has ${raw.length - at} bytes after the last element`,
    );
  }
  return out;
}

/** The typed contents field each accepted datatype uses; every other field must be empty. */
const CONTENTS_FIELD: Readonly<Record<string, keyof InferTensorContents>> = {
  INT64: 'int64Contents',
  INT32: 'intContents',
  FP64: 'fp64Contents',
  FP32: 'fp32Contents',
  BYTES: 'bytesContents',
};

const PROTO_FIELD: Readonly<Record<keyof InferTensorContents, string>> = {
  boolContents: 'bool_contents',
  intContents: 'int_contents',
  int64Contents: 'int64_contents',
  uintContents: 'uint_contents',
  uint64Contents: 'uint64_contents',
  fp32Contents: 'fp32_contents',
  fp64Contents: 'fp64_contents',
  bytesContents: 'bytes_contents',
};

function typedElements(t: InputTensor, contents: InferTensorContents, n: number): (number | Buffer)[] {
  const field = CONTENTS_FIELD[t.datatype] as keyof InferTensorContents;
  for (const [k, v] of Object.entries(contents) as [keyof InferTensorContents, unknown[]][]) {
    if (k !== field && v.length > 0) {
      throw invalidArgument(
        `input ${t.name} is ${t.datatype} but its contents fill ${PROTO_FIELD[k]}; ${t.datatype} elements go in ${PROTO_FIELD[field]}`,
      );
    }
  }
  const values = contents[field] as (number | Buffer)[];
  if (values.length !== n) {
    throw invalidArgument(
      `input ${t.name} has shape [${n}] but its contents have ${values.length} elements in ${PROTO_FIELD[field]}`,
    );
  }
  return values;
}

/**
 * The raw records of a validated request, read against one version's manifest
 * fields: every input must name a field and carry a datatype its type
 * accepts, and every required field must have an input. Record i holds row i
 * of every input; fields without an input are missing, so their defaults
 * apply exactly as in Predict. `model` names the version in messages.
 */
export function recordsFromTensors(
  req: ValidModelInfer,
  fields: readonly FieldSpec[],
  model: string,
): Record<string, unknown>[] {
  const n = req.rows;
  const records: Record<string, unknown>[] = new Array(n);
  for (let i = 0; i < n; i++) records[i] = {};
  const byName = new Map(fields.map((f) => [f.name, f]));
  for (const t of req.inputs) {
    const f = byName.get(t.name);
    if (!f) {
      throw invalidArgument(
        `model ${model} has no input "${t.name.slice(0, 64)}"; its inputs are ${fields.map((x) => x.name).join(', ')}`,
      );
    }
    const accepted = f.type === 'string' ? ['BYTES'] : Object.keys(NUMBER_DATATYPES);
    if (!accepted.includes(t.datatype)) {
      throw invalidArgument(
        `input ${t.name} has datatype ${t.datatype.slice(0, 16) || '(none)'}; this ${f.type} field takes ${accepted.join(', ')}`,
      );
    }
    let values: readonly (number | string)[];
    if (t.raw !== undefined) {
      values = t.datatype === 'BYTES' ? rawStrings(t.name, t.raw, n) : rawNumbers(t, t.raw, n);
    } else {
      const typed = typedElements(t, t.contents as InferTensorContents, n);
      values =
        t.datatype === 'BYTES' ? typed.map((b) => (b as Buffer).toString('utf8')) : (typed as number[]);
    }
    for (let i = 0; i < n; i++) (records[i] as Record<string, unknown>)[t.name] = values[i];
  }
  const missing = fields.find((f) => f.required && !req.inputs.some((t) => t.name === f.name));
  if (missing) {
    throw invalidArgument(`input ${missing.name} is required but missing (ModelMetadata lists the inputs)`);
  }
  return records;
}

/**
 * The requested outputs of scored records, every one in `raw_output_contents`
 * (tritonclient's `as_numpy` reads only those), in the order asked for.
 */
export function encodeOutputs(
  predictions: readonly ScoredInstance[],
  names: readonly OutputName[],
): { outputs: ModelInferResponse_InferOutputTensor[]; raw: Buffer[] } {
  const n = predictions.length;
  const outputs: ModelInferResponse_InferOutputTensor[] = [];
  const raw: Buffer[] = [];
  for (const name of names) {
    const datatype = OUTPUTS.find((o) => o.name === name)?.datatype as string;
    let buf: Buffer;
    switch (name) {
      case 'score':
        buf = Buffer.allocUnsafe(4 * n);
        for (let i = 0; i < n; i++) buf.writeFloatLE((predictions[i] as ScoredInstance).score, 4 * i);
        break;
      case 'label':
      case 'action':
        // INT64 0 or 1: the low word, the high word left zero.
        buf = Buffer.alloc(8 * n);
        for (let i = 0; i < n; i++) buf.writeUInt32LE((predictions[i] as ScoredInstance)[name], 8 * i);
        break;
      case 'group': {
        const parts = predictions.map((p) => Buffer.from(p.group, 'utf8'));
        buf = Buffer.allocUnsafe(parts.reduce((s, b) => s + 4 + b.length, 0));
        let at = 0;
        for (const b of parts) {
          buf.writeUInt32LE(b.length, at);
          b.copy(buf, at + 4);
          at += 4 + b.length;
        }
        break;
      }
    }
    outputs.push({ name, datatype, shape: [n], parameters: {}, contents: undefined });
    raw.push(buf);
  }
  return { outputs, raw };
}
