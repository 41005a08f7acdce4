/**
 * What a ghz run achieved, in the units people read: calls, errors by
 * canonical gRPC status with their messages, rate, and latency percentiles in
 * milliseconds.
 */
import type { GhzReport } from './ghz-report.js';

/**
 * Go's `codes.Code` names (google.golang.org/grpc/codes, code_string.go) to
 * the canonical names of grpc's status code table
 * (https://grpc.github.io/grpc/core/md_doc_statuscodes.html), which the server
 * logs and metrics use. Note Go spells CANCELLED with one L.
 */
const GO_CODE_TO_CANONICAL: Readonly<Record<string, { name: string; code: number }>> = {
  OK: { name: 'OK', code: 0 },
  Canceled: { name: 'CANCELLED', code: 1 },
  Unknown: { name: 'UNKNOWN', code: 2 },
  InvalidArgument: { name: 'INVALID_ARGUMENT', code: 3 },
  DeadlineExceeded: { name: 'DEADLINE_EXCEEDED', code: 4 },
  NotFound: { name: 'NOT_FOUND', code: 5 },
  AlreadyExists: { name: 'ALREADY_EXISTS', code: 6 },
  PermissionDenied: { name: 'PERMISSION_DENIED', code: 7 },
  ResourceExhausted: { name: 'RESOURCE_EXHAUSTED', code: 8 },
  FailedPrecondition: { name: 'FAILED_PRECONDITION', code: 9 },
  Aborted: { name: 'ABORTED', code: 10 },
  OutOfRange: { name: 'OUT_OF_RANGE', code: 11 },
  Unimplemented: { name: 'UNIMPLEMENTED', code: 12 },
  Internal: { name: 'INTERNAL', code: 13 },
  Unavailable: { name: 'UNAVAILABLE', code: 14 },
  DataLoss: { name: 'DATA_LOSS', code: 15 },
  Unauthenticated: { name: 'UNAUTHENTICATED', code: 16 },
};

const GO_NAME_BY_CODE: readonly string[] = Object.entries(GO_CODE_TO_CANONICAL)
  .sort(([, a], [, b]) => a.code - b.code)
  .map(([go]) => go);

/** Go's name of a numeric gRPC status (what ghz's report writes), `Unknown` for a code it has none for. */
export function goCodeName(code: number): string {
  return GO_NAME_BY_CODE[code] ?? 'Unknown';
}

/** A gRPC status by its canonical name and number (ghz's Go name when unknown). */
export function canonicalStatus(goName: string): { name: string; code: number | undefined } {
  const known = GO_CODE_TO_CANONICAL[goName];
  return known ? { ...known } : { name: goName, code: undefined };
}

/** Calls that ended with one gRPC status. */
export interface StatusCount {
  /** Canonical name, e.g. NOT_FOUND. */
  readonly status: string;
  readonly code: number | undefined;
  readonly count: number;
  /** Distinct error messages (the `desc` part) with their counts, most frequent first. */
  readonly messages: readonly { readonly message: string; readonly count: number }[];
}

/** Latencies in milliseconds; undefined when no call succeeded. */
export interface LatencySummary {
  readonly p50: number | undefined;
  readonly p90: number | undefined;
  readonly p95: number | undefined;
  readonly p99: number | undefined;
  readonly max: number | undefined;
  readonly min: number | undefined;
  readonly mean: number | undefined;
}

/** What a run achieved, in the units people read. */
export interface RunSummary {
  readonly count: number;
  readonly okCount: number;
  readonly errorCount: number;
  /** errorCount / count; 0 for an empty run. */
  readonly errorRate: number;
  /** Completed calls per second over the whole run (ghz's `rps`). */
  readonly rps: number;
  readonly totalMs: number;
  readonly endReason: string;
  /** Successful calls' latencies (client side, as ghz measures them). */
  readonly latencyMs: LatencySummary;
  /** Every status seen, OK included, most frequent first. */
  readonly statuses: readonly StatusCount[];
}

const NS_PER_MS = 1e6;

/** ghz's value for percentile `p`, in ms; undefined when it has none. */
export function percentileMs(report: GhzReport, p: number): number | undefined {
  const point = (report.latencyDistribution ?? []).find((d) => d.percentage === p);
  // ghz leaves a zero-valued entry where the data had no value.
  return point && point.latency > 0 ? point.latency / NS_PER_MS : undefined;
}

/** Splits "rpc error: code = NotFound desc = model x not found" into its parts. */
export function parseGrpcError(error: string): { goCode: string; message: string } {
  const m = /^rpc error: code = (\w+) desc = ([\s\S]*)$/.exec(error);
  return m?.[1] !== undefined && m[2] !== undefined
    ? { goCode: m[1], message: m[2] }
    : { goCode: 'Unknown', message: error };
}

/** Groups the report's calls by gRPC status, with the error messages under each. */
export function groupByStatus(report: GhzReport): StatusCount[] {
  const messages = new Map<string, Map<string, number>>();
  for (const [error, count] of Object.entries(report.errorDistribution)) {
    const { goCode, message } = parseGrpcError(error);
    const byMsg = messages.get(goCode) ?? new Map<string, number>();
    byMsg.set(message, (byMsg.get(message) ?? 0) + count);
    messages.set(goCode, byMsg);
  }
  return Object.entries(report.statusCodeDistribution)
    .map(([goCode, count]) => {
      const { name, code } = canonicalStatus(goCode);
      const msgs = [...(messages.get(goCode) ?? new Map<string, number>())]
        .map(([message, n]) => ({ message, count: n }))
        .sort((a, b) => b.count - a.count || a.message.localeCompare(b.message));
      return { status: name, code, count, messages: msgs };
    })
    .sort((a, b) => b.count - a.count || a.status.localeCompare(b.status));
}

/** The numbers people read from a report. */
export function summarize(report: GhzReport): RunSummary {
  const okCount = report.statusCodeDistribution.OK ?? 0;
  const errorCount = report.count - okCount;
  const hasLatency = okCount > 0 && report.slowest > 0;
  return {
    count: report.count,
    okCount,
    errorCount,
    errorRate: report.count === 0 ? 0 : errorCount / report.count,
    rps: report.rps,
    totalMs: report.total / NS_PER_MS,
    endReason: report.endReason ?? '',
    latencyMs: {
      p50: percentileMs(report, 50),
      p90: percentileMs(report, 90),
      p95: percentileMs(report, 95),
      p99: percentileMs(report, 99),
      max: hasLatency ? report.slowest / NS_PER_MS : undefined,
      min: hasLatency ? report.fastest / NS_PER_MS : undefined,
      mean: hasLatency ? report.average / NS_PER_MS : undefined,
    },
    statuses: groupByStatus(report),
  };
}
