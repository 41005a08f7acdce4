/**
 * A small, typed wrapper around the ghz CLI (https://ghz.sh, pinned by
 * `GHZ_VERSION` in scripts/dev/bootstrap.mjs and installed to .tools/bin/ghz):
 * build its arguments, run it as a child process, parse its JSON report into
 * typed results, and judge them against SLOs.
 *
 * The report shape is ghz v0.121's `runner.Report` (runner/reporter.go):
 * durations are integer nanoseconds, `statusCodeDistribution` is keyed by Go's
 * `codes.Code` names ("OK", "NotFound", …), `errorDistribution` by the full
 * error string ("rpc error: code = NotFound desc = …"), and the latency
 * percentiles and histogram cover successful calls only (ghz's default,
 * without `--count-errors`); they are null when no call succeeded.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { PROJECT_ROOT } from '../paths.js';
import { runTool, type ToolRunOptions } from '../tool-process.js';

/** Where scripts/dev/bootstrap.mjs installs ghz. */
export const GHZ_BIN = `${PROJECT_ROOT}.tools/bin/ghz`;

/** What one ghz run should do. Durations are in milliseconds. */
export interface GhzRun {
  /** host:port of the gRPC server (no scheme). */
  readonly host: string;
  /** Fully qualified method, `package.Service/Method`. */
  readonly call: string;
  /**
   * Plaintext when true; TLS (system roots, or `cacert`) when false. ghz itself
   * defaults to TLS, so this is always passed explicitly one way or the other.
   */
  readonly insecure: boolean;
  readonly cacert?: string;
  /** A .proto file and its import paths; without it ghz uses server reflection. */
  readonly proto?: { readonly file: string; readonly importPaths: readonly string[] };
  /**
   * Path of the request body template (JSON after ghz's Go text/template
   * expansion). A file rather than `-d`: ghz's CLI insists `-d` parses as JSON
   * before templating, so a template producing a bare number (`"userId": {{…}}`)
   * is only accepted from `--data-file`, which is read raw.
   */
  readonly dataFile: string;
  /** Request metadata; values may hold ghz templates. */
  readonly metadata?: Readonly<Record<string, string>>;
  /** Fixed request rate; omitted means as fast as `concurrency` workers go. */
  readonly rps?: number;
  /** Workers (ghz `-c`): the closed-loop concurrency, or the pool that serves `rps`. */
  readonly concurrency: number;
  readonly connections?: number;
  readonly durationMs: number;
  /** Per-request deadline. */
  readonly timeoutMs: number;
  readonly connectTimeoutMs?: number;
  /** CPUs ghz may use (its own default is all of them). */
  readonly cpus?: number;
  /** Where ghz writes its JSON report. */
  readonly outputFile: string;
  readonly name?: string;
  /** String tags stored in the report. */
  readonly tags?: Readonly<Record<string, string>>;
}

