/**
 * ghz's JSON report, typed and validated. The shape is ghz v0.121's
 * `runner.Report` (runner/reporter.go): durations are integer nanoseconds,
 * `statusCodeDistribution` is keyed by Go's `codes.Code` names ("OK",
 * "NotFound", …), `errorDistribution` by the full error string ("rpc error:
 * code = NotFound desc = …"), and the latency percentiles and histogram cover
 * successful calls only (ghz's default, without `--count-errors`); they are
 * null when no call succeeded.
 */
import { readFile } from 'node:fs/promises';
import { GhzError } from './ghz.js';

/** One latency percentile, as ghz reports it. */
export interface GhzLatencyPoint {
  readonly percentage: number;
  /** Nanoseconds. */
  readonly latency: number;
}

/** One call, as ghz reports it in `details`. */
export interface GhzDetail {
  readonly timestamp: string;
  /** Nanoseconds. */
  readonly latency: number;
  /** Empty on success. */
  readonly error: string;
  /** Go `codes.Code` name. */
  readonly status: string;
}

/**
 * How well a fixed-rate run kept to its schedule: filled by the project's own
 * generator (h2-generator.ts), whose latencies count from each call's due time.
 * ghz's report has no such field: its latencies count from the send.
 */
export interface SendSchedule {
  /** Calls due within the duration. */
  readonly due: number;
  readonly sent: number;
  /** Sent more than LATE_SEND_MS after they were due (every worker was busy). */
  readonly late: number;
  readonly maxLagMs: number;
}

/** A send this much later than its due time counts as late. */
export const LATE_SEND_MS = 1;

/** ghz v0.121's JSON report, the fields this project reads. */
export interface GhzReport {
  readonly name?: string;
  readonly endReason?: string;
  readonly date: string;
  readonly options: Readonly<Record<string, unknown>>;
  readonly count: number;
  /** Wall time of the whole run, nanoseconds. */
  readonly total: number;
  readonly average: number;
  readonly fastest: number;
  readonly slowest: number;
  readonly rps: number;
  readonly errorDistribution: Readonly<Record<string, number>>;
  readonly statusCodeDistribution: Readonly<Record<string, number>>;
  readonly latencyDistribution: readonly GhzLatencyPoint[] | null;
  readonly histogram: readonly { mark: number; count: number; frequency: number }[] | null;
  readonly details: readonly GhzDetail[];
  readonly tags?: Readonly<Record<string, string>>;
  /** Fixed-rate runs of the project's generator only. */
  readonly schedule?: SendSchedule;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function countMap(v: unknown, field: string): Record<string, number> {
  if (v === undefined || v === null) return {};
  if (!isRecord(v) || !Object.values(v).every((n) => Number.isInteger(n))) {
    throw new GhzError(`ghz report: ${field} must map strings to counts.`);
  }
  return v as Record<string, number>;
}

/** Validates a parsed ghz JSON report; throws `GhzError` naming the bad field. */
export function parseGhzReport(json: unknown): GhzReport {
  if (!isRecord(json)) throw new GhzError('ghz report: expected a JSON object.');
  for (const field of ['count', 'total', 'average', 'fastest', 'slowest', 'rps']) {
    if (typeof json[field] !== 'number' || !Number.isFinite(json[field])) {
      throw new GhzError(`ghz report: ${field} must be a number.`);
    }
  }
  const ld = json.latencyDistribution;
  if (
    ld !== null &&
    ld !== undefined &&
    !(
      Array.isArray(ld) &&
      ld.every((p) => isRecord(p) && typeof p.percentage === 'number' && typeof p.latency === 'number')
    )
  ) {
    throw new GhzError('ghz report: latencyDistribution must be a list of {percentage, latency}.');
  }
  const details = json.details ?? [];
  if (!Array.isArray(details)) throw new GhzError('ghz report: details must be a list.');
  return {
    ...(json as unknown as GhzReport),
    date: String(json.date ?? ''),
    options: isRecord(json.options) ? json.options : {},
    errorDistribution: countMap(json.errorDistribution, 'errorDistribution'),
    statusCodeDistribution: countMap(json.statusCodeDistribution, 'statusCodeDistribution'),
    latencyDistribution: (ld as GhzLatencyPoint[] | undefined) ?? null,
    histogram: (json.histogram as GhzReport['histogram'] | undefined) ?? null,
    details: details as GhzDetail[],
  };
}

/** Reads and validates the JSON report ghz wrote to `path`. */
export async function readGhzReport(path: string): Promise<GhzReport> {
  const text = await readFile(path, 'utf8');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new GhzError(`ghz report ${path} is not JSON: ${(err as Error).message}`);
  }
  return parseGhzReport(json);
}
