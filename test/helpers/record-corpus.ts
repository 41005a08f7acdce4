/**
 * A seeded generator of raw records for the differential preprocessing test
 * (test/e2e/preprocess-parity.test.ts): valid records of any
 * manifest, each then bent in the way of one divergence class (odd dates,
 * zones, leap days, extreme years, digit runs, category numbers, float32
 * edges, wrong types, null, NaN, missing fields, unicode, extra fields, range
 * bounds). The generator knows nothing of the expected verdict: the two
 * implementations decide, the test compares them.
 */

import { mulberry32 } from '../../scripts/lib/random.js';
import type { FieldSpec } from '../../server/model-manifest.js';

/** Every class the corpus covers, and what its records are expected to be. */
export const CLASSES = {
  /** Valid records in every accepted date, zone and number spelling. */
  valid: 'accept',
  /** One date mutated: parts cut, added, swapped, misspelt; zone without time. */
  'date-grammar': 'mixed',
  /** Valid and invalid zone offsets. */
  zones: 'mixed',
  /** Feb 28/29/30 over years 0000-9999, the century rules included. */
  'leap-days': 'mixed',
  /** Years 0000-0099 (Date.UTC's 19xx trap), 1969/1970, 9999, instants before year 0. */
  'extreme-years': 'mixed',
  /** Screen sizes: digit runs of 0-9 digits, signs, separators, unicode digits. */
  screen: 'mixed',
  /** Numbers as category keys: integral floats, fractions, -0, beyond 2^53, 1e21. */
  'category-numbers': 'mixed',
  /** float32 overflow, subnormals, float64 extremes. */
  'number-extremes': 'mixed',
  /** A value of the other JSON type (booleans among them: Python's bool is an int). */
  'wrong-types': 'reject',
  /** A present null (not the same as missing). */
  null: 'reject',
  /** NaN, Infinity, -Infinity. */
  'non-finite': 'reject',
  /** Fields left out (required: refused; optional: the default). */
  missing: 'mixed',
  /** Unicode text: astral, combining, NFC/NFD, lone surrogates, NUL, U+2028; digits of other scripts. */
  unicode: 'mixed',
  /** Unknown extra keys, __proto__ and other inherited names among them. */
  'extra-fields': 'accept',
  /** Values on, and just beyond, the manifest's range bounds. */
  'range-bounds': 'mixed',
} as const;

export type CorpusClass = keyof typeof CLASSES;

/** One generated record, the class it stands for and the field it bent (if one). */
export interface CorpusRecord {
  readonly cls: CorpusClass;
  readonly field: string | undefined;
  readonly record: Record<string, unknown>;
}

const MS_PER_DAY = 86_400_000;
const UNIT_MS = { years: 365.25 * MS_PER_DAY, days: MS_PER_DAY } as const;
const FLOAT32_MAX = 3.4028234663852886e38;
const YEAR_0 = -62_167_219_200_000; // 0000-01-01T00:00:00Z
const YEAR_10000 = 253_402_300_800_000; // 10000-01-01T00:00:00Z

/** A seeded generator of test cases (mulberry32 underneath). */
export class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)] as T;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

const pad = (n: number, w: number) => String(n).padStart(w, '0');

