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

const DASH = 0x2d;
const COLON = 0x3a;
const DOT = 0x2e;
const PLUS = 0x2b;
const LETTER_T = 0x54;
const LETTER_Z = 0x5a;
const SPACE = 0x20;

/** Value of the `n` ASCII digits of `s` at `at`, or -1 (also past the end: NaN). */
function digits(s: string, at: number, n: number): number {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const d = s.charCodeAt(i) - 48;
    if (!(d >= 0 && d <= 9)) return -1;
    v = v * 10 + d;
  }
  return v;
}

const DAYS_IN_MONTH = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function daysInMonth(year: number, month: number): number {
  if (month !== 2) return DAYS_IN_MONTH[month] as number;
  // Proleptic Gregorian: year 0000 is a leap year like 2000.
  return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28;
}

/** Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil). */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month > 2 ? month - 3 : month + 9) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146_097 + doe - 719_468;
}

/**
 * Parses an ISO 8601 date-time of the contract's grammar (models/README.md,
 * "Dates") and returns epoch milliseconds, or undefined. A hand scanner: no
 * match array or substrings per request field. `Date.parse` is not used: it
 * accepts far more than the contract and varies by engine, and `Date.UTC`
 * maps years 0-99 to 1900-1999.
 */
export function parseIsoDate(s: string): number | undefined {
  const len = s.length;
  if (len < 10 || s.charCodeAt(4) !== DASH || s.charCodeAt(7) !== DASH) return undefined;
  const year = digits(s, 0, 4);
  const month = digits(s, 5, 2);
  const day = digits(s, 8, 2);
  if (year < 0 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  let ms = daysFromCivil(year, month, day) * MS_PER_DAY;
  if (len === 10) return ms; // a date alone; a zone needs a time part
  const sep = s.charCodeAt(10);
  if ((sep !== LETTER_T && sep !== SPACE) || s.charCodeAt(13) !== COLON) return undefined;
  const hour = digits(s, 11, 2);
  const minute = digits(s, 14, 2);
  if (hour < 0 || hour > 23 || minute < 0 || minute > 59) return undefined;
  ms += hour * 3_600_000 + minute * 60_000;
  let i = 16;
  if (s.charCodeAt(i) === COLON) {
    const second = digits(s, i + 1, 2);
    if (second < 0 || second > 59) return undefined;
    ms += second * 1000;
    i += 3;
    if (s.charCodeAt(i) === DOT) {
      // 1 to 9 digits, truncated to milliseconds.
      const start = ++i;
      let frac = 0;
      for (; i < len; i++) {
        const d = s.charCodeAt(i) - 48;
        if (!(d >= 0 && d <= 9)) break;
        if (i - start < 3) frac = frac * 10 + d;
      }
      const n = i - start;
      if (n < 1 || n > 9) return undefined;
      ms += n === 1 ? frac * 100 : n === 2 ? frac * 10 : frac;
    }
  }
  if (i === len) return ms; // no zone: UTC
  const zone = s.charCodeAt(i);
  if (zone === LETTER_Z) return i + 1 === len ? ms : undefined;
  if (zone !== PLUS && zone !== DASH) return undefined;
  const colon = s.charCodeAt(i + 3) === COLON ? 1 : 0;
  const zh = digits(s, i + 1, 2);
  const zm = digits(s, i + 3 + colon, 2);
  if (i + 5 + colon !== len || zh < 0 || zh > 23 || zm < 0 || zm > 59) return undefined;
  const offsetMs = (zh * 60 + zm) * 60_000;
  return zone === DASH ? ms + offsetMs : ms - offsetMs;
}

/** Largest width or height digit count: `"<W>*<H>"` of 1-6 ASCII digits each. */
export const SCREEN_MAX_DIGITS = 6;

/** Value of the digits s[from, to) as one side of a screen size, or -1. */
function screenSide(s: string, from: number, to: number): number {
  return to - from >= 1 && to - from <= SCREEN_MAX_DIGITS ? digits(s, from, to - from) : -1;
}

/** A category key: strings as is, integers the float64 wire carries exactly in decimal. */
function keyOf(field: string, v: number | string): string {
  if (typeof v === 'string') return v;
  if (!Number.isSafeInteger(v)) {
    throw new FieldError(field, `must be an integer within ±(2^53-1) to be used as a category, got ${v}`);
  }
  return String(v); // -0 is "0"
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'number') return Number.isNaN(v) ? 'NaN' : Number.isFinite(v) ? 'a number' : 'Infinity';
  return typeof v === 'string' ? 'a string' : typeof v === 'object' ? 'an object' : typeof v;
}

/** Throws unless `x` (a column value in float64) lies within the field's range. */
function checkRange(f: FieldSpec, what: string, x: number): void {
  const r = f.range;
  if (r !== undefined && (x < r.min || x > r.max)) {
    throw new FieldError(f.name, `${what} ${x} is outside the manifest's range [${r.min}, ${r.max}]`);
  }
}

