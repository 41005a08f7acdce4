/**
 * The project's own gRPC load generator, over node:http2, for what ghz
 * cannot report: which A/B arm answered each call. ghz's report keeps a
 * call's time, latency and status, never its response headers, so it cannot
 * split latency or errors by arm. This generator reads Envoy's `x-ab-arm`
 * response header on every call (or, sent to one server directly, where no
 * Envoy adds the header, the `arm` the Predict response carries), the
 * gRPC status from the trailers, and returns its calls as a ghz-shaped
 * report (ghz-report.ts) whose details also carry the arm, so the summary,
 * SLO checks and HTML report read both generators alike.
 *
 * It speaks gRPC as the HTTP/2 protocol document has it
 * (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md): POST with
 * `content-type: application/grpc` and `te: trailers`, length-prefixed
 * messages, `grpc-status`/`grpc-message` in the trailers or in a
 * trailers-only response; a non-200 HTTP status maps to a gRPC code as
 * grpc's http-grpc-status-mapping.md says.
 */
import { type ClientHttp2Session, connect, constants, type IncomingHttpHeaders } from 'node:http2';
import { performance } from 'node:perf_hooks';
import { AB_ARM_HEADER } from '../../../server/headers.js';
import { type GhzDetail, type GhzReport, LATE_SEND_MS, type SendSchedule } from './ghz-report.js';
import { goCodeName } from './summary.js';

/** The generator could not run at all (the target refused the connection, say). */
export class H2GeneratorError extends Error {
  override name = 'H2GeneratorError';
}

/** A gRPC length-prefixed message: the compressed flag byte, 4-byte big-endian length, the bytes. */
export function grpcFrame(message: Uint8Array, compressed = false): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt8(compressed ? 1 : 0, 0);
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** One call as the generator saw it. */
export interface H2Call {
  /** Start, ms since the epoch: the time it was due at a fixed rate, else when it was sent. */
  readonly startMs: number;
  /**
   * From `startMs` to the end of the call. At a fixed rate that includes any
   * wait for a free worker (`sendLagNs`): a generator that measured from the
   * send instead would stop counting exactly when the server falls behind
   * (coordinated omission), and report the p99 of a load it did not send.
   */
  readonly latencyNs: number;
  /** How late the call was sent after it was due (0 in a closed loop). */
  readonly sendLagNs: number;
  /** gRPC status code. */
  readonly code: number;
  readonly message: string;
  /** `x-ab-arm`, else the response's `arm`, else ''. */
  readonly arm: string;
}

export interface H2Request {
  /** The framed gRPC request message (see `grpcFrame`). */
  readonly body: Buffer;
  readonly headers: Readonly<Record<string, string>>;
}

export interface H2GeneratorRun {
  /** `http://host:port` (plaintext, prior knowledge) or `https://host:port`. */
  readonly origin: string;
  /** PEM roots for https (default: the system's). */
  readonly ca?: Buffer;
  /** `/package.Service/Method`. */
  readonly path: string;
  /** Call n's message and metadata. */
  readonly request: (n: number) => H2Request;
  /** Reads the arm out of a successful response message, when no header names it. */
  readonly armOf?: (message: Buffer) => string;
  /** Workers: the closed-loop concurrency, or the most calls in flight at `rps`. */
  readonly concurrency: number;
  /** Fixed rate; omitted: closed loop. */
  readonly rps?: number;
  readonly connections: number;
  readonly durationMs: number;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  readonly onTick?: (elapsedMs: number) => void;
  readonly tickMs?: number;
}

/** grpc's http-grpc-status-mapping.md: the gRPC code of a response without grpc-status. */
export function codeOfHttpStatus(status: number): number {
  switch (status) {
    case 400:
      return 13;
    case 401:
      return 16;
    case 403:
      return 7;
    case 404:
      return 12;
    case 429:
    case 502:
    case 503:
    case 504:
      return 14;
    default:
      return 2;
  }
}

