/**
 * The Prometheus text exposition format, read by the one parser every script
 * and test uses on a `/metrics` page (the servers' prom-client registry,
 * Envoy's `/stats/prometheus`).
 *
 * Format 0.0.4 (https://prometheus.io/docs/instrumenting/exposition_formats/):
 *
 *   # HELP <name> <docstring>           docstring escapes \\ and \n
 *   # TYPE <name> counter|gauge|histogram|summary|untyped
 *   <name>[{<label>="<value>",...}] <value> [<timestamp ms>]
 *
 * Label values escape `\`, `"` and newline as \\, \" and \n; values are Go
 * floats (`NaN`, `+Inf`, `-Inf` included). A histogram `h` is exposed as the
 * samples `h_bucket{le="…"}`, `h_sum` and `h_count`, a summary `s` as
 * `s{quantile="…"}`, `s_sum` and `s_count`: they are gathered under the family
 * their `# TYPE` line names. A line that breaks the format is an error naming
 * the line, never skipped in silence.
 */

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

/** One sample line. */
export interface Sample {
  /** The sample's own name (`h_bucket` for a histogram bucket). */
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
  /** Milliseconds since the epoch, when the line carries one. */
  readonly timestampMs?: number;
}

/** The samples of one metric, with what its `# TYPE` and `# HELP` lines said. */
export interface MetricFamily {
  readonly name: string;
  readonly type: MetricType;
  readonly help: string;
  readonly samples: readonly Sample[];
}

/** One series of a histogram: its labels (without `le`), cumulative buckets, sum and count. */
export interface HistogramSeries {
  readonly labels: Readonly<Record<string, string>>;
  /** Ascending by `le`; the last one is `+Inf`. */
  readonly buckets: readonly { readonly le: number; readonly count: number }[];
  readonly sum: number;
  readonly count: number;
}

/** Text that is not the exposition format; `line` is 1-based. */
export class PrometheusParseError extends Error {
  override name = 'PrometheusParseError';
  constructor(
    readonly line: number,
    reason: string,
  ) {
    super(`metrics text line ${line}: ${reason}`);
  }
}

const TYPES: ReadonlySet<string> = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const METRIC_NAME = /^[A-Za-z_:][A-Za-z0-9_:]*/;
const LABEL_NAME = /^[A-Za-z_][A-Za-z0-9_]*/;
/** Suffixes of the samples a histogram or summary family is exposed as. */
const SUFFIXES: Readonly<Record<string, readonly string[]>> = {
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['_sum', '_count'],
};

/** A Go float as Prometheus writes it: decimal, exponent, `NaN`, `+Inf`, `-Inf`. */
function parseValue(text: string): number | undefined {
  const lower = text.toLowerCase();
  if (lower === '+inf' || lower === 'inf') return Number.POSITIVE_INFINITY;
  if (lower === '-inf') return Number.NEGATIVE_INFINITY;
  if (lower === 'nan') return Number.NaN;
  if (!/^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/.test(text)) return undefined;
  return Number(text);
}

