/**
 * The model manifest (`model.json`), schemaVersion 1, as described in
 * models/README.md. Parsing validates everything the server relies on, so a
 * bad manifest fails the load of that version, never a request.
 */

export type FieldType = 'number' | 'string';

export type Transform =
  | { readonly kind: 'numeric' }
  | { readonly kind: 'vocabulary'; readonly values: readonly string[] }
  | { readonly kind: 'hash'; readonly buckets: number }
  | { readonly kind: 'age'; readonly unit: 'years' | 'days' }
  | { readonly kind: 'screen' };

/**
 * Inclusive bounds on the value a field's column takes (numeric: the number;
 * age: the age in the transform's unit; screen: width and height each). A
 * bound the manifest leaves out is -Infinity or Infinity.
 */
export interface FieldRange {
  readonly min: number;
  readonly max: number;
}

/** Transform kinds whose column a `range` can bound. */
export const RANGED_KINDS: ReadonlySet<Transform['kind']> = new Set(['numeric', 'age', 'screen']);

export interface FieldSpec {
  readonly name: string;
  readonly type: FieldType;
  readonly required: boolean;
  /** Raw value used when an optional field is missing. */
  readonly default: number | string | undefined;
  readonly transform: Transform | undefined;
  readonly range: FieldRange | undefined;
}

export interface Manifest {
  readonly schemaVersion: 1;
  readonly name: string;
  readonly version: string;
  readonly family: string;
  readonly pipelineVersion: string;
  readonly trainedAt: string;
  readonly sha256: string;
  readonly dataHash: string;
  readonly threshold: number;
  readonly onnx: { readonly input: string; readonly output: string; readonly positiveIndex: number };
  readonly fields: readonly FieldSpec[];
  readonly featureNames: readonly string[];
  readonly metrics: Readonly<Record<string, number>>;
}

/**
 * The top-level keys of a schemaVersion 1 manifest (models/README.md), plus
 * `speed`, the latency table the pipeline adds (scripts/lib/pipeline/training.py).
 */
export const MANIFEST_KEYS: ReadonlySet<string> = new Set([
  'schemaVersion',
  'name',
  'version',
  'family',
  'pipelineVersion',
  'trainedAt',
  'sha256',
  'dataHash',
  'threshold',
  'onnx',
  'fields',
  'featureNames',
  'metrics',
  'speed',
]);

/** Version directory names: the UTC end of training, `YYYYMMDDTHHMMSSZ`. */
export const VERSION_PATTERN = /^\d{8}T\d{6}Z$/;

/** Number of model input columns a transform produces. */
export function columnsOf(t: Transform | undefined): number {
  if (!t) return 0;
  switch (t.kind) {
    case 'numeric':
    case 'age':
      return 1;
    case 'screen':
      return 2;
    case 'vocabulary':
      return t.values.length + 1;
    case 'hash':
      return t.buckets;
  }
}

/** A manifest that breaks the schema; the message names the entry. */
export class ManifestError extends Error {
  override name = 'ManifestError';
}

function obj(v: unknown, where: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new ManifestError(`${where} must be an object`);
  return v as Record<string, unknown>;
}

function string(v: unknown, where: string): string {
  if (typeof v !== 'string' || v === '') throw new ManifestError(`${where} must be a non-empty string`);
  return v;
}

function finite(v: unknown, where: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new ManifestError(`${where} must be a finite number`);
  return v;
}

function parseTransform(v: unknown, where: string, type: FieldType): Transform | undefined {
  if (v === undefined || v === null) return undefined;
  const t = obj(v, where);
  const kind = t.kind;
  const need = (want: FieldType) => {
    if (type !== want) throw new ManifestError(`${where}: ${String(kind)} needs a ${want} field`);
  };
  switch (kind) {
    case 'numeric':
      need('number');
      return { kind };
    case 'screen':
      need('string');
      return { kind };
    case 'age': {
      need('string');
      if (t.unit !== 'years' && t.unit !== 'days')
        throw new ManifestError(`${where}.unit must be years or days`);
      return { kind, unit: t.unit };
    }
    case 'vocabulary': {
      if (
        !Array.isArray(t.values) ||
        t.values.length === 0 ||
        !t.values.every((x) => typeof x === 'string')
      ) {
        throw new ManifestError(`${where}.values must be a non-empty list of strings`);
      }
      // A repeated value would have two columns; which one is hot is not defined.
      if (new Set(t.values).size !== t.values.length)
        throw new ManifestError(`${where}.values must not repeat a value`);
      return { kind, values: Object.freeze([...(t.values as string[])]) };
    }
    case 'hash': {
      const b = finite(t.buckets, `${where}.buckets`);
      if (!Number.isInteger(b) || b < 1 || b > 1_000_000)
        throw new ManifestError(`${where}.buckets must be 1..1e6`);
      return { kind, buckets: b };
    }
    default:
      throw new ManifestError(`${where}.kind "${String(kind)}" is not a known transform`);
  }
}

function parseRange(v: unknown, where: string, transform: Transform | undefined): FieldRange | undefined {
  if (v === undefined) return undefined;
  if (!transform || !RANGED_KINDS.has(transform.kind))
    throw new ManifestError(`${where} is only allowed on numeric, age and screen transforms`);
  const r = obj(v, where);
  const keys = Object.keys(r);
  if (keys.length === 0 || keys.some((k) => k !== 'min' && k !== 'max'))
    throw new ManifestError(`${where} must have min and/or max and nothing else`);
  const min = r.min === undefined ? Number.NEGATIVE_INFINITY : finite(r.min, `${where}.min`);
  const max = r.max === undefined ? Number.POSITIVE_INFINITY : finite(r.max, `${where}.max`);
  if (min > max) throw new ManifestError(`${where}.min must not exceed ${where}.max`);
  return Object.freeze({ min, max });
}