function grpcMessage(h: IncomingHttpHeaders): string {
  const raw = h['grpc-message'];
  if (typeof raw !== 'string') return '';
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** The first length-prefixed message of a response body, if complete. */
function firstMessage(chunks: readonly Buffer[]): Buffer | undefined {
  const all = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
  if (all.length < 5) return undefined;
  const n = all.readUInt32BE(1);
  return all.length >= 5 + n ? all.subarray(5, 5 + n) : undefined;
}

/** One call on `session`; never rejects (a failure is a call with its code). */
function call(
  session: ClientHttp2Session,
  run: H2GeneratorRun,
  n: number,
  dueAt: number | undefined,
): Promise<H2Call> {
  const { body, headers } = run.request(n);
  const sentAt = performance.now();
  // At a fixed rate the clock starts when the call was due, not when a worker got to it.
  const t0 = dueAt === undefined ? sentAt : Math.min(dueAt, sentAt);
  const sendLagNs = Math.round((sentAt - t0) * 1e6);
  const startMs = Date.now() - (sentAt - t0);
  return new Promise((resolve) => {
    let code: number | undefined;
    let message = '';
    let arm = '';
    let done = false;
    const chunks: Buffer[] = [];
    const finish = (c: number, m: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (c === 0 && arm === '' && run.armOf) {
        const msg = firstMessage(chunks);
        if (msg) arm = run.armOf(msg);
      }
      resolve({
        startMs,
        latencyNs: Math.round((performance.now() - t0) * 1e6),
        sendLagNs,
        code: c,
        message: m,
        arm,
      });
    };
    let req: ReturnType<ClientHttp2Session['request']>;
    try {
      req = session.request({
        ':method': 'POST',
        ':path': run.path,
        'content-type': 'application/grpc',
        te: 'trailers',
        'grpc-timeout': `${run.timeoutMs}m`,
        ...headers,
      });
    } catch (err) {
      // The connection went away (the peer closed or reset it, a GOAWAY while draining):
      // the call fails as gRPC clients report it, and the caller reconnects.
      done = true;
      const latencyNs = Math.round((performance.now() - t0) * 1e6);
      resolve({ startMs, latencyNs, sendLagNs, code: 14, message: (err as Error).message, arm });
      return;
    }
    const timer = setTimeout(() => {
      req.close(constants.NGHTTP2_CANCEL);
      finish(4, 'client deadline exceeded');
    }, run.timeoutMs);
    let responded = false;
    req.on('response', (h) => {
      responded = true;
      const a = h[AB_ARM_HEADER];
      if (typeof a === 'string') arm = a;
      const http = Number(h[':status']);
      if (http !== 200) {
        code = codeOfHttpStatus(http);
        message = `HTTP ${http}`;
      } else if (h['grpc-status'] !== undefined) {
        // Trailers-only response.
        code = Number(h['grpc-status']);
        message = grpcMessage(h);
      }
    });
    req.on('trailers', (t) => {
      if (t['grpc-status'] !== undefined) {
        code = Number(t['grpc-status']);
        message = grpcMessage(t);
      }
    });
    req.on('data', (d: Buffer) => {
      if (run.armOf && chunks.length < 4) chunks.push(d);
    });
    req.on('error', (err) => finish(14, err.message));
    req.on('close', () => {
      if (code !== undefined) return finish(code, message);
      // No status: no answer at all, the connection went away under the call (UNAVAILABLE,
      // as grpc-js says "Connection dropped"); a response cut short is INTERNAL.
      const lost =
        !responded || session.destroyed || session.closed || req.rstCode === constants.NGHTTP2_REFUSED_STREAM;
      finish(
        lost ? 14 : 13,
        lost ? 'connection closed before the call ended' : 'stream closed without grpc-status',
      );
    });
    req.end(body);
  });
}

/**
 * Runs calls as `run` says until its duration is over (calls in flight then
 * finish and count, like ghz's `--duration-stop=wait`), or the signal aborts.
 */
export async function generate(run: H2GeneratorRun): Promise<{
  calls: H2Call[];
  totalMs: number;
  aborted: boolean;
  reconnects: number;
  /** At a fixed rate: calls due, sent, and sent late. */
  schedule?: SendSchedule;
}> {
  const sessions: ClientHttp2Session[] = [];
  const open = () => {
    const s = connect(run.origin, run.ca ? { ca: run.ca } : {});
    s.on('error', () => undefined); // each stream reports its own failure
    return s;
  };
  let reconnects = 0;
  let tick: NodeJS.Timeout | undefined;
  try {
    for (let i = 0; i < Math.max(1, run.connections); i++) {
      const s = open();
      await new Promise<void>((resolve, reject) => {
        s.once('connect', () => resolve());
        s.once('error', (err: Error) =>
          reject(new H2GeneratorError(`cannot connect to ${run.origin}: ${err.message}`)),
        );
      });
      sessions.push(s);
    }
    const calls: H2Call[] = [];
    const t0 = performance.now();
    const end = t0 + run.durationMs;
    const stopped = () => performance.now() >= end || run.signal?.aborted === true;
    let next = 0;
    tick = run.onTick
      ? setInterval(() => run.onTick?.(performance.now() - t0), run.tickMs ?? 1000)
      : undefined;
    /** Connection n mod connections, opened again when the peer closed it (a restart, a drain's GOAWAY). */
    const sessionFor = (n: number) => {
      const i = n % sessions.length;
      const s = sessions[i] as ClientHttp2Session;
      if (!s.closed && !s.destroyed) return s;
      reconnects++;
      const fresh = open(); // requests queue until it connects; a refused one fails them
      sessions[i] = fresh;
      return fresh;
    };
    const send = async (n: number, dueAt: number | undefined) => {
      calls.push(await call(sessionFor(n), run, n, dueAt));
    };
    // Closed loop: each worker sends its next call when the last returns. At a
    // rate, call n is due at n / rps and the next free worker sends it then.
    const interval = run.rps === undefined ? 0 : 1000 / run.rps;
    const worker = async () => {
      for (;;) {
        if (stopped()) return;
        const n = next++;
        let due: number | undefined;
        if (interval > 0) {
          due = t0 + n * interval;
          if (due >= end) return;
          const wait = due - performance.now();
          if (wait > 1) await new Promise((r) => setTimeout(r, wait));
          if (run.signal?.aborted) return;
        }
        await send(n, due);
      }
    };
    await Promise.all(Array.from({ length: run.concurrency }, worker));
    const totalMs = performance.now() - t0;
    const aborted = run.signal?.aborted === true;
    if (interval === 0) return { calls, totalMs, aborted, reconnects };
    // Due: every call whose time fell inside the run (up to the abort, if aborted).
    const dueWithin = aborted ? Math.min(totalMs, run.durationMs) : run.durationMs;
    let late = 0;
    let maxLagNs = 0;
    for (const c of calls) {
      if (c.sendLagNs > LATE_SEND_MS * 1e6) late++;
      if (c.sendLagNs > maxLagNs) maxLagNs = c.sendLagNs;
    }
    const due = Math.max(calls.length, Math.ceil(dueWithin / interval));
    return {
      calls,
      totalMs,
      aborted,
      reconnects,
      schedule: { due, sent: calls.length, late, maxLagMs: maxLagNs / 1e6 },
    };
  } finally {
    if (tick) clearInterval(tick);
    for (const s of sessions) s.close();
  }
}

/** Nearest-rank percentile of sorted values. */
function rank(sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? 0 : (sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] as number);
}