/** A compiled preprocessing plan for one manifest: built once per loaded version. */
export class Preprocessor {
  /** Model input columns per instance. */
  readonly width: number;
  private readonly fields: readonly FieldSpec[];
  /** Per field (same index): the vocabulary's value → position, for vocabulary fields. */
  private readonly vocabIndex: readonly (ReadonlyMap<string, number> | undefined)[];

  /**
   * Compiles `manifest.fields`. Throws `FieldError` naming a field whose
   * default its own transform or range refuses (a manifest error: every record
   * that omits the field would be refused).
   */
  constructor(manifest: Pick<Manifest, 'fields'>) {
    this.fields = manifest.fields;
    this.width = manifest.fields.reduce((n, f) => n + columnsOf(f.transform), 0);
    this.vocabIndex = manifest.fields.map((f) =>
      f.transform?.kind === 'vocabulary' ? new Map(f.transform.values.map((v, i) => [v, i])) : undefined,
    );
    const scratch = new Float32Array(this.width);
    for (const [k, f] of this.fields.entries()) {
      // No request time yet (NaN): an age's range, relative to it, cannot fail here.
      if (f.default === undefined) continue;
      try {
        this.write(k, f.default, Number.NaN, scratch, 0);
      } catch (err) {
        if (err instanceof FieldError) throw new FieldError(f.name, `default is refused: ${err.reason}`);
        throw err;
      }
    }
  }

  /**
   * Writes instance `record`'s columns into `out` at `offset`. Throws
   * `FieldError` naming the first field (in manifest order) the contract
   * rejects. `nowMs` is the request time used by `age` transforms.
   */
  fill(record: Readonly<Record<string, unknown>>, nowMs: number, out: Float32Array, offset: number): void {
    let col = offset;
    const fields = this.fields;
    for (let k = 0; k < fields.length; k++) {
      const f = fields[k] as FieldSpec;
      // Manifests cannot name inherited properties (parseManifest), so for the
      // plain objects the Struct decoder builds this is the own value or undefined.
      let value = record[f.name];
      if (value === undefined) {
        if (f.required) throw new FieldError(f.name, 'is required but missing');
        value = f.default;
        if (value === undefined) continue;
      }
      col = this.write(k, value, nowMs, out, col);
    }
  }

  /** Checks field `k`'s raw value and writes its columns at `col`; returns the next column. */
  private write(k: number, value: unknown, nowMs: number, out: Float32Array, col: number): number {
    const f = this.fields[k] as FieldSpec;
    if (typeof value !== f.type || (typeof value === 'number' && !Number.isFinite(value))) {
      throw new FieldError(f.name, `must be a finite ${f.type}, got ${describe(value)}`);
    }
    const t = f.transform;
    if (!t) return col;
    switch (t.kind) {
      case 'numeric': {
        const x = value as number;
        // Model inputs are float32: a larger magnitude would become Infinity.
        if (Math.abs(x) > FLOAT32_MAX) {
          throw new FieldError(f.name, `must be within ±${FLOAT32_MAX} (float32), got ${x}`);
        }
        checkRange(f, 'value', x);
        out[col] = x;
        return col + 1;
      }
      case 'age': {
        const at = parseIsoDate(value as string);
        if (at === undefined)
          throw new FieldError(f.name, `must be an ISO 8601 date, got "${truncate(value as string)}"`);
        const age = (nowMs - at) / (t.unit === 'years' ? MS_PER_YEAR : MS_PER_DAY);
        checkRange(f, `age in ${t.unit}`, age);
        out[col] = age;
        return col + 1;
      }
      case 'screen': {
        const s = value as string;
        const star = s.indexOf('*');
        const w = star < 0 ? -1 : screenSide(s, 0, star);
        const h = w < 0 ? -1 : screenSide(s, star + 1, s.length);
        if (h < 0) {
          throw new FieldError(
            f.name,
            `must look like "720*1440" (1-${SCREEN_MAX_DIGITS} digits each), got "${truncate(s)}"`,
          );
        }
        checkRange(f, 'width', w);
        checkRange(f, 'height', h);
        out[col] = w;
        out[col + 1] = h;
        return col + 2;
      }
      case 'vocabulary': {
        const idx = this.vocabIndex[k]?.get(keyOf(f.name, value as number | string)) ?? t.values.length;
        out.fill(0, col, col + t.values.length + 1);
        out[col + idx] = 1;
        return col + t.values.length + 1;
      }
      case 'hash': {
        out.fill(0, col, col + t.buckets);
        out[col + (fnv1a32(keyOf(f.name, value as number | string)) % t.buckets)] = 1;
        return col + t.buckets;
      }
    }
  }
}

function truncate(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}…` : s;
}
