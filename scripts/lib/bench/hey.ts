/**
 * A small, typed wrapper around hey (github.com/rakyll/hey, pinned by
 * `HEY_VERSION` in scripts/lib/dev/bootstrap.mjs, installed to .tools/bin/hey), the
 * HTTP load generator `npm run bench` drives the Flask baseline with. Like
 * ghz, hey runs `-c` closed-loop workers; `-q` paces each worker, so a total
 * rate R over C workers is `-q R/C`.
 *
 * hey v0.1.5 has no JSON output; its summary (requester/print.go, `defaultTmpl`)
 * is parsed here. Its numbers are seconds with 4 decimals (0.1 ms steps). Its
 * latency percentiles cover responses that arrived, whatever their HTTP status;
 * transport errors (refused, reset, timeout) are only in "Error distribution",
 * and its "Requests/sec" counts them too, so the rate of good answers is
 * computed here from the 2xx count.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { TOOLS_BIN } from '../paths.js';
import { runTool, type ToolRunOptions } from '../tool-process.js';

/** Where scripts/lib/dev/bootstrap.mjs installs hey. */
const HEY_BIN = join(TOOLS_BIN, 'hey');

/** What one hey run should do. Durations are in milliseconds. */
export interface HeyRun {
  readonly url: string;
  readonly method: 'GET' | 'POST';
  /** Request body (sent as-is on every call). */
  readonly body?: string;
  readonly contentType?: string;
  /** Closed-loop workers (`-c`). */
  readonly concurrency: number;
  /** Total calls per second over all workers; omitted: as fast as the workers go. */
  readonly rps?: number;
  readonly durationMs: number;
  /** Per-request timeout; hey takes whole seconds (0 would mean none). */
  readonly timeoutMs: number;
  /** CPUs hey may use (its default: all). */
  readonly cpus?: number;
}

/** The hey command line for `run`, as an argv array. */
export function heyArgs(run: HeyRun): string[] {
  if (!Number.isInteger(run.concurrency) || run.concurrency < 1) {
    throw new RangeError(`hey concurrency must be a positive integer, got ${run.concurrency}`);
  }
  const args = ['-z', `${Math.max(1, Math.round(run.durationMs))}ms`, '-c', String(run.concurrency)];
  if (run.rps !== undefined) {
    // hey's -q is per worker: it paces each worker with its own ticker.
    args.push('-q', String(run.rps / run.concurrency));
  }
  args.push('-t', String(Math.max(1, Math.ceil(run.timeoutMs / 1000))), '-m', run.method);
  if (run.body !== undefined) args.push('-d', run.body);
  if (run.contentType) args.push('-T', run.contentType);
  if (run.cpus !== undefined) args.push('-cpus', String(run.cpus));
  args.push(run.url);
  return args;
}

/** hey could not run, or printed something that is not its summary. */
export class HeyError extends Error {
  override name = 'HeyError';
}

/** hey's summary, in milliseconds. */
export interface HeySummary {
  /** Responses received (any HTTP status) plus transport errors. */
  readonly count: number;
  /** 2xx responses. */
  readonly okCount: number;
  /** Non-2xx responses plus transport errors. */
  readonly errorCount: number;
  /** hey's wall time for the whole run. */
  readonly totalMs: number;
  /** 2xx responses per second over the run. */
  readonly okRps: number;
  /** hey's own "Requests/sec" (errors included). */
  readonly heyRps: number;
  /** Percentile (10, 25, 50, 75, 90, 95, 99) → ms, over received responses; missing when hey had none. */
  readonly latencyMs: Readonly<Record<number, number>>;
  readonly slowestMs: number | undefined;
  readonly fastestMs: number | undefined;
  readonly averageMs: number | undefined;
  /** HTTP status → responses. */
  readonly statusCodes: Readonly<Record<number, number>>;
  /** Transport error text → count, most frequent first. */
  readonly errors: readonly { readonly error: string; readonly count: number }[];
}

function seconds(text: string, label: string): number | undefined {
  const m = new RegExp(`^\\s*${label}:\\s*(\\S+) secs\\s*$`, 'm').exec(text);
  if (!m) return undefined;
  const v = Number(m[1]);
  return Number.isFinite(v) ? v * 1000 : undefined;
}

/** The lines of one titled section of the summary, up to the next blank line. */
function section(text: string, title: string): string[] {
  const lines = text.split('\n');
  const start = lines.findIndex((l) => l.trim() === title);
  if (start < 0) return [];
  const out: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === '') break;
    out.push(line);
  }
  return out;
}

/**
 * Parses hey's default summary. Throws `HeyError` when the text is not one
 * (no "Summary:" block with its total and rate).
 */