/** Formats epoch ms `t` in a random spelling the contract accepts (value kept to the ms where the spelling can). */
function formatDate(rng: Rng, t: number, allowDateOnly = true): string {
  const offsetMin = rng.chance(0.5) ? 0 : rng.int(-(23 * 60 + 59), 23 * 60 + 59);
  const local = new Date(t + offsetMin * 60_000);
  const y = local.getUTCFullYear();
  if (y < 0 || y > 9999)
    return formatDate(rng, Math.min(Math.max(t, YEAR_0 + MS_PER_DAY), YEAR_10000 - MS_PER_DAY));
  const date = `${pad(y, 4)}-${pad(local.getUTCMonth() + 1, 2)}-${pad(local.getUTCDate(), 2)}`;
  if (offsetMin === 0 && allowDateOnly && rng.chance(0.1)) return date;
  let time = `${pad(local.getUTCHours(), 2)}:${pad(local.getUTCMinutes(), 2)}`;
  if (rng.chance(0.85)) {
    time += `:${pad(local.getUTCSeconds(), 2)}`;
    if (rng.chance(0.7)) {
      const n = rng.int(1, 9);
      const ms = pad(local.getUTCMilliseconds(), 3);
      time += `.${n <= 3 ? ms.slice(0, n) : ms + Array.from({ length: n - 3 }, () => rng.int(0, 9)).join('')}`;
    }
  }
  const sep = rng.chance(0.8) ? 'T' : ' ';
  let zone: string;
  if (offsetMin === 0) {
    zone = rng.pick(['', 'Z', '+00:00', '+0000', '-00:00', '-0000']);
  } else {
    const a = Math.abs(offsetMin);
    const colon = rng.chance(0.5) ? ':' : '';
    zone = `${offsetMin < 0 ? '-' : '+'}${pad(Math.floor(a / 60), 2)}${colon}${pad(a % 60, 2)}`;
  }
  return `${date}${sep}${time}${zone}`;
}

const OTHER_DIGITS = ['０', '٠', '۳', '५', '๑', '²', '𝟘', '①'];
const ODD_CHARS = [
  ' ',
  '\t',
  '\n',
  '\u00a0',
  '\u2028',
  '\u0000',
  'T',
  't',
  'Z',
  'z',
  ':',
  '-',
  '+',
  '.',
  '/',
  '٣',
  '０',
];

function mutateString(rng: Rng, s: string): string {
  const i = rng.int(0, s.length);
  switch (rng.int(0, 5)) {
    case 0:
      return s.slice(0, i); // truncated
    case 1:
      return s.slice(0, i) + rng.pick(ODD_CHARS) + s.slice(i); // a character inserted
    case 2:
      return s.slice(0, i) + s.slice(i + 1); // one removed
    case 3:
      return s.slice(0, i) + rng.pick(ODD_CHARS) + s.slice(i + 1); // one replaced
    case 4: {
      const d = [...s].map((c, k) => ({ c, k })).filter(({ c }) => c >= '0' && c <= '9');
      if (d.length === 0) return `${s}0`;
      const k = rng.pick(d).k;
      return s.slice(0, k) + rng.pick(OTHER_DIGITS) + s.slice(k + 1); // a digit of another script
    }
    default:
      return rng.chance(0.5) ? ` ${s}` : `${s}${rng.pick([' ', '\n', 'Z', '\u0000'])}`;
  }
}

const GRAMMAR_CASES = [
  '1995-04-29+05:30',
  '1995-04-29-0800',
  '1995-04-29Z',
  '1995-04-29T00:00:00.000+0000',
  '1995-04-29t00:00:00z',
  '1995-04-29T00:00:00.Z',
  '1995-04-29T00:00:00.0000000000Z',
  '1995-04-29T00:00.123Z',
  '1995-04-29T24:00',
  '1995-04-29T23:60',
  '1995-04-29T23:59:60Z',
  '1995-04-29T99:00',
  '1995-00-10',
  '1995-13-01',
  '1995-04-00',
  '1995-04-31',
  '1995-4-29',
  '95-04-29',
  '+01995-04-29',
  '-0001-01-01',
  '19950-04-29',
  '19950429',
  '1995/04/29',
  '1995-W17-6',
  '1995-119',
  '1995-04-29T',
  '1995-04-29T00',
  '1995-04-29T0000',
  '1995-04-29  00:00',
  '1995-04-29T00:00:00+05',
  '1995-04-29T00:00:00+5:30',
  '1995-04-29T00:00:00+05:3',
  '1995-04-29T00:00:00+05:30:00',
  '1995-04-29T00:00:00 UTC',
  '1995-04-29T00:00:00 Z',
  '1995-04-29T00:00:00ZZ',
  '1995-04-29T00:00:00+0530Z',
  '',
  'yesterday',
  'NaN',
  '0',
];

