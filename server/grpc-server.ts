/**
 * The grpc-js server with the protections grpc-js does not offer on its own.
 *
 * grpc-js answers INTERNAL for a body a non-inference service cannot decode
 * and for a malformed `grpc-timeout`; it buffers a request without bound in
 * time (a stream that announces 4 MiB and never sends the last byte holds its
 * memory forever, before any handler or `MAX_IN_FLIGHT` sees it); and it keeps
 * TCP connections that never complete the HTTP/2 preface. This module adds,
 * in front of grpc-js's own stream handling:
 *
 * - tolerant decoding for every service: a body that cannot be decoded is
 *   INVALID_ARGUMENT (services that handle the failure themselves, such as the
 *   inference service through its adapter, mark their definition);
 * - a strict `grpc-timeout` check (PROTOCOL-HTTP2.md: 1–8 ASCII digits and a
 *   unit H M S m u n): anything else is INVALID_ARGUMENT;
 * - a request-body deadline (`REQUEST_BODY_TIMEOUT_MS`): a unary request must
 *   arrive whole (half-closed), and a streamed message must complete, within
 *   it, else DEADLINE_EXCEEDED;
 * - a budget for bytes of requests still arriving (`MAX_PENDING_REQUEST_BYTES`)
 *   across all connections: the stream that would exceed it is refused with
 *   RESOURCE_EXHAUSTED, so unfinished streams cannot exhaust memory;
 * - a handshake deadline (`GRPC_HANDSHAKE_TIMEOUT_MS`): a connection that has
 *   not sent its HTTP/2 preface and SETTINGS by then is closed; and a cap on
 *   open connections (`GRPC_MAX_CONNECTIONS`).
 *
 * These hook grpc-js's HTTP/2 server where it is created
 * (`Server#createHttp2Server`, grpc-js 1.14, pinned by the lockfile); the
 * constructor fails loudly if that hook is gone, so an upgrade cannot
 * silently drop them (test/server/limits.test.ts covers each).
 */
