/**
 * Raw record → model input row, exactly as the manifest declares (see
 * models/README.md, "Fields and transforms"). The Python pipeline implements
 * the same contract, and the golden vectors shipped with every version prove
 * the two agree: training/serving skew is the most common silent bug here.
 */
import { FieldError } from './errors.js';
import { columnsOf, type FieldSpec, type Manifest } from './model-manifest.js';

const MS_PER_DAY = 86_400_000;
const MS_PER_YEAR = 365.25 * MS_PER_DAY;
const FLOAT32_MAX = 3.4028234663852886e38;

/** 32-bit FNV-1a over the UTF-8 bytes of `s`, unsigned. */
export function fnv1a32(s: string): number {
  let h = 0x811c9dc5;
  // Hashed on the request path for every instance: ASCII (the usual case) is
  // its own UTF-8, so only other text pays for an encoded copy.
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0x7f) return fnv1a32Bytes(Buffer.from(s, 'utf8'));
    h = Math.imul(h ^ c, 0x01000193) >>> 0;
  }
  return h;
}

function fnv1a32Bytes(bytes: Uint8Array): number {
  let h = 0x811c9dc5;
  for (const byte of bytes) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h;
}

const ISO_DATE =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?(Z|[+-]\d{2}:?\d{2})?$/;

/**
 * Parses an ISO 8601 date-time strictly (the subset in models/README.md) and
 * returns epoch milliseconds, or undefined. `Date.parse` is not used: it
 * accepts far more than the contract and varies by engine.
 */
export function parseIsoDate(s: string): number | undefined {
  const m = ISO_DATE.exec(s);
  if (!m) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const [hour, minute, second] = [Number(m[4] ?? 0), Number(m[5] ?? 0), Number(m[6] ?? 0)];
  const ms = m[7] ? Number(m[7].slice(0, 3).padEnd(3, '0')) : 0;
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 59) return undefined;
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (day > daysInMonth) return undefined;
  let offsetMin = 0;
  const zone = m[8];
  if (zone && zone !== 'Z') {
    const sign = zone[0] === '-' ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = Number(digits.slice(2, 4));
    if (oh > 23 || om > 59) return undefined;
    offsetMin = sign * (oh * 60 + om);
  }
  const utc = Date.UTC(year, month - 1, day, hour, minute, second, ms);
  // Date.UTC maps years 0-99 to 1900-1999; the contract's years are literal.
  const fixed = year < 100 ? new Date(utc).setUTCFullYear(year) : utc;
  return fixed - offsetMin * 60_000;
}

function categoryKey(v: number | string): string {
  if (typeof v === 'string') return v;
  if (!Number.isInteger(v)) throw new FieldError('', `must be an integer to be used as a category, got ${v}`);
  return v.toFixed(0);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : Number.isFinite(v) ? 'a number' : 'Infinity';
  return typeof v === 'string' ? 'a string' : typeof v === 'object' ? 'an object' : typeof v;
}

/** A compiled preprocessing plan for one manifest: built once per loaded version. */
export class Preprocessor {
  /** Model input columns per instance. */
  readonly width: number;
  private readonly fields: readonly FieldSpec[];
  private readonly vocabIndex: ReadonlyMap<string, ReadonlyMap<string, number>>;

  constructor(manifest: Pick<Manifest, 'fields'>) {
    this.fields = manifest.fields;
    this.width = manifest.fields.reduce((n, f) => n + columnsOf(f.transform), 0);
    const vocab = new Map<string, ReadonlyMap<string, number>>();
    for (const f of manifest.fields) {
      if (f.transform?.kind === 'vocabulary')
        vocab.set(f.name, new Map(f.transform.values.map((v, i) => [v, i])));
    }
    this.vocabIndex = vocab;
  }

  /**
   * Writes instance `record`'s columns into `out` at `offset`. Throws
   * `FieldError` naming the field on any value the contract rejects.
   * `nowMs` is the request time used by `age` transforms.
   */
  fill(record: Readonly<Record<string, unknown>>, nowMs: number, out: Float32Array, offset: number): void {
    let col = offset;
    for (const f of this.fields) {
      let value = record[f.name];
      if (value === undefined) {
        if (f.required) throw new FieldError(f.name, 'is required but missing');
        value = f.default;
        if (value === undefined) continue;
      }
      if (typeof value !== f.type || (typeof value === 'number' && !Number.isFinite(value))) {
        throw new FieldError(f.name, `must be a finite ${f.type}, got ${describe(value)}`);
      }
      const t = f.transform;
      if (!t) continue;
      const v = value as number | string;
      switch (t.kind) {
        case 'numeric':
          // Model inputs are float32: a larger magnitude would become Infinity.
          if (Math.abs(v as number) > FLOAT32_MAX) {
            throw new FieldError(f.name, `must be within ±${FLOAT32_MAX} (float32), got ${v}`);
          }
          out[col] = v as number;
          break;
        case 'age': {
          const at = parseIsoDate(v as string);
          if (at === undefined)
            throw new FieldError(f.name, `must be an ISO 8601 date, got "${truncate(v as string)}"`);
          out[col] = (nowMs - at) / (t.unit === 'years' ? MS_PER_YEAR : MS_PER_DAY);
          break;
        }
        case 'screen': {
          const m = /^(\d{1,6})\*(\d{1,6})$/.exec(v as string);
          if (!m) throw new FieldError(f.name, `must look like "720*1440", got "${truncate(v as string)}"`);
          out[col] = Number(m[1]);
          out[col + 1] = Number(m[2]);
          break;
        }
        case 'vocabulary': {
          const key = keyOf(f.name, v);
          const idx = this.vocabIndex.get(f.name)?.get(key) ?? t.values.length;
          out.fill(0, col, col + t.values.length + 1);
          out[col + idx] = 1;
          break;
        }
        case 'hash': {
          out.fill(0, col, col + t.buckets);
          out[col + (fnv1a32(keyOf(f.name, v)) % t.buckets)] = 1;
          break;
        }
      }
      col += columnsOf(t);
    }
  }
}

function keyOf(field: string, v: number | string): string {
  try {
    return categoryKey(v);
  } catch (err) {
    throw new FieldError(field, (err as FieldError).reason);
  }
}

function truncate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