const LEAP_YEARS = [
  0, 4, 100, 200, 400, 1600, 1700, 1800, 1900, 1904, 1996, 2000, 2004, 2024, 2100, 2400, 9996, 9999,
];
const ZONES_BAD = [
  '+24:00',
  '-24:00',
  '+23:60',
  '+2400',
  '+99:99',
  '+12:5',
  '+1',
  '+123',
  '+12345',
  '±05:30',
  '−05:30',
];
const ZONES_EDGE = [
  '+23:59',
  '-23:59',
  '+2359',
  '-2359',
  '+00:00',
  '-00:00',
  '+0000',
  'Z',
  '+14:00',
  '-12:00',
  '+05:45',
];

const EXTREME_DATES = [
  '0000-01-01',
  '0000-01-01T00:00:00Z',
  '0000-01-01T00:00+23:59',
  '0000-01-01T00:00-23:59',
  '0000-02-29',
  '0000-03-01',
  '0001-01-01T00:00:00.000Z',
  '0050-06-15T12:00:00Z',
  '0099-12-31T23:59:59.999Z',
  '0100-01-01',
  '1000-01-01',
  '1899-12-31T23:59:59Z',
  '1900-01-01',
  '1969-12-31T23:59:59.999Z',
  '1970-01-01T00:00:00Z',
  '2038-01-19T03:14:08Z',
  '9999-12-31',
  '9999-12-31T23:59:59.999Z',
  '9999-12-31T23:59:59.999-23:59',
  '9999-01-01T00:00:00.000+0000',
];

const SCREEN_SIDES = ['', '0', '00', '000000', '0000000', '720', '0720', '999999', '1000000', '9999999999'];
const SCREEN_ODD = [
  '720x1440',
  '720X1440',
  '720×1440',
  '720＊1440',
  '720**1440',
  '720*1440*2',
  '*',
  '*1440',
  '720*',
  ' 720*1440',
  '720*1440 ',
  '720 * 1440',
  '+720*1440',
  '-720*1440',
  '720.0*1440',
  '7e2*1440',
  '٧٢٠*١٤٤٠',
  '７２０*1440',
  '720*1440\n',
  '0x2D0*1440',
];

const TWO_53 = 2 ** 53;
const CATEGORY_NUMBERS = [
  0,
  -0,
  1,
  -1,
  182,
  182.0,
  182.5,
  1e-7,
  -5e-324,
  TWO_53 - 1,
  TWO_53,
  -(TWO_53 - 1),
  -TWO_53,
  TWO_53 + 2,
  1.5e16,
  4503599627370495.5,
  1e21,
  -1e21,
  1e300,
  Number.MAX_VALUE,
  20000,
  20001,
  2.0000000000000004,
];

const NUMBER_EXTREMES = [
  FLOAT32_MAX,
  -FLOAT32_MAX,
  3.4028235e38,
  3.4028235677973366e38,
  3.402823567797337e38,
  1e39,
  -1e39,
  Number.MAX_VALUE,
  -Number.MAX_VALUE,
  Number.MIN_VALUE,
  1e-45,
  1.401298464324817e-45,
  7e-46,
  -0,
  TWO_53 + 2,
  1e21,
  0.1,
  1 / 3,
  123456789.123,
];

const UNICODE_TEXT = [
  '华为-P40 Pro ✓',
  'é',
  'e\u0301',
  '😀',
  '\ud83d\ude00',
  '\ud83d',
  '\ude00',
  'a\ud800b',
  '\udc00\ud800',
  '👩‍👩‍👧',
  '\u0000',
  'line\u2028sep',
  '\ufeffBOM',
  '\ufffd',
  '\u200f\u05e9\u05dc\u05d5\u05dd',
  'İıŞ',
  'ß',
  'Ａｐｐｌｅ',
  '\u{10ffff}',
  'x'.repeat(1000),
  '中'.repeat(300),
  '',
  ' ',
];

