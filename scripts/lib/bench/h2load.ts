/**
 * A leaner load generator for gRPC targets than ghz: h2load (Debian's
 * `nghttp2-client`, C, one event loop per thread) posting one pre-encoded
 * gRPC message. ghz builds, encodes and decodes every call in Go with a
 * goroutine per worker, at 170–240 µs of CPU per call on this machine; h2load
 * only frames HTTP/2, so the cores it leaves are the servers'.
 *
 * What it cannot see: gRPC carries its status in trailers after an HTTP 200,
 * and h2load judges a call by its HTTP status only. So a phase also reads
 * the servers' own `inference_requests_total` before and after (by gRPC
 * code) and counts every non-OK call there as an error (`grpcErrors`).
 * Latencies come from h2load's `--log-file` (one row per request: start µs
 * since the epoch, HTTP status or -1 for a failed stream, µs to the end of
 * the response), as its printed summary has no percentiles.
 */
import { existsSync, readFileSync } from 'node:fs';
import { PredictRequest } from '../../../server/generated/inference/v1/inference.js';
import { grpcFrame } from '../load/h2-generator.js';
import { SEED_RECORD } from '../load/payload.js';
import { PREDICT_CALL } from '../load/run.js';

/** Where Debian's nghttp2-client installs it. */
export const H2LOAD_BIN = '/usr/bin/h2load';

export const h2loadInstalled = (bin = H2LOAD_BIN) => existsSync(bin);

/** The seed record's Predict request for `model` (policy's version), framed for the wire. */
export function predictBody(model: string): Buffer {
  return grpcFrame(
    PredictRequest.encode({ model, version: '', requestId: '', instances: [{ ...SEED_RECORD }] }).finish(),
  );
}

export interface H2loadRun {
  /** host:port (plaintext HTTP/2, prior knowledge). */
  readonly host: string;
  readonly bodyFile: string;
  /** HTTP/2 connections (h2load's clients). */
  readonly clients: number;
  /** Concurrent streams per connection. */
  readonly streams: number;
  /** Total calls per second, spread over the clients (h2load paces per client). */
  readonly rps?: number;
  readonly durationMs: number;
  readonly logFile: string;
  readonly threads?: number;
}

/** The h2load argv for `run` (never a shell string). */
export function h2loadArgs(run: H2loadRun): string[] {
  const args = [
    `--clients=${run.clients}`,
    `--max-concurrent-streams=${run.streams}`,
    `--threads=${run.threads ?? 1}`,
    `--duration=${Math.max(1, Math.round(run.durationMs / 1000))}`,
    `--data=${run.bodyFile}`,
    '--header=content-type: application/grpc',
    '--header=te: trailers',
    `--log-file=${run.logFile}`,
  ];
  if (run.rps !== undefined) args.push(`--rps=${Math.max(1, Math.round(run.rps / run.clients))}`);
  args.push(`http://${run.host}/${PREDICT_CALL}`);
  return args;
}

export interface H2loadCalls {
  readonly count: number;
  /** HTTP 200 responses (gRPC status is checked elsewhere). */
  readonly okCount: number;
  /** Failed streams (-1) and HTTP statuses other than 200, by kind. */
  readonly failures: Readonly<Record<string, number>>;
  /** First request start to last response end, ms. */
  readonly spanMs: number;
  /** Latencies of HTTP 200 responses, ms. */
  readonly p50Ms: number | undefined;
  readonly p90Ms: number | undefined;
  readonly p99Ms: number | undefined;
  readonly maxMs: number | undefined;
}

/** Nearest-rank percentile of sorted values. */
function rank(sorted: Float64Array, q: number): number | undefined {
  if (sorted.length === 0) return undefined;
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)];
}

/** Reads h2load's `--log-file` text (see the module comment); malformed rows fail loudly. */
export function parseH2loadLog(text: string): H2loadCalls {
  const lat: number[] = [];
  const failures: Record<string, number> = {};
  let count = 0;
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const [startRaw, statusRaw, usRaw] = line.split('\t');
    const start = Number(startRaw);
    const status = Number(statusRaw);
    const us = Number(usRaw);
    if (!Number.isFinite(start) || !Number.isInteger(status) || !Number.isFinite(us)) {
      throw new Error(`h2load log: bad row "${line.slice(0, 80)}"`);
    }
    count++;
    first = Math.min(first, start);
    last = Math.max(last, start + us);
    if (status === 200) lat.push(us / 1000);
    else {
      const kind = status === -1 ? 'failed stream' : `HTTP ${status}`;
      failures[kind] = (failures[kind] ?? 0) + 1;
    }
  }
  const sorted = Float64Array.from(lat).sort();
  return {
    count,
    okCount: lat.length,
    failures,
    spanMs: count === 0 ? 0 : (last - first) / 1000,
    p50Ms: rank(sorted, 0.5),
    p90Ms: rank(sorted, 0.9),
    p99Ms: rank(sorted, 0.99),
    maxMs: sorted.length === 0 ? undefined : sorted[sorted.length - 1],
  };
}

export const readH2loadLog = (path: string) => parseH2loadLog(readFileSync(path, 'utf8'));