/** ghz takes Go durations; whole milliseconds are always exact. */
function goDuration(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${Math.round(ms)}ms`;
}

/**
 * The ghz command line for `run`, as an argv array (never a shell string, so
 * templates and JSON need no quoting).
 *
 * `--duration-stop=wait` lets calls in flight at the end finish and be counted:
 * ghz's default (`close`) cuts the connection under them and reports them as
 * errors, which would fail a zero-error SLO for no fault of the server.
 */
export function ghzArgs(run: GhzRun): string[] {
  const args = [`--call=${run.call}`];
  if (run.proto) {
    args.push(`--proto=${run.proto.file}`);
    if (run.proto.importPaths.length > 0) args.push(`--import-paths=${run.proto.importPaths.join(',')}`);
  }
  if (run.insecure) args.push('--insecure');
  else if (run.cacert) args.push(`--cacert=${run.cacert}`);
  args.push(`--data-file=${run.dataFile}`);
  if (run.metadata && Object.keys(run.metadata).length > 0) {
    args.push(`--metadata=${JSON.stringify(run.metadata)}`);
  }
  if (run.rps !== undefined) args.push(`--rps=${run.rps}`);
  args.push(`--concurrency=${run.concurrency}`);
  if (run.connections !== undefined) args.push(`--connections=${run.connections}`);
  args.push(
    `--duration=${goDuration(run.durationMs)}`,
    '--duration-stop=wait',
    `--timeout=${goDuration(run.timeoutMs)}`,
  );
  if (run.connectTimeoutMs !== undefined) args.push(`--connect-timeout=${goDuration(run.connectTimeoutMs)}`);
  if (run.cpus !== undefined) args.push(`--cpus=${run.cpus}`);
  if (run.name) args.push(`--name=${run.name}`);
  if (run.tags && Object.keys(run.tags).length > 0) args.push(`--tags=${JSON.stringify(run.tags)}`);
  args.push('--format=json', `--output=${run.outputFile}`, run.host);
  return args;
}

/** ghz could not run at all (not installed, target unreachable, bad proto). */
export class GhzError extends Error {
  override name = 'GhzError';
}

export interface SpawnOptions extends ToolRunOptions {
  /** The ghz binary; .tools/bin/ghz by default. */
  readonly bin?: string;
}

/**
 * Runs ghz with `args` and resolves when it exits 0. Rejects with a `GhzError`
 * carrying ghz's stderr otherwise. ghz prints no progress of its own (v0.121
 * has no progress bar), hence `onTick`. Aborting sends ghz SIGINT: it stops
 * and still writes its report.
 */
export async function spawnGhz(args: readonly string[], options: SpawnOptions = {}): Promise<void> {
  const bin = options.bin ?? GHZ_BIN;
  if (!existsSync(bin)) {
    throw new GhzError(`ghz is not installed at ${bin}; run \`node scripts/dev/bootstrap.mjs\` first.`);
  }
  const exit = await runTool(bin, args, options).catch((err: Error) => {
    throw new GhzError(`could not start ghz (${bin}): ${err.message}`);
  });
  if (exit.code !== 0) {
    const why = exit.stderr.trim() || `exit code ${exit.code ?? exit.signal}`;
    throw new GhzError(`ghz failed: ${why.replace(/^ghz: error: /, '')}`);
  }
}

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

/** Service level objectives for one run. */
export interface Slo {
  /** p99 must be strictly below this (the seed notes: RT < 100 ms). */
  readonly p99Ms: number;
  /** Largest acceptable share of failed calls, 0..1 (0: none may fail). */
  readonly maxErrorRate: number;
  /** Smallest acceptable achieved rate, if any. */
  readonly minRps?: number;
}

/** The seed notes' numbers: RT under 100 ms, and no request may fail. */
export const DEFAULT_SLO: Slo = Object.freeze({ p99Ms: 100, maxErrorRate: 0 });

export interface SloVerdict {
  readonly name: 'p99' | 'error-rate' | 'min-rps' | 'requests';
  readonly ok: boolean;
  /** One line a person can read: measured value, comparison, limit. */
  readonly detail: string;
}

function fmt(n: number, digits = 2): string {
  return n.toFixed(digits);
}

/**
 * Judges a run against `slo`. A run with no calls at all fails ("requests"),
 * and so does a p99 SLO when no call succeeded: there is nothing to measure.
 */
export function checkSlo(summary: RunSummary, slo: Slo): SloVerdict[] {
  const verdicts: SloVerdict[] = [];
  verdicts.push(
    summary.count > 0
      ? { name: 'requests', ok: true, detail: `${summary.count} calls completed` }
      : { name: 'requests', ok: false, detail: 'no call completed' },
  );
  const p99 = summary.latencyMs.p99;
  verdicts.push(
    p99 === undefined
      ? { name: 'p99', ok: false, detail: `p99 unknown (no successful call) — limit < ${slo.p99Ms} ms` }
      : {
          name: 'p99',
          ok: p99 < slo.p99Ms,
          detail: `p99 ${fmt(p99)} ms ${p99 < slo.p99Ms ? '<' : '≥'} ${slo.p99Ms} ms`,
        },
  );
  const rate = summary.errorRate;
  const rateOk = rate <= slo.maxErrorRate;
  verdicts.push({
    name: 'error-rate',
    ok: rateOk,
    detail: `errors ${summary.errorCount}/${summary.count} (${fmt(rate * 100, 3)}%) ${rateOk ? '≤' : '>'} ${fmt(slo.maxErrorRate * 100, 3)}%`,
  });
  if (slo.minRps !== undefined) {
    const ok = summary.rps >= slo.minRps;
    verdicts.push({
      name: 'min-rps',
      ok,
      detail: `rps ${fmt(summary.rps, 1)} ${ok ? '≥' : '<'} ${slo.minRps}`,
    });
  }
  return verdicts;
}