/** Values of the JSON type a field does not have (and never the type it has). */
function wrongType(rng: Rng, f: FieldSpec): unknown {
  const common: unknown[] = [true, false, [], [1], ['a'], {}, { a: 1 }, [null]];
  const other: unknown[] = f.type === 'number' ? ['1', '', 'NaN', '0x10', '1e3'] : [0, 1, 1995, -1.5, 720];
  return rng.pick([...common, ...other]);
}

/** Random text, ASCII most of the time. */
function text(rng: Rng): string {
  if (rng.chance(0.2)) return rng.pick(UNICODE_TEXT);
  const n = rng.int(0, 16);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_ ,.()';
  return Array.from({ length: n }, () => alphabet[rng.int(0, alphabet.length - 1)]).join('');
}

function inRange(f: FieldSpec, lo: number, hi: number): [number, number] {
  return [Math.max(lo, f.range?.min ?? lo), Math.min(hi, f.range?.max ?? hi)];
}

/** A value the contract accepts for `f` (within its range), in a random spelling. */
function validValue(rng: Rng, f: FieldSpec, nowMs: number): unknown {
  const t = f.transform;
  if (!t) return f.type === 'number' ? rng.int(0, 2_000_000_000) : text(rng);
  switch (t.kind) {
    case 'numeric': {
      const [lo, hi] = inRange(f, -1e6, 1e6);
      return rng.chance(0.3) ? Math.round(lo + rng.next() * (hi - lo)) : lo + rng.next() * (hi - lo);
    }
    case 'age': {
      const unit = UNIT_MS[t.unit];
      const [lo, hi] = inRange(f, (nowMs - YEAR_10000) / unit + 1, (nowMs - YEAR_0) / unit - 1);
      // Mostly recent ages (like real traffic), sometimes anywhere the range allows.
      const span = rng.chance(0.8)
        ? [Math.max(lo, -30), Math.min(hi, 36_500 * (MS_PER_DAY / unit))]
        : [lo, hi];
      const age = (span[0] as number) + rng.next() * ((span[1] as number) - (span[0] as number));
      return formatDate(rng, Math.round(nowMs - age * unit));
    }
    case 'screen': {
      const [lo, hi] = inRange(f, 0, 999_999);
      const side = () =>
        String(
          rng.chance(0.7)
            ? rng.pick([480, 720, 750, 1080, 1170, 1440, 2532])
            : rng.int(lo, Math.min(hi, 5000)),
        );
      return `${side()}*${side()}`;
    }
    case 'vocabulary': {
      const v = rng.chance(0.85)
        ? rng.pick(t.values)
        : f.type === 'number'
          ? String(rng.int(0, 99_999))
          : text(rng);
      if (f.type === 'string') return v;
      const n = Number(v);
      return Number.isSafeInteger(n) ? n : rng.int(0, 99);
    }
    case 'hash':
      return f.type === 'number' ? rng.int(-1000, 1_000_000) : text(rng);
  }
}

/** A valid record: required fields always, optional ones most of the time. */
function validRecord(rng: Rng, fields: readonly FieldSpec[], nowMs: number): Record<string, unknown> {
  const r: Record<string, unknown> = {};
  for (const f of fields) if (f.required || rng.chance(0.85)) r[f.name] = validValue(rng, f, nowMs);
  return r;
}

const kindOf = (f: FieldSpec) => f.transform?.kind;

