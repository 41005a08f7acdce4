import { randomUUID } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import {
  type handleUnaryCall,
  Metadata,
  type ServerUnaryCall,
  type ServiceDefinition,
  type sendUnaryData,
  status,
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { CallFields, CallRecord } from './call-log.js';
import type { Role } from './config.js';
import {
  cancelled,
  deadlineExceeded,
  invalidArgument,
  resourceExhausted,
  statusName,
  toServiceError,
  unavailable,
} from './errors.js';
import { REQUEST_ID_HEADER } from './headers.js';
import type { Labels, Metrics, RequestLabels } from './metrics.js';
import type { PredictionLine } from './prediction-line.js';
import { isRequestId } from './request-validation.js';

/**
 * Whether a cancelled call is one whose deadline passed, as its client saw it.
 *
 * A client whose deadline passes cancels the stream (RST_STREAM CANCEL, the
 * same frame as an explicit cancel), and its clock started before ours: the
 * server's deadline is the `grpc-timeout` counted from when this process got
 * round to the headers, later than the client's by the request's transit time
 * and by our event-loop delay at the time. So a cancel that arrives within
 * `slackMs` before our deadline is the client's deadline; the adapter passes
 * 20 ms + 10% of the timeout + the event loop's recent worst delay (a strict
 * comparison recorded a third to two thirds of 50 ms deadlines as CANCELLED).
 */
export function deadlineHasPassed(
  deadline: Date | number,
  slackMs: (timeoutMs: number) => number,
  startedAt: number,
  now = Date.now(),
): boolean {
  const at = deadline instanceof Date ? deadline.getTime() : Number(deadline);
  if (!Number.isFinite(at)) return false;
  return now >= at - slackMs(Math.max(0, at - startedAt));
}

/**
 * The event loop's worst delay over the last one to two seconds, in ms: how
 * late this process may have read a request's headers.
 */
class LoopLag {
  private readonly histogram = monitorEventLoopDelay({ resolution: 10 });
  private previousMaxMs = 0;
  private readonly timer: NodeJS.Timeout;

  constructor() {
    this.histogram.enable();
    this.timer = setInterval(() => {
      this.previousMaxMs = this.histogram.max / 1e6;
      this.histogram.reset();
    }, 1000);
    this.timer.unref();
  }

  get recentMaxMs(): number {
    return Math.max(this.previousMaxMs, this.histogram.max / 1e6);
  }

  stop(): void {
    clearInterval(this.timer);
    this.histogram.disable();
  }
}

/** A request body that could not be decoded; the adapter answers INVALID_ARGUMENT. */
export class DecodeFailure {
  constructor(readonly reason: string) {}
}

/** Marks a definition whose handlers answer a `DecodeFailure` themselves (non-enumerable, so grpc-js ignores it). */
const HANDLES_DECODE_FAILURES = Symbol('handles decode failures');

/** True when `withTolerantDecoding` made this definition: its service handles decode failures itself. */
export function handlesDecodeFailures(definition: ServiceDefinition): boolean {
  return HANDLES_DECODE_FAILURES in definition;
}

/**
 * Wraps every method's request decoder so a body that cannot be decoded (for
 * example nesting deeper than the protobuf decoder's recursion limit) reaches
 * the adapter as a `DecodeFailure`. grpc-js itself would answer INTERNAL for
 * any decoder error; a malformed request is the caller's to fix. Services
 * registered without it get the same through HardenedServer (grpc-server.ts).
 */
export function withTolerantDecoding<T extends ServiceDefinition>(definition: T): T {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(definition)) {
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return new DecodeFailure(err instanceof Error ? err.message : String(err));
        }
      },
    };
  }
  Object.defineProperty(out, HANDLES_DECODE_FAILURES, { value: true });
  return out as T;
}

/** Per-call state a handler may enrich for the adapter's log line and metrics. */
export interface CallContext {
  /** From the request body, else `x-request-id` metadata, else generated. */
  requestId: string;
  readonly metadata: Metadata;
  /** Metric and log labels; handlers set them once the model is resolved. */
  model: string;
  version: string;
  /** The handler's fields for the call's log line (call-log.ts): predictions, outcomes. */
  log: CallFields | undefined;
}

/** A handler: an async function of the decoded request. */
export type UnaryFn<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res>;

export interface UnaryAdapterOptions {
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** This server's A/B arm: a label of every request metric and a field of every log line. */
  readonly arm: Role;
  readonly maxInFlight: number;
  /** False once shutdown has begun: new calls get UNAVAILABLE. */
  readonly isAccepting: () => boolean;
  /**
   * Writes successful predictions' lines without pino's generic path (the
   * same bytes, cheaper); built for `logger` by `PredictionLine.for`. Absent:
   * every line goes through pino.
   */
  readonly predictionLine?: PredictionLine | undefined;
}

/**
 * The one place where cross-cutting work happens for every unary call: request
 * ids, the in-flight limit, the shutdown gate, error mapping, metrics and the
 * per-call log line. Handlers stay plain async functions, and the grpc-js
 * callback runs exactly once whatever they do.
 */
