/**
 * A small YAML emitter for plain data (objects, arrays, strings, numbers,
 * booleans, null), enough to write Envoy configuration that people can read.
 *
 * Every string is written double-quoted with JSON escaping, which is valid
 * YAML 1.2, so no value can be misread as a number, boolean or anchor. Keys
 * are bare when they are plain identifiers and quoted otherwise (`"@type"`).
 */
export function toYaml(value: unknown): string {
  return `${emit(value, 0)}\n`;
}

const BARE_KEY = /^[A-Za-z_][A-Za-z0-9_.-]*$/;

function key(k: string): string {
  return BARE_KEY.test(k) ? k : JSON.stringify(k);
}

function scalar(v: unknown): string | undefined {
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) throw new Error(`cannot write ${v} as YAML`);
    return String(v);
  }
  if (typeof v === 'boolean') return String(v);
  if (Array.isArray(v) && v.length === 0) return '[]';
  if (typeof v === 'object' && Object.keys(v as object).length === 0) return '{}';
  if (typeof v === 'object') return undefined;
  throw new Error(`cannot write a ${typeof v} as YAML`);
}

function emit(v: unknown, indent: number): string {
  const s = scalar(v);
  if (s !== undefined) return s;
  const pad = ' '.repeat(indent);
  if (Array.isArray(v)) {
    return v
      .map((item) => {
        const inline = scalar(item);
        if (inline !== undefined) return `${pad}- ${inline}`;
        // An object item starts on the dash line; its other keys line up under it.
        return `${pad}- ${emit(item, indent + 2).slice(indent + 2)}`;
      })
      .join('\n');
  }
  return Object.entries(v as Record<string, unknown>)
    .filter(([, val]) => val !== undefined)
    .map(([k, val]) => {
      const inline = scalar(val);
      if (inline !== undefined) return `${pad}${key(k)}: ${inline}`;
      // Sequences under a key are indented one level, as most Envoy examples are.
      return `${pad}${key(k)}:\n${emit(val, indent + 2)}`;
    })
    .join('\n');
}