/** The calls as ghz would report them (durations in ns), with each detail's arm. */
export function toGhzReport(
  calls: readonly H2Call[],
  totalMs: number,
  meta: {
    date: string;
    name?: string;
    options: Record<string, unknown>;
    endReason?: 'timeout' | 'cancel';
    schedule?: SendSchedule;
  },
): GhzReport & { details: readonly (GhzDetail & { arm: string })[] } {
  const ok = Float64Array.from(calls.filter((c) => c.code === 0).map((c) => c.latencyNs)).sort();
  const statusCodeDistribution: Record<string, number> = {};
  const errorDistribution: Record<string, number> = {};
  const details = calls.map((c) => {
    const status = goCodeName(c.code);
    statusCodeDistribution[status] = (statusCodeDistribution[status] ?? 0) + 1;
    const error = c.code === 0 ? '' : `rpc error: code = ${status} desc = ${c.message}`;
    if (error !== '') errorDistribution[error] = (errorDistribution[error] ?? 0) + 1;
    return { timestamp: new Date(c.startMs).toISOString(), latency: c.latencyNs, error, status, arm: c.arm };
  });
  const sum = ok.reduce((a, x) => a + x, 0);
  return {
    ...(meta.name ? { name: meta.name } : {}),
    endReason: meta.endReason ?? 'timeout',
    date: meta.date,
    options: meta.options,
    count: calls.length,
    total: Math.round(totalMs * 1e6),
    average: ok.length === 0 ? 0 : sum / ok.length,
    fastest: ok.length === 0 ? 0 : (ok[0] as number),
    slowest: ok.length === 0 ? 0 : (ok[ok.length - 1] as number),
    rps: totalMs > 0 ? calls.length / (totalMs / 1000) : 0,
    errorDistribution,
    statusCodeDistribution,
    latencyDistribution:
      ok.length === 0
        ? null
        : [10, 25, 50, 75, 90, 95, 99].map((p) => ({ percentage: p, latency: rank(ok, p / 100) })),
    // The HTML report draws its own (logarithmic) histogram from the details.
    histogram: null,
    details,
    ...(meta.schedule ? { schedule: meta.schedule } : {}),
  };
}