/** The docstring of a HELP line: `\\` and `\n` are its only escapes. */
function unescapeHelp(text: string): string {
  return text.replace(/\\([\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : '\\'));
}

/** Parses one sample line; throws a plain message (the caller adds the line number). */
function parseSample(line: string): Sample {
  let i = 0;
  const skipBlanks = () => {
    while (line[i] === ' ' || line[i] === '\t') i++;
  };
  const name = METRIC_NAME.exec(line)?.[0];
  if (!name) throw new Error('expected a metric name');
  i = name.length;
  const labels: Record<string, string> = {};
  skipBlanks();
  if (line[i] === '{') {
    i++;
    for (;;) {
      skipBlanks();
      if (line[i] === '}') {
        i++;
        break;
      }
      const label = LABEL_NAME.exec(line.slice(i))?.[0];
      if (!label) throw new Error(`expected a label name or "}" at column ${i + 1}`);
      i += label.length;
      skipBlanks();
      if (line[i] !== '=') throw new Error(`expected "=" after label ${label}`);
      i++;
      skipBlanks();
      if (line[i] !== '"') throw new Error(`expected a quoted value for label ${label}`);
      i++;
      let value = '';
      for (;;) {
        const c = line[i];
        if (c === undefined) throw new Error(`unterminated value of label ${label}`);
        i++;
        if (c === '"') break;
        if (c !== '\\') {
          value += c;
          continue;
        }
        const e = line[i++];
        if (e === '\\' || e === '"') value += e;
        else if (e === 'n') value += '\n';
        else throw new Error(`invalid escape \\${e ?? ''} in the value of label ${label}`);
      }
      if (label in labels) throw new Error(`label ${label} given twice`);
      labels[label] = value;
      skipBlanks();
      if (line[i] === ',') i++;
      else if (line[i] !== '}') throw new Error(`expected "," or "}" after label ${label}`);
    }
  }
  const rest = line
    .slice(i)
    .trim()
    .split(/[ \t]+/);
  if (rest.length < 1 || rest.length > 2 || rest[0] === '') throw new Error('expected a value');
  const value = parseValue(rest[0] as string);
  if (value === undefined) throw new Error(`"${rest[0]}" is not a number`);
  if (rest[1] === undefined) return { name, labels, value };
  if (!/^-?\d+$/.test(rest[1])) throw new Error(`"${rest[1]}" is not a timestamp`);
  return { name, labels, value, timestampMs: Number(rest[1]) };
}

/**
 * The metric families of `text`, by family name, in the order they first
 * appear. Throws `PrometheusParseError` on the first line that breaks the format.
 */
export function parsePrometheus(text: string): Map<string, MetricFamily> {
  const families = new Map<string, { name: string; type: MetricType; help: string; samples: Sample[] }>();
  const family = (name: string) => {
    let f = families.get(name);
    if (!f) {
      f = { name, type: 'untyped', help: '', samples: [] };
      families.set(name, f);
    }
    return f;
  };
  /** The family a sample belongs to: a histogram's or summary's, when its TYPE line named one. */
  const owner = (sample: string) => {
    for (const [type, suffixes] of Object.entries(SUFFIXES)) {
      for (const s of suffixes) {
        if (!sample.endsWith(s)) continue;
        const f = families.get(sample.slice(0, -s.length));
        if (f?.type === type) return f;
      }
    }
    return family(sample);
  };
  const lines = text.split('\n');
  for (const [n, raw] of lines.entries()) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+([A-Za-z_:][A-Za-z0-9_:]*)(?:[ \t]+(.*))?$/.exec(line);
      if (!m) continue; // any other comment
      const [, kind, name, arg = ''] = m as unknown as [string, 'HELP' | 'TYPE', string, string?];
      const f = family(name);
      if (kind === 'HELP') {
        f.help = unescapeHelp(arg);
      } else {
        const type = arg.trim();
        if (!TYPES.has(type))
          throw new PrometheusParseError(n + 1, `unknown metric type "${type}" for ${name}`);
        if (f.samples.length > 0) {
          throw new PrometheusParseError(n + 1, `the TYPE of ${name} comes after its samples`);
        }
        f.type = type as MetricType;
      }
      continue;
    }
    let sample: Sample;
    try {
      sample = parseSample(line.trim());
    } catch (err) {
      throw new PrometheusParseError(n + 1, (err as Error).message);
    }
    owner(sample.name).samples.push(sample);
  }
  return families as Map<string, MetricFamily>;
}

/** Every sample of `text`, or only those whose sample name is in `names`. */
export function parseSamples(text: string, names?: ReadonlySet<string>): Sample[] {
  const out: Sample[] = [];
  for (const f of parsePrometheus(text).values()) {
    for (const s of f.samples) if (!names || names.has(s.name)) out.push(s);
  }
  return out;
}

/** True when `labels` has exactly the entries of `want`. */
function labelsEqual(
  labels: Readonly<Record<string, string>>,
  want: Readonly<Record<string, string>>,
): boolean {
  const keys = Object.keys(labels);
  return keys.length === Object.keys(want).length && keys.every((k) => labels[k] === want[k]);
}

/** The value of the sample `name` with exactly `labels`, or undefined when there is none. */
export function sampleValue(
  samples: readonly Sample[],
  name: string,
  labels: Readonly<Record<string, string>> = {},
): number | undefined {
  return samples.find((s) => s.name === name && labelsEqual(s.labels, labels))?.value;
}

/** The series of a histogram family, one per label set (`le` aside), in order of appearance. */
export function histogramSeries(family: MetricFamily): HistogramSeries[] {
  if (family.type !== 'histogram') throw new Error(`${family.name} is a ${family.type}, not a histogram`);
  const series = new Map<
    string,
    { labels: Record<string, string>; buckets: { le: number; count: number }[]; sum: number; count: number }
  >();
  for (const s of family.samples) {
    const { le, ...labels } = s.labels;
    const key = JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));
    let entry = series.get(key);
    if (!entry) {
      entry = { labels, buckets: [], sum: 0, count: 0 };
      series.set(key, entry);
    }
    if (s.name === `${family.name}_bucket`) {
      const bound = le === undefined ? undefined : parseValue(le);
      if (bound === undefined) throw new Error(`${s.name} has no numeric le label`);
      entry.buckets.push({ le: bound, count: s.value });
    } else if (s.name === `${family.name}_sum`) {
      entry.sum = s.value;
    } else if (s.name === `${family.name}_count`) {
      entry.count = s.value;
    }
  }
  for (const e of series.values()) e.buckets.sort((a, b) => a.le - b.le);
  return [...series.values()];
}
