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
import { invalidArgument, resourceExhausted, statusName, toServiceError, unavailable } from './errors.js';
import type { Metrics } from './metrics.js';

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
  /** Extra fields for the call's log line (prediction inputs and outputs). */
  log: Record<string, unknown> | undefined;
}

/** A handler: an async function of the decoded request. */
export type UnaryFn<Req, Res> = (request: Req, ctx: CallContext) => Promise<Res>;

export interface UnaryAdapterOptions {
  readonly logger: Logger;
  readonly metrics: Metrics;
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
      const header = call.metadata.get('x-request-id')[0];
      const ctx: CallContext = {
        requestId: typeof header === 'string' && header !== '' ? header : randomUUID(),
        metadata: call.metadata,
        model: '',
        version: '',
        log: undefined,
      };
      this.inFlight++;
      metrics.inFlight.inc();
      let done = false;
      const finish = (err: unknown, response: Res | undefined) => {
        if (done) return;
        done = true;
        this.inFlight--;
        metrics.inFlight.dec();
        let code: status = status.OK;
        if (err === undefined) {
          callback(null, response);
        } else {
          const mapped = toServiceError(err);
          code = mapped.error.code;
          const trailer = new Metadata();
          trailer.set('x-request-id', ctx.requestId);
          callback({ ...mapped.error, metadata: trailer });
          if (mapped.internal) {
            logger.error({ err, requestId: ctx.requestId, method }, 'unexpected error; answered INTERNAL');
          }
        }
        const seconds = (performance.now() - t0) / 1000;
        const labels = { method, model: ctx.model, version: ctx.version, code: statusName(code) };
        metrics.requests.inc(labels);
        metrics.requestDuration.observe(labels, seconds);
        const level = code === status.OK ? logLevel : code === status.INTERNAL ? 'error' : 'warn';
        if (logger.isLevelEnabled(level)) {
          logger[level](
            {
              requestId: ctx.requestId,
              method,
              model: ctx.model,
              version: ctx.version,
              code: labels.code,
              ...(err === undefined ? {} : { message: (err as Error).message }),
              latencyMs: Math.round(seconds * 1e6) / 1e3,
              ...ctx.log,
            },
            method,
          );
        }
      };
      try {
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
        fn(call.request, ctx).then(
          (res) => finish(undefined, res),
          (err: unknown) => finish(err, undefined),
        );
      } catch (err) {
        finish(err, undefined);
      }
    };
  }
}