import http2 from 'node:http2';
import {
  Server,
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServiceDefinition,
  status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { BaseServerInterceptingCall } from '@grpc/grpc-js/build/src/server-interceptors.js';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { DecodeFailure, handlesDecodeFailures, withTolerantDecoding } from './unary-handler.js';

/** The limits it enforces, as config.ts reads and documents them. */
export type ServerLimits = Pick<
  Config,
  | 'maxMessageBytes'
  | 'maxConcurrentStreams'
  | 'maxConnections'
  | 'handshakeTimeoutMs'
  | 'maxConnectionIdleMs'
  | 'maxConnectionAgeMs'
  | 'maxConnectionAgeGraceMs'
  | 'requestBodyTimeoutMs'
  | 'maxPendingRequestBytes'
>;

/**
 * A compressed request that does not decompress (a gzip or deflate body that
 * is not one) is the caller's mistake, but grpc-js answers it with INTERNAL
 * from inside its base call, where no interceptor sees it. Its decompression
 * step is wrapped once, here, to answer INVALID_ARGUMENT instead (found by
 * test/e2e/fuzz.test.ts). Too large stays RESOURCE_EXHAUSTED, an unknown
 * encoding UNIMPLEMENTED, as grpc-js has them.
 */
const patched = Symbol('decompression status patched');

function patchDecompressionStatus(): void {
  const proto = BaseServerInterceptingCall.prototype as unknown as {
    decompressMessage?: (...args: unknown[]) => unknown;
    [patched]?: true;
  };
  const original = proto.decompressMessage;
  if (typeof original !== 'function') {
    throw new Error('grpc-js no longer has decompressMessage; server/grpc-server.ts needs updating');
  }
  if (proto[patched]) return;
  proto[patched] = true;
  proto.decompressMessage = function (this: unknown, ...args: unknown[]) {
    const out = original.apply(this, args);
    if (!(out instanceof Promise)) return out;
    return out.catch((err: { code?: number }) => {
      throw err?.code === status.INTERNAL
        ? {
            code: status.INVALID_ARGUMENT,
            details: 'the request message could not be decompressed (grpc-encoding)',
          }
        : err;
    });
  };
}

/** `grpc-timeout`, exactly as PROTOCOL-HTTP2.md defines it. */
const GRPC_TIMEOUT = /^\d{1,8}[HMSmun]$/;

/** Why the server refused a stream before grpc-js handled it; counted and logged in summary. */
type Refusal = 'grpc-timeout' | 'body-timeout' | 'pending-bytes' | 'handshake-timeout';

/** Where a request stream's current gRPC message stands: its length prefix so far, then the bytes still missing. */
interface Frame {
  headerLeft: Buffer;
  bodyLeft: number;
}

const NO_BYTES = Buffer.alloc(0);

interface Tracked {
  readonly stream: http2.ServerHttp2Stream;
  /** Bytes counted against the pending budget (released when the request is whole). */
  bytes: number;
  /** For request-streaming methods only: the framing state of the message in progress. */
  readonly frame: Frame | undefined;
  timer: NodeJS.Timeout | undefined;
  done: boolean;
}

/** Ends a stream with a gRPC status as a trailers-only response, then RST_STREAM(NO_ERROR) (RFC 9113 §8.1). */
function answer(stream: http2.ServerHttp2Stream, code: status, message: string): void {
  if (stream.destroyed || stream.closed) return;
  try {
    if (!stream.headersSent) {
      stream.respond(
        {
          ':status': 200,
          'content-type': 'application/grpc+proto',
          'grpc-status': String(code),
          'grpc-message': encodeURIComponent(message),
        },
        { endStream: true },
      );
      stream.close(http2.constants.NGHTTP2_NO_ERROR);
    } else {
      stream.close(http2.constants.NGHTTP2_CANCEL);
    }
  } catch {
    stream.destroy();
  }
}

/**
 * `grpc.Server` with the limits above. Use `limitsSnapshot()` in tests;
 * `closeUnfinished()` at shutdown resets requests that will never be served.
 */
export class HardenedServer extends Server {
  private readonly paths = new Map<string, { requestStream: boolean; rejectUndecodable: boolean }>();
  private readonly tracked = new Set<Tracked>();
  private readonly openSessions = new Set<http2.ServerHttp2Session>();
  private pendingBytes = 0;
  private readonly refused = new Map<Refusal, number>();
  private summaryTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly limits: ServerLimits,
    private readonly logger: Logger,
  ) {
    patchDecompressionStatus();
    const interceptor: ServerInterceptor = (method, call) => this.intercept(method.path, call);
    super({
      'grpc.max_receive_message_length': limits.maxMessageBytes,
      'grpc.max_send_message_length': limits.maxMessageBytes,
      'grpc.max_concurrent_streams': limits.maxConcurrentStreams,
      'grpc.max_connection_idle_ms': limits.maxConnectionIdleMs,
      'grpc.max_connection_age_ms': limits.maxConnectionAgeMs,
      'grpc.max_connection_age_grace_ms': limits.maxConnectionAgeGraceMs,
      interceptors: [interceptor],
    });
    const self = this as unknown as { createHttp2Server?: (creds: unknown) => http2.Http2Server };
    const create = self.createHttp2Server;
    if (typeof create !== 'function') {
      throw new Error('grpc-js no longer has Server#createHttp2Server; server/grpc-server.ts needs updating');
    }
    self.createHttp2Server = (creds: unknown) => {
      const h2 = create.call(this, creds);
      this.harden(h2);
      return h2;
    };
  }

  /** Registers a service with tolerant decoding (unless it decodes tolerantly itself). */
  override addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    const own = handlesDecodeFailures(service);
    for (const method of Object.values(service)) {
      this.paths.set(method.path, { requestStream: method.requestStream, rejectUndecodable: !own });
    }
    super.addService(own ? service : withTolerantDecoding(service), implementation);
  }

  /** Bytes of requests still arriving (for tests and the shutdown log). */
  get pendingRequestBytes(): number {
    return this.pendingBytes;
  }

  /**
   * Resets every request that has not fully arrived (it could only hold
   * `tryShutdown` open until the grace period ends) and closes connections
   * that never completed their handshake. Returns how many streams it reset.
   */
  closeUnfinished(): number {
    let n = 0;
    for (const t of [...this.tracked]) {
      n++;
      this.release(t);
      answer(t.stream, status.UNAVAILABLE, 'the server is shutting down; retry on another replica');
    }
    for (const session of this.openSessions)
      if (!session.destroyed && !handshaken(session)) session.destroy();
    return n;
  }

  /** Stops the refusal summary timer. */
  stopReporting(): void {
    clearInterval(this.summaryTimer);
    this.report();
  }

  private intercept(path: string, call: ServerInterceptingCallInterface): ServerInterceptingCall {
    // Nothing to intercept: hand grpc-js its own call back, with no layer in between
    // (grpc-js chains interceptors by passing each one's result to the next). The
    // cast is to grpc-js's declared return type: this is its base call, which has
    // the interface (ServerInterceptingCallInterface) that is all grpc-js uses.
    if (!this.paths.get(path)?.rejectUndecodable) return call as ServerInterceptingCall;
    let rejected = false;
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (message: unknown, nextMessage: (m: unknown) => void) => {
            if (message instanceof DecodeFailure) {
              rejected = true;
              call.sendStatus({
                code: status.INVALID_ARGUMENT,
                details: `the request could not be decoded: ${message.reason}`,
              });
              return;
            }
            nextMessage(message);
          },
          onReceiveHalfClose: (nextHalfClose: () => void) => {
            if (!rejected) nextHalfClose();
          },
        }),
    });
  }

  private harden(h2: http2.Http2Server): void {
    h2.maxConnections = this.limits.maxConnections;
    h2.on('session', (session: http2.ServerHttp2Session) => {
      this.openSessions.add(session);
      const timer = setTimeout(() => {
        if (!handshaken(session) && !session.destroyed) {
          this.refuse('handshake-timeout');
          session.destroy();
        }
      }, this.limits.handshakeTimeoutMs);
      timer.unref();
      session.once('remoteSettings', () => {
        handshakes.add(session);
        clearTimeout(timer);
      });
      session.once('close', () => {
        clearTimeout(timer);
        this.openSessions.delete(session);
      });
      session.on('error', () => undefined);
    });
    const grpcListeners = h2.listeners('stream') as ((...args: unknown[]) => void)[];
    h2.removeAllListeners('stream');
    h2.on(
      'stream',
      (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) => {
        stream.on('error', () => undefined);
        const timeout = headers['grpc-timeout'];
        if (timeout !== undefined && !GRPC_TIMEOUT.test(String(timeout))) {
          this.refuse('grpc-timeout');
          stream.resume(); // discard the body
          answer(
            stream,
            status.INVALID_ARGUMENT,
            'grpc-timeout must be 1 to 8 digits and a unit (H, M, S, m, u or n), e.g. "500m"',
          );
          return;
        }
        for (const l of grpcListeners) l.call(h2, stream, headers, ...rest);
        this.track(stream, String(headers[':path'] ?? ''));
      },
    );
    this.summaryTimer ??= setInterval(() => this.report(), 10_000);
    this.summaryTimer.unref();
  }

  /**
   * Counts a stream's request bytes until the request is whole: for unary and
   * server-streaming methods until the client half-closes, for request
   * streams the bytes of the message in progress (parsed from the gRPC
   * length prefixes). Attached after grpc-js has paused the stream, so this
   * listener does not change its flow.
   */
  private track(stream: http2.ServerHttp2Stream, path: string): void {
    if (stream.destroyed || stream.closed || stream.readableEnded) return;
    const requestStream = this.paths.get(path)?.requestStream ?? false;
    const t: Tracked = {
      stream,
      bytes: 0,
      // Unary and server-streaming calls need no framing state (most calls: nothing allocated).
      frame: requestStream ? { headerLeft: NO_BYTES, bodyLeft: 0 } : undefined,
      timer: undefined,
      done: false,
    };
    this.tracked.add(t);
    const arm = () => {
      clearTimeout(t.timer);
      t.timer = setTimeout(() => {
        if (t.done) return;
        this.refuse('body-timeout');
        this.release(t);
        answer(
          stream,
          status.DEADLINE_EXCEEDED,
          `the request did not arrive within REQUEST_BODY_TIMEOUT_MS (${this.limits.requestBodyTimeoutMs} ms)`,
        );
      }, this.limits.requestBodyTimeoutMs);
      t.timer.unref();
    };
    if (!requestStream) arm();
    stream.on('data', (chunk: Buffer) => {
      if (t.done) return;
      if (t.frame) {
        const wasIdle = t.bytes === 0;
        const inMessage = messageBytes(t.frame, t.bytes, chunk);
        if (inMessage === 0) {
          this.pendingBytes -= t.bytes;
          t.bytes = 0;
          clearTimeout(t.timer);
          return;
        }
        this.pendingBytes += inMessage - t.bytes;
        t.bytes = inMessage;
        if (wasIdle) arm();
      } else {
        t.bytes += chunk.length;
        this.pendingBytes += chunk.length;
      }
      if (this.pendingBytes > this.limits.maxPendingRequestBytes) {
        this.refuse('pending-bytes');
        this.release(t);
        answer(
          stream,
          status.RESOURCE_EXHAUSTED,
          `too many request bytes still arriving (MAX_PENDING_REQUEST_BYTES ${this.limits.maxPendingRequestBytes}); retry with backoff`,
        );
      }
    });
    stream.once('end', () => this.release(t));
    stream.once('close', () => this.release(t));
  }

  private release(t: Tracked): void {
    if (t.done) return;
    t.done = true;
    clearTimeout(t.timer);
    this.pendingBytes -= t.bytes;
    t.bytes = 0;
    this.tracked.delete(t);
  }

  private refuse(why: Refusal): void {
    this.refused.set(why, (this.refused.get(why) ?? 0) + 1);
  }

  /** One WARN per period with what was refused, so an attack cannot flood the log. */
  private report(): void {
    if (this.refused.size === 0) return;
    this.logger.warn(
      { refused: Object.fromEntries(this.refused) },
      'refused streams or connections (limits)',
    );
    this.refused.clear();
  }
}

