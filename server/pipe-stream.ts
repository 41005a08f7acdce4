/**
 * The stdout log destination when stdout is a pipe (a container runtime's log
 * pipe, `| tee`) or a socket (a child spawned by Node with `stdio: 'pipe'`,
 * the systemd journal): writes driven by epoll through a `net.Socket` on a
 * non-blocking descriptor (`stdoutPipe` below), in the shape of the SonicBoom streams
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
  /** Chunks accepted and not yet written, and their UTF-8 bytes (the socket counts a string's UTF-16 units). */
  private readonly queued = new Set<{ readonly chunk: string }>();
  private queuedBytes = 0;

  /** `fd`: a pipe's or socket's write end, which the stream owns (it is closed with the stream). `maxLength`: bytes it may hold. */
  constructor(
    fd: number,
    private readonly maxLength: number,
  ) {
    super();
    this.socket = new Socket({ fd, readable: false, writable: true });
    // An idle stream keeps no process alive; a write in progress still does (libuv's
    // own rule), which is why the server's exit is bounded by its flush timeout.
    this.socket.unref();
    this.socket.on('error', (err) => this.emit('error', err));
  }

  /** UTF-8 bytes accepted and not yet written to the pipe. */
  get _len(): number {
    return this.queuedBytes;
  }

  get _writing(): boolean {
    return this.queuedBytes > 0;
  }

  /**
   * Queues `chunk`; beyond `maxLength` queued bytes it is dropped (the `drop`
   * event), as SonicBoom's `maxLength` does, and so is a queued chunk the pipe
   * never took (its reader went away, or the stream ended).
   */
  write(chunk: string): boolean {
    if (this.socket.destroyed) throw new Error('the stdout pipe is closed');
    const bytes = Buffer.byteLength(chunk);
    if (this.queuedBytes + bytes > this.maxLength) {
      this.emit('drop', chunk);
      return false;
    }
    const entry = { chunk };
    this.queued.add(entry);
    this.queuedBytes += bytes;
    this.socket.write(chunk, (err) => {
      if (!this.queued.delete(entry)) return; // abandoned: already counted
      this.queuedBytes -= bytes;
      if (err) {
        // The reader is gone (EPIPE, reported once by the socket's 'error'), or the stream ended.
        this.emit('drop', chunk);
        return;
      }
      this.emit('write', bytes);
      if (this.queuedBytes === 0) this.emit('drain');
    });
    return true;
  }

  /** Never writes synchronously: a pipe can block forever. */
  flushSync(): void {}

  /**
   * Before exit: stops writing, and drops (the `drop` event, now: their write
   * callbacks would come too late) every chunk still queued. At most: a chunk
   * the pipe took in this very turn counts too.
   */
  abandon(): void {
    const left = [...this.queued];
    this.queued.clear();
    this.queuedBytes = 0;
    this.socket.destroy();
    for (const { chunk } of left) this.emit('drop', chunk);
  }

  end(): void {
    this.socket.destroy();
  }
}

/**
 * What stdout is, and the descriptor a PipeStream should write to, if any:
 * - a pipe (a container runtime's log pipe, `| tee`): a descriptor of its own,
 *   opened through /proc/self/fd/1, so the inherited open file description
 *   (shared with whoever else holds it) stays blocking as it was; undefined
 *   when /proc cannot open it (a pipe of another user: an entrypoint that
 *   switched users);
 * - a socket (what Node's `spawn` gives a child for `stdio: 'pipe'`, the
 *   systemd journal): fd 1 itself, which /proc cannot reopen; it becomes
 *   non-blocking, as Node's own `process.stdout` makes it;
 * - anything else (a file, a terminal): undefined; a file keeps fd 1, as
 *   reopened it would lose O_APPEND's position.
 */
export function stdoutPipe(): { kind: 'pipe' | 'socket' | 'other'; fd: number | undefined } {
  let kind: 'pipe' | 'socket' | 'other' = 'other';
  try {
    const s = fstatSync(1);
    kind = s.isFIFO() ? 'pipe' : s.isSocket() ? 'socket' : 'other';
    if (kind === 'socket') return { kind, fd: 1 };
    if (kind !== 'pipe') return { kind, fd: undefined };
    return { kind, fd: openSync('/proc/self/fd/1', constants.O_WRONLY | constants.O_NONBLOCK) };
  } catch {
    return { kind, fd: undefined };
  }
}