/** Bends one field of a valid record in the way of class `cls`; false when no field suits it. */
function bend(
  rng: Rng,
  cls: CorpusClass,
  fields: readonly FieldSpec[],
  r: Record<string, unknown>,
  nowMs: number,
): string | false | undefined {
  const choose = (ok: (f: FieldSpec) => boolean): FieldSpec | undefined => {
    const c = fields.filter(ok);
    return c.length === 0 ? undefined : rng.pick(c);
  };
  const dateField = () => choose((f) => kindOf(f) === 'age');
  switch (cls) {
    case 'valid':
      return undefined;
    case 'date-grammar': {
      const f = dateField();
      if (!f) return false;
      r[f.name] = rng.chance(0.4)
        ? rng.pick(GRAMMAR_CASES)
        : mutateString(rng, validValue(rng, f, nowMs) as string);
      return f.name;
    }
    case 'zones': {
      const f = dateField();
      if (!f) return false;
      const base = (validValue(rng, f, nowMs) as string).replace(/(Z|[+-]\d\d:?\d\d)$/, '');
      const withTime = base.length === 10 ? `${base}T12:00:00` : base;
      r[f.name] = withTime + rng.pick(rng.chance(0.5) ? ZONES_EDGE : ZONES_BAD);
      return f.name;
    }
    case 'leap-days': {
      const f = dateField();
      if (!f) return false;
      const y = rng.chance(0.6) ? rng.pick(LEAP_YEARS) : rng.int(0, 9999);
      const d = rng.pick(['28', '29', '29', '30']);
      const time = rng.pick(['', 'T00:00:00Z', 'T23:59:59.999+23:59', ' 12:00', 'T00:00-05:00']);
      r[f.name] = `${pad(y, 4)}-02-${d}${time}`;
      return f.name;
    }
    case 'extreme-years': {
      const f = dateField();
      if (!f) return false;
      r[f.name] = rng.chance(0.6)
        ? rng.pick(EXTREME_DATES)
        : formatDate(rng, YEAR_0 + rng.next() * (YEAR_10000 - YEAR_0));
      return f.name;
    }
    case 'screen': {
      const f = choose((x) => kindOf(x) === 'screen');
      if (!f) return false;
      const side = () =>
        rng.chance(0.5)
          ? rng.pick(SCREEN_SIDES)
          : Array.from({ length: rng.int(0, 9) }, () => rng.int(0, 9)).join('');
      r[f.name] = rng.chance(0.25) ? rng.pick(SCREEN_ODD) : `${side()}*${side()}`;
      return f.name;
    }
    case 'category-numbers': {
      const f = choose((x) => x.type === 'number' && (kindOf(x) === 'vocabulary' || kindOf(x) === 'hash'));
      if (!f) return false;
      r[f.name] = rng.chance(0.7)
        ? rng.pick(CATEGORY_NUMBERS)
        : rng.int(-1e9, 1e9) + rng.pick([0, 0, 0.5, 1e-9]);
      return f.name;
    }
    case 'number-extremes': {
      const f = choose((x) => x.type === 'number' && (kindOf(x) === 'numeric' || kindOf(x) === undefined));
      if (!f) return false;
      r[f.name] = rng.pick(NUMBER_EXTREMES) * (rng.chance(0.2) ? -1 : 1);
      return f.name;
    }
    case 'wrong-types': {
      const f = rng.pick(fields);
      r[f.name] = wrongType(rng, f);
      return f.name;
    }
    case 'null': {
      const f = rng.pick(fields);
      r[f.name] = null;
      return f.name;
    }
    case 'non-finite': {
      const f = choose((x) => x.type === 'number');
      if (!f) return false;
      r[f.name] = rng.pick([Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]);
      return f.name;
    }
    case 'missing':
      for (const f of fields) if (rng.chance(0.25)) delete r[f.name];
      return undefined;
    case 'unicode': {
      const f = choose((x) => x.type === 'string');
      if (!f) return false;
      const k = kindOf(f);
      r[f.name] =
        k === 'age' || k === 'screen'
          ? mutateString(rng, validValue(rng, f, nowMs) as string)
          : rng.pick(UNICODE_TEXT);
      if (k === 'vocabulary' && rng.chance(0.3) && f.transform?.kind === 'vocabulary') {
        r[f.name] = rng.pick(f.transform.values).normalize(rng.chance(0.5) ? 'NFD' : 'NFC');
      }
      return f.name;
    }
    case 'extra-fields': {
      const names = [
        '__proto__',
        'constructor',
        'toString',
        'hasOwnProperty',
        'valueOf',
        '',
        'extra',
        ' ',
        '\u0000',
      ];
      for (const f of fields) names.push(f.name.toUpperCase(), `${f.name} `, `${f.name}\u200b`);
      for (let n = rng.int(1, 4); n > 0; n--) {
        const value = rng.pick<unknown>([
          null,
          true,
          1,
          Number.NaN,
          'x',
          [1, { a: null }],
          { birthday: '1995-04-29' },
        ]);
        // defineProperty: an own "__proto__" key, as JSON.parse and the Struct decoder make one.
        Object.defineProperty(r, rng.pick(names), {
          value,
          enumerable: true,
          configurable: true,
          writable: true,
        });
      }
      return undefined;
    }
    case 'range-bounds': {
      const f = choose((x) => x.range !== undefined);
      if (!f?.range || !f.transform) return false;
      const finiteBounds = [f.range.min, f.range.max].filter(Number.isFinite);
      const bound = rng.pick(finiteBounds);
      if (f.transform.kind === 'age') {
        const unit = UNIT_MS[f.transform.unit];
        const t = nowMs - bound * unit + rng.pick([0, 0, -1, 1, -1000, 1000, -MS_PER_DAY, MS_PER_DAY]);
        r[f.name] = new Date(t).toISOString().replace(/Z$/, rng.pick(['Z', '+00:00', '']));
      } else if (f.transform.kind === 'screen') {
        const v = Math.max(0, Math.round(bound) + rng.pick([0, 0, -1, 1]));
        r[f.name] = rng.chance(0.5) ? `${v}*720` : `720*${v}`;
      } else {
        const ulp = Math.max(Math.abs(bound) * Number.EPSILON, Number.MIN_VALUE);
        r[f.name] = bound + rng.pick([0, 0, -ulp, ulp, -1, 1, -1e-9, 1e-9]);
      }
      return f.name;
    }
  }
}

