/**
 * Command-line arguments as every command reads them: node's `parseArgs`,
 * strict, with `-h/--help` always known, and typed option values (integers,
 * numbers, durations) checked against a range. Every failure is a
 * `UsageError` whose message is one sentence naming the option.
 */
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UsageError } from './cli.js';

type OptionsConfig = NonNullable<ParseArgsConfig['options']>;

const HELP = { help: { type: 'boolean', short: 'h' } } as const;

/** node's parseArgs message, cut to its first sentence ("Unknown option '--x'."). */
function firstSentence(message: string): string {
  const end = message.indexOf('. ');
  const first = end < 0 ? message : message.slice(0, end);
  return first.endsWith('.') ? first : `${first}.`;
}

/**
 * Parses `argv` strictly against `options` (plus `-h/--help`). Unknown
 * options, missing values and, unless allowed, positionals throw a
 * `UsageError` naming them.
 */
export function parseCommandLine<const O extends OptionsConfig>(
  argv: readonly string[],
  options: O,
  allowPositionals = false,
) {
  try {
    return parseArgs({ args: [...argv], options: { ...options, ...HELP }, strict: true, allowPositionals });
  } catch (err) {
    throw new UsageError(firstSentence((err as Error).message));
  }
}

/** An integer option from `min` to `max`; undefined when not given. */
export function intOption(
  raw: string | undefined,
  option: string,
  min: number,
  max: number,
): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!/^\d+$/.test(raw.trim()) || n < min || n > max) {
    throw new UsageError(`${option} must be an integer from ${min} to ${max}, got "${raw}".`);
  }
  return n;
}

/** A number option in [min, max] (or (min, max] when `minExclusive`); undefined when not given. */
export function numberOption(
  raw: string | undefined,
  option: string,
  min: number,
  max: number,
  minExclusive = false,
): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max || (minExclusive && n === min)) {
    const range = minExclusive ? `greater than ${min} and at most ${max}` : `from ${min} to ${max}`;
    throw new UsageError(`${option} must be a number ${range}, got "${raw}".`);
  }
  return n;
}

const DURATION_UNITS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses `10s`, `500ms`, `2m`, `1.5s`, `1h`, `7d` into milliseconds. */
export function parseDuration(raw: string, option: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(raw.trim());
  if (!m) throw new UsageError(`${option} must be a duration like 500ms, 30s, 2m, 36h or 7d, got "${raw}".`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] as keyof typeof DURATION_UNITS]);
}

/** Milliseconds as the shortest exact duration option: `100ms`, `30s`, `2m`, `1h`, `7d`. */
export function durationText(ms: number): string {
  for (const [unit, size] of [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

/** A duration option from `minMs` to `maxMs`, in milliseconds; undefined when not given. */
export function durationOption(
  raw: string | undefined,
  option: string,
  minMs: number,
  maxMs: number,
): number | undefined {
  if (raw === undefined) return undefined;
  const ms = parseDuration(raw, option);
  if (ms < minMs || ms > maxMs) {
    throw new UsageError(
      `${option} must be from ${durationText(minMs)} to ${durationText(maxMs)}, got "${raw}".`,
    );
  }
  return ms;
}