function parseField(v: unknown, i: number): FieldSpec {
  const where = `fields[${i}]`;
  const f = obj(v, where);
  const name = string(f.name, `${where}.name`);
  // Records are read as record[name]: an inherited name would never be missing.
  if (name in Object.prototype)
    throw new ManifestError(`${where}.name "${name}" is a name every JavaScript object inherits`);
  if (f.type !== 'number' && f.type !== 'string')
    throw new ManifestError(`${where}.type must be number or string`);
  const type: FieldType = f.type;
  if (f.required !== undefined && typeof f.required !== 'boolean')
    throw new ManifestError(`${where}.required must be true or false`);
  const required = f.required === true;
  const transform = parseTransform(f.transform, `${where}.transform`, type);
  let dflt: number | string | undefined;
  if (f.default !== undefined) {
    // Checked against the transform and range when the Preprocessor is built.
    if (typeof f.default !== type || (type === 'number' && !Number.isFinite(f.default)))
      throw new ManifestError(`${where}.default must be a ${type === 'number' ? 'finite number' : type}`);
    if (!required) dflt = f.default as number | string;
  } else if (!required && transform) {
    throw new ManifestError(`${where}.default must be a ${type} for an optional field with a transform`);
  }
  return {
    name,
    type,
    required,
    default: dflt,
    transform,
    range: parseRange(f.range, `${where}.range`, transform),
  };
}

/**
 * Parses and validates a manifest. `expect` is the model name and version the
 * directory layout implies; the manifest must agree with them.
 */
export function parseManifest(json: unknown, expect: { name: string; version: string }): Manifest {
  const m = obj(json, 'manifest');
  if (m.schemaVersion !== 1) throw new ManifestError('schemaVersion must be 1');
  // A manifest is what the pipeline writes and nothing else: unknown content (a
  // 300 MB padding key, a typo) is refused rather than carried into memory.
  const unknown = Object.keys(m).filter((k) => !MANIFEST_KEYS.has(k));
  if (unknown.length > 0) {
    throw new ManifestError(
      `unknown top-level ${unknown.length === 1 ? 'key' : 'keys'} ${unknown
        .slice(0, 5)
        .map((k) => JSON.stringify(k.slice(0, 64)))
        .join(', ')}${unknown.length > 5 ? ', …' : ''} (allowed: ${[...MANIFEST_KEYS].join(', ')})`,
    );
  }
  const name = string(m.name, 'name');
  const version = string(m.version, 'version');
  if (name !== expect.name)
    throw new ManifestError(`name "${name}" does not match directory "${expect.name}"`);
  if (version !== expect.version) {
    throw new ManifestError(`version "${version}" does not match directory "${expect.version}"`);
  }
  const sha256 = string(m.sha256, 'sha256').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new ManifestError('sha256 must be 64 hex digits');
  const threshold = finite(m.threshold, 'threshold');
  if (threshold < 0 || threshold > 1) throw new ManifestError('threshold must be within [0, 1]');
  const onnx = obj(m.onnx, 'onnx');
  const positiveIndex = finite(onnx.positiveIndex ?? 1, 'onnx.positiveIndex');
  if (!Number.isInteger(positiveIndex) || positiveIndex < 0)
    throw new ManifestError('onnx.positiveIndex must be ≥ 0');
  if (!Array.isArray(m.fields) || m.fields.length === 0)
    throw new ManifestError('fields must be a non-empty list');
  const fields = m.fields.map(parseField);
  const names = new Set<string>();
  for (const f of fields) {
    if (names.has(f.name)) throw new ManifestError(`field "${f.name}" is declared twice`);
    names.add(f.name);
  }
  const width = fields.reduce((n, f) => n + columnsOf(f.transform), 0);
  if (width === 0) throw new ManifestError('no field has a transform, so the model would get no inputs');
  const featureNames = Array.isArray(m.featureNames)
    ? m.featureNames.map((x, i) => string(x, `featureNames[${i}]`))
    : [];
  if (featureNames.length !== width) {
    throw new ManifestError(
      `featureNames has ${featureNames.length} entries but the fields produce ${width} columns`,
    );
  }
  const metrics: Record<string, number> = {};
  if (m.metrics !== undefined) {
    for (const [k, v] of Object.entries(obj(m.metrics, 'metrics'))) {
      if (typeof v === 'number' && Number.isFinite(v)) metrics[k] = v;
    }
  }
  return Object.freeze({
    schemaVersion: 1,
    name,
    version,
    family: typeof m.family === 'string' ? m.family : 'unknown',
    pipelineVersion: typeof m.pipelineVersion === 'string' ? m.pipelineVersion : '',
    trainedAt: typeof m.trainedAt === 'string' ? m.trainedAt : '',
    sha256,
    dataHash: typeof m.dataHash === 'string' ? m.dataHash : '',
    threshold,
    onnx: Object.freeze({
      input: string(onnx.input, 'onnx.input'),
      output: string(onnx.output, 'onnx.output'),
      positiveIndex,
    }),
    fields: Object.freeze(fields),
    featureNames: Object.freeze(featureNames),
    metrics: Object.freeze(metrics),
  });
}
