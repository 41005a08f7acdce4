/**
 * gRPC over a raw HTTP/2 session (node:http2), for requests no well-behaved
 * client sends: bodies that are not valid protobuf, broken framing, any
 * header value (a malformed grpc-timeout), streams left unfinished.
 */
import http2 from 'node:http2';
import { grpcFrame } from '../../scripts/lib/load/h2-generator.js';

export interface RawRequest {
  /** `/package.Service/Method`. */
  readonly path: string;
  /** The message bytes; framed (5-byte gRPC prefix) unless `framed` is false. */
  readonly body: Buffer;
  /** False: `body` is sent as is (it is its own framing, possibly broken). */
  readonly framed?: boolean;
  /** Extra request headers (metadata), sent verbatim. */
  readonly headers?: Readonly<Record<string, string | string[]>>;
  /** Give up after this long (a hang). */
  readonly timeoutMs?: number;
}

export interface RawResult {
  /** `grpc-status` from trailers (or a trailers-only response); undefined if none came. */
  readonly grpcStatus: number | undefined;
  readonly grpcMessage: string | undefined;
  readonly httpStatus: number | undefined;
  /** The RST_STREAM code when the stream was reset instead of answered. */
  readonly rstCode: number | undefined;
  readonly timedOut: boolean;
  readonly ms: number;
}

/** A gRPC length-prefixed message (the one framing, from the load generator). */
export const frame = grpcFrame;

/** One HTTP/2 connection for many raw calls. */
export class RawClient {
  readonly session: http2.ClientHttp2Session;
  private readonly ready: Promise<void>;

  constructor(readonly authority: string) {
    this.session = http2.connect(`http://${authority}`);
    this.session.on('error', () => undefined);
    this.ready = new Promise((resolve, reject) => {
      this.session.once('connect', () => resolve());
      this.session.once('error', reject);
    });
  }

  async call(r: RawRequest): Promise<RawResult> {
    await this.ready;
    const t0 = performance.now();
    return new Promise((resolve) => {
      let grpcStatus: number | undefined;
      let grpcMessage: string | undefined;
      let httpStatus: number | undefined;
      let settled = false;
      const stream = this.session.request({
        ':method': 'POST',
        ':path': r.path,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...r.headers,
      });
      const done = (timedOut: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        const rst = stream.rstCode;
        if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
        resolve({
          grpcStatus,
          grpcMessage,
          httpStatus,
          rstCode: grpcStatus === undefined && rst !== undefined ? rst : undefined,
          timedOut,
          ms: performance.now() - t0,
        });
      };
      const timer = setTimeout(() => done(true), r.timeoutMs ?? 5000);
      const take = (h: http2.IncomingHttpHeaders) => {
        if (h[':status'] !== undefined) httpStatus = Number(h[':status']);
        if (h['grpc-status'] !== undefined) grpcStatus = Number(h['grpc-status']);
        if (h['grpc-message'] !== undefined) grpcMessage = decodeURIComponent(String(h['grpc-message']));
      };
      stream.on('response', take);
      stream.on('trailers', take);
      stream.on('data', () => undefined);
      stream.on('error', () => undefined);
      stream.on('close', () => done(false));
      stream.end(r.framed === false ? r.body : frame(r.body));
    });
  }

  close(): void {
    this.session.close();
  }
}