export class UnaryAdapter {
  private inFlight = 0;
  private readonly lag = new LoopLag();
  private readonly slackMs = (timeoutMs: number) => 20 + 0.1 * timeoutMs + this.lag.recentMaxMs;

  constructor(private readonly options: UnaryAdapterOptions) {
    options.metrics.readInFlightFrom(() => this.inFlight);
  }

  /** Stops the event-loop delay monitor (shutdown). */
  close(): void {
    this.lag.stop();
  }

  /** Requests currently inside a handler. */
  get active(): number {
    return this.inFlight;
  }

  wrap<Req, Res>(
    method: string,
    fn: UnaryFn<Req, Res>,
    logLevel: 'info' | 'debug',
  ): handleUnaryCall<Req, Res> {
    const { logger } = this.options;
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      const t0 = performance.now();
      const wallStart = Date.now();
      const header = call.metadata.get(REQUEST_ID_HEADER)[0];
      const ctx: CallContext = {
        // A header id that could not travel back in a trailer is replaced, not trusted.
        requestId: typeof header === 'string' && isRequestId(header) ? header : randomUUID(),
        metadata: call.metadata,
        model: '',
        version: '',
        log: undefined,
      };
      this.inFlight++;
      let done = false;
      // Settles the call exactly once; must not throw, whatever `err` is.
      const finish = (ok: boolean, err: unknown, response: Res | undefined) => {
        if (done) return;
        done = true;
        this.inFlight--;
        let code: status = status.OK;
        let internal = false;
        if (ok) {
          callback(null, response);
        } else {
          const mapped = toServiceError(err);
          code = mapped.error.code;
          internal = mapped.internal;
          const trailer = new Metadata();
          trailer.set(REQUEST_ID_HEADER, ctx.requestId); // always a valid metadata value (isRequestId)
          callback({ ...mapped.error, metadata: trailer });
        }
        try {
          this.record(method, ctx, code, t0, logLevel, ok ? undefined : err, internal);
        } catch (recordErr) {
          logger.error(
            { err: recordErr, requestId: ctx.requestId, method },
            'failed to record a finished call',
          );
        }
      };
      // A caller that cancels or runs out of deadline frees its slot at once,
      // and the call is counted with the status the caller saw.
      call.on('cancelled', () => {
        // grpc-js emits 'cancelled' after every call's trailers too; an error
        // (and its stack) is built only for a call that is still running.
        // (`on`, not `once`: `done` makes a second emit harmless, and the call
        // is not kept, so the listener needs no wrapper and no removal.)
        if (done) return;
        const expired = deadlineHasPassed(call.getDeadline(), this.slackMs, wallStart);
        finish(false, expired ? deadlineExceeded() : cancelled(), undefined);
      });
      try {
        if (call.cancelled) throw cancelled();
        if (!this.options.isAccepting())
          throw unavailable('server is shutting down; retry on another replica');
        if ((call.request as unknown) instanceof DecodeFailure) {
          throw invalidArgument(
            `the request could not be decoded: ${(call.request as unknown as DecodeFailure).reason}`,
          );
        }
        if (this.inFlight > this.options.maxInFlight) {
          throw resourceExhausted(
            `too many requests in flight (limit ${this.options.maxInFlight}); retry with backoff`,
          );
        }
        fn(call.request, ctx)
          .then(
            (res) => finish(true, undefined, res),
            (err: unknown) => finish(false, err, undefined),
          )
          .catch((err: unknown) =>
            logger.error({ err, requestId: ctx.requestId, method }, 'call settlement failed'),
          );
      } catch (err) {
        finish(false, err, undefined);
      }
    };
  }

  /** Metrics and the one log line of a finished call. */
  private record(
    method: string,
    ctx: CallContext,
    code: status,
    t0: number,
    okLevel: 'info' | 'debug',
    err: unknown,
    internal: boolean,
  ): void {
    const { logger, metrics, arm } = this.options;
    const seconds = (performance.now() - t0) / 1000;
    const labels: Labels<RequestLabels> = {
      method,
      model: ctx.model,
      version: ctx.version,
      code: statusName(code),
      arm,
    };
    metrics.requests.inc(labels);
    metrics.requestDuration.observe(labels, seconds);
    const level = code === status.OK ? okLevel : internal ? 'error' : 'warn';
    if (!logger.isLevelEnabled(level)) return;
    const call: CallRecord = {
      requestId: ctx.requestId,
      method,
      model: ctx.model,
      version: ctx.version,
      arm,
      code: labels.code,
      latencyMs: Math.round(seconds * 1e6) / 1e3,
    };
    const fast = this.options.predictionLine;
    if (fast && code === status.OK && ctx.log?.event === 'prediction') {
      fast.write(okLevel, call, ctx.log, method);
      return;
    }
    // Expected errors keep their client-safe message; unexpected ones their stack (`err`, below).
    const record: CallRecord =
      err !== undefined && !internal
        ? { ...call, message: err instanceof Error ? err.message : String(err) }
        : call;
    // A handler's fields only describe a call that succeeded (a failed call's outputs do not exist).
    const line =
      code === status.OK && ctx.log ? { ...record, ...ctx.log } : internal ? { ...record, err } : record;
    logger[level](line, method);
  }
}
