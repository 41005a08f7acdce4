/**
 * The stdout log destination when stdout is a pipe (a container runtime's log
 * pipe, `| tee`): writes driven by epoll through a `net.Socket` on a
 * non-blocking descriptor of its own, in the shape of the SonicBoom streams
 * logger.ts guards (`write`, the `error`/`drop`/`write`/`drain` events, and
 * the buffer state GuardedDestination reads).
 *
 * Why not SonicBoom, as for the file: SonicBoom writes with `fs.write` on a
 * libuv pool thread. On a blocking pipe whose reader stalled (a stuck log
 * driver) that thread waited in write() for good, and Node's exit waits for
 * its pool threads: neither SIGTERM nor a second one could end the process,
 * only SIGKILL. On a non-blocking pipe SonicBoom retries EAGAIN after a fixed
 * 100 ms, which caps delivery at one pipe's worth (64 KiB) per 100 ms as soon
 * as the pipe fills once: a bursty reader that keeps up on average lost
 * thousands of lines a minute. Here the kernel says when the pipe has room,
 * so lines flow at the reader's pace and nothing ever blocks.
 */
import { EventEmitter } from 'node:events';
import { constants, fstatSync, openSync } from 'node:fs';
import { Socket } from 'node:net';

export class PipeStream extends EventEmitter {
  /** SonicBoom's state as GuardedDestination reads it: never flushed synchronously (fd < 0), no buffers of its own. */
  readonly fd = -1;
  _bufs: (string | Buffer)[] = [];
  _writingBuf: string | Buffer = '';
  private readonly socket: Socket;

  /** `fd`: a pipe's write end, which the stream owns (it is closed with the stream). `maxLength`: bytes it may hold. */
  constructor(
    fd: number,
    private readonly maxLength: number,
  ) {
    super();
    this.socket = new Socket({ fd, readable: false, writable: true });
    // Lines still queued at exit are the bounded flush's business, not a reason to stay alive.
    this.socket.unref();
    this.socket.on('error', (err) => this.emit('error', err));
  }

  /** Bytes accepted and not yet written to the pipe. */
  get _len(): number {
    return this.socket.writableLength;
  }

  get _writing(): boolean {
    return this.socket.writableLength > 0;
  }

  /** Queues `chunk`; beyond `maxLength` queued bytes it is dropped (the `drop` event), as SonicBoom's `maxLength` does. */
  write(chunk: string): boolean {
    if (this.socket.destroyed) throw new Error('the stdout pipe is closed');
    const bytes = Buffer.byteLength(chunk);
    if (this.socket.writableLength + bytes > this.maxLength) {
      this.emit('drop', chunk);
      return false;
    }
    this.socket.write(chunk, (err) => {
      if (err) return; // reported once, by the socket's 'error'
      this.emit('write', bytes);
      if (this.socket.writableLength === 0) this.emit('drain');
    });
    return true;
  }

  /** Never writes synchronously: a pipe can block forever. */
  flushSync(): void {}

  end(): void {
    this.socket.destroy();
  }
}

/**
 * A non-blocking descriptor of stdout's pipe, of its own: opened through
 * /proc/self/fd/1, so the inherited open file description (shared with
 * stderr, and with whoever else holds it) stays as it was. Undefined when
 * stdout is not a pipe (a file keeps fd 1: reopened, it would lose
 * O_APPEND's position) or /proc cannot open it; `pipe` says which.
 */
export function stdoutPipe(): { fd: number | undefined; pipe: boolean } {
  let pipe = false;
  try {
    pipe = fstatSync(1).isFIFO();
    if (!pipe) return { fd: undefined, pipe };
    return { fd: openSync('/proc/self/fd/1', constants.O_WRONLY | constants.O_NONBLOCK), pipe };
  } catch {
    return { fd: undefined, pipe };
  }
}
