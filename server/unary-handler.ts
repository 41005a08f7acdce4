import { randomUUID } from 'node:crypto';
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
import { isRequestId } from './request-validation.js';

/** A request body that could not be decoded; the adapter answers INVALID_ARGUMENT. */
class DecodeFailure {
  constructor(readonly reason: string) {}
}

/**
 * Wraps every method's request decoder so a body that cannot be decoded (for
 * example nesting deeper than the protobuf decoder's recursion limit) reaches
 * the adapter as a `DecodeFailure`. grpc-js itself would answer INTERNAL for
 * any decoder error; a malformed request is the caller's to fix.
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
}

/**
 * The one place where cross-cutting work happens for every unary call: request
 * ids, the in-flight limit, the shutdown gate, error mapping, metrics and the
 * per-call log line. Handlers stay plain async functions, and the grpc-js
 * callback runs exactly once whatever they do.
 */
export class UnaryAdapter {
  private inFlight = 0;

  constructor(private readonly options: UnaryAdapterOptions) {}

  /** Requests currently inside a handler. */
  get active(): number {
    return this.inFlight;
  }

  wrap<Req, Res>(
    method: string,
    fn: UnaryFn<Req, Res>,
    logLevel: 'info' | 'debug',
  ): handleUnaryCall<Req, Res> {
    const { logger, metrics } = this.options;
    return (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => {
      const t0 = performance.now();
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
      metrics.inFlight.inc();
      let done = false;
      // Settles the call exactly once; must not throw, whatever `err` is.
      const finish = (ok: boolean, err: unknown, response: Res | undefined) => {
        if (done) return;
        done = true;
        this.inFlight--;
        metrics.inFlight.dec();
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
      call.once('cancelled', () => {
        const deadline = call.getDeadline();
        const expired =
          deadline instanceof Date ? deadline.getTime() <= Date.now() : Number(deadline) <= Date.now();
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
    const record: CallRecord = {
      requestId: ctx.requestId,
      method,
      model: ctx.model,
      version: ctx.version,
      arm,
      code: labels.code,
      latencyMs: Math.round(seconds * 1e6) / 1e3,
      // Expected errors keep their client-safe message; unexpected ones their stack (`err`, below).
      ...(err !== undefined && !internal
        ? { message: err instanceof Error ? err.message : String(err) }
        : {}),
    };
    // A handler's fields only describe a call that succeeded (a failed call's outputs do not exist).
    const line =
      code === status.OK && ctx.log ? { ...record, ...ctx.log } : internal ? { ...record, err } : record;
    logger[level](line, method);
  }
}