/** Sessions whose client SETTINGS (the end of its connection preface) arrived. */
const handshakes = new WeakSet<http2.ServerHttp2Session>();

function handshaken(session: http2.ServerHttp2Session): boolean {
  return handshakes.has(session);
}

/**
 * Advances a request stream's framing state by `chunk` (`bytes` of the current
 * message counted so far) and returns
 * the bytes of the message still in progress (0 when the chunk ended on a
 * message boundary).
 */
function messageBytes(frame: Frame, bytes: number, chunk: Buffer): number {
  let buf = chunk;
  let progress = bytes;
  while (buf.length > 0) {
    if (frame.bodyLeft > 0) {
      const n = Math.min(frame.bodyLeft, buf.length);
      frame.bodyLeft -= n;
      progress += n;
      buf = buf.subarray(n);
      if (frame.bodyLeft === 0) progress = 0;
      continue;
    }
    const need = 5 - frame.headerLeft.length;
    const take = buf.subarray(0, need);
    frame.headerLeft = Buffer.concat([frame.headerLeft, take]);
    progress += take.length;
    buf = buf.subarray(take.length);
    if (frame.headerLeft.length === 5) {
      frame.bodyLeft = frame.headerLeft.readUInt32BE(1);
      frame.headerLeft = NO_BYTES;
      if (frame.bodyLeft === 0) progress = 0;
    }
  }
  return progress;
}