export function parseHeySummary(text: string): HeySummary {
  const totalMs = seconds(text, 'Total');
  const rpsMatch = /^\s*Requests\/sec:\s*(\S+)\s*$/m.exec(text);
  if (!/^Summary:/m.test(text) || totalMs === undefined || !rpsMatch) {
    throw new HeyError('not a hey summary (no "Summary:" with Total and Requests/sec)');
  }
  const latencyMs: Record<number, number> = {};
  for (const line of section(text, 'Latency distribution:')) {
    // `  99%% in 0.0968 secs` (hey prints the template's `%%` literally).
    const m = /^\s*(\d+)%{1,2} in (\S+) secs\s*$/.exec(line);
    if (!m) continue;
    const p = Number(m[1]);
    const v = Number(m[2]) * 1000;
    // hey leaves `0%% in 0.0000` where it had too few samples to reach a percentile.
    if (p > 0 && Number.isFinite(v)) latencyMs[p] = v;
  }
  const statusCodes: Record<number, number> = {};
  for (const line of section(text, 'Status code distribution:')) {
    const m = /^\s*\[(\d+)\]\s+(\d+) responses\s*$/.exec(line);
    if (m) statusCodes[Number(m[1])] = (statusCodes[Number(m[1])] ?? 0) + Number(m[2]);
  }
  const errors = new Map<string, number>();
  for (const line of section(text, 'Error distribution:')) {
    const m = /^\s*\[(\d+)\]\s+(.*)$/.exec(line);
    if (m?.[1] !== undefined && m[2] !== undefined) {
      errors.set(m[2].trim(), (errors.get(m[2].trim()) ?? 0) + Number(m[1]));
    }
  }
  const received = Object.values(statusCodes).reduce((a, b) => a + b, 0);
  const okCount = Object.entries(statusCodes)
    .filter(([code]) => Number(code) >= 200 && Number(code) < 300)
    .reduce((a, [, n]) => a + n, 0);
  const transport = [...errors.values()].reduce((a, b) => a + b, 0);
  const finite = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? v : undefined);
  return {
    count: received + transport,
    okCount,
    errorCount: received - okCount + transport,
    totalMs,
    okRps: totalMs > 0 ? okCount / (totalMs / 1000) : 0,
    heyRps: Number(rpsMatch[1]),
    latencyMs,
    slowestMs: received > 0 ? finite(seconds(text, 'Slowest')) : undefined,
    fastestMs: received > 0 ? finite(seconds(text, 'Fastest')) : undefined,
    averageMs: received > 0 ? finite(seconds(text, 'Average')) : undefined,
    statusCodes,
    errors: [...errors]
      .map(([error, count]) => ({ error, count }))
      .sort((a, b) => b.count - a.count || a.error.localeCompare(b.error)),
  };
}

/**
 * Groups transport errors by kind, with the per-connection details (ports)
 * dropped: `read tcp 127.0.0.1:33790->…: connection reset by peer` and its
 * siblings become one `connection reset by peer` line.
 */
export function errorKinds(summary: HeySummary): { kind: string; count: number }[] {
  const kinds = new Map<string, number>();
  for (const { error, count } of summary.errors) {
    const tail = /: ([^:]+)$/.exec(error)?.[1]?.trim() ?? error;
    kinds.set(tail, (kinds.get(tail) ?? 0) + count);
  }
  return [...kinds]
    .map(([kind, count]) => ({ kind, count }))
    .sort((a, b) => b.count - a.count || a.kind.localeCompare(b.kind));
}

export interface HeySpawnOptions extends ToolRunOptions {
  readonly bin?: string;
}

/**
 * Runs hey and resolves with its parsed summary; rejects with `HeyError` on
 * failure. Aborting sends hey SIGINT: it stops and still prints its summary.
 */
export async function runHey(args: readonly string[], options: HeySpawnOptions = {}): Promise<HeySummary> {
  const bin = options.bin ?? HEY_BIN;
  if (!existsSync(bin)) {
    throw new HeyError(`hey is not installed at ${bin}; run \`node scripts/dev/bootstrap.mjs\`.`);
  }
  // The error distribution can list one line per failed connection: keep the head, bounded.
  const exit = await runTool(bin, args, { ...options, stdoutChars: 4_000_000 }).catch((err: Error) => {
    throw new HeyError(`could not start hey (${bin}): ${err.message}`);
  });
  if (exit.code !== 0) {
    throw new HeyError(
      `hey failed (${exit.code ?? exit.signal}): ${exit.stderr.trim() || exit.stdout.trim().slice(0, 500)}`,
    );
  }
  return parseHeySummary(exit.stdout);
}