/**
 * `n` records for a manifest's `fields`, classes drawn with `weights` (equal
 * by default), the same for the same `seed`. Classes that no field of the
 * manifest can carry (a manifest without numeric fields has no float32 edge)
 * fall back to another draw.
 */
export function generateCorpus(
  fields: readonly FieldSpec[],
  options: { readonly seed: number; readonly n: number; readonly nowMs: number },
): CorpusRecord[] {
  const rng = new Rng(options.seed);
  const classes = Object.keys(CLASSES) as CorpusClass[];
  const out: CorpusRecord[] = [];
  let attempts = 0;
  while (out.length < options.n) {
    if (++attempts > options.n * 20) throw new Error('the corpus generator cannot fill its classes');
    const cls = rng.pick(classes);
    const record = validRecord(rng, fields, options.nowMs);
    const field = bend(rng, cls, fields, record, options.nowMs);
    if (field === false) continue;
    out.push({ cls, field, record });
  }
  return out;
}

/**
 * JSON as Python's json module reads it: NaN, Infinity and -Infinity as the
 * literals it accepts (JSON.stringify would write null), -0 as -0.0 (else an
 * int 0). Numbers otherwise as JavaScript writes them (shortest round trip).
 */
export function toPythonJson(v: unknown): string {
  if (typeof v === 'number') {
    if (Number.isNaN(v)) return 'NaN';
    if (!Number.isFinite(v)) return v > 0 ? 'Infinity' : '-Infinity';
    return Object.is(v, -0) ? '-0.0' : JSON.stringify(v);
  }
  if (Array.isArray(v)) return `[${v.map(toPythonJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.entries(v)
      .map(([k, x]) => `${JSON.stringify(k)}:${toPythonJson(x)}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}
