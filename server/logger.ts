import { fstatSync, mkdirSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type DestinationStream, type Logger } from 'pino';
import roll from 'pino-roll';
import { inputRedactPaths } from './call-log.js';
import type { Config } from './config.js';
import { PipeStream, stdoutPipe } from './pipe-stream.js';

/** The file name stem of rotated logs: `<dir>/server.<yyyy-MM-dd>.<n>.log`. */
export const LOG_FILE_STEM = 'server';

/** A log destination, as the `destination` label of `inference_log_write_errors_total` names it. */
export type LogDestinationName = 'file' | 'stdout';

/**
 * The most bytes LogOutput hands a destination in one chunk, for a
 * destination buffer of `bufferBytes` (LOG_BUFFER_BYTES): 64 KiB, or a
 * quarter of the buffer when that is smaller, so that the buffer's cap drops
 * lines, never a whole busy turn. A line longer than this goes alone.
 */
export function chunkBytes(bufferBytes: number): number {
  return Math.min(64 * 1024, Math.floor(bufferBytes / 4));
}

/** How often a failing destination is offered a line again, to find out whether it recovered. */
const PROBE_MS = 1000;

/** The limits `boundInputs` applies, as the root logger's log formatter carries them. */
export interface InputLimits {
  readonly maxChars: number;
  readonly budget: number;
}

/**
 * Where the log formatter keeps its `InputLimits`, so the hand-written
 * prediction line (prediction-line.ts) can apply the very same bounds, and
 * can tell this formatter from any other (which it declines).
 */
export const INPUT_LIMITS: unique symbol = Symbol('inference.inputLimits');

function options(log: Config['log']): pino.LoggerOptions {
  const limits: InputLimits = { maxChars: log.maxFieldChars, budget: log.maxLineBytes / 2 };
  // The one log field a client fills at will (the raw records): bounded before it is serialised.
  const bound = (object: Record<string, unknown>) =>
    'inputs' in object ? boundInputs(object, limits.maxChars, limits.budget) : object;
  return {
    level: log.level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: {
      level: (label) => ({ level: label }),
      log: Object.assign(bound, { [INPUT_LIMITS]: limits }),
    },
    redact: { paths: inputRedactPaths(log.redactFields), censor: '[redacted]' },
  };
}

/**
 * A copy of a log object whose `inputs` (a Predict's raw records) fit the
 * limits: each string value cut to `maxChars` characters, nested values to a
 * few levels and items, and whole instances left out once about `budget`
 * characters are used, with `inputsOmitted` saying how many. Without this, one
 * request of 256 instances full of long strings becomes a multi-megabyte line.
 */
export function boundInputs(
  object: Record<string, unknown>,
  maxChars: number,
  budget: number,
): Record<string, unknown> {
  const inputs = object.inputs;
  if (!Array.isArray(inputs)) return object;
  let used = 0;
  const bound = (v: unknown, depth: number): unknown => {
    if (typeof v === 'string') {
      const s = v.length > maxChars ? `${v.slice(0, maxChars)}…[+${v.length - maxChars} chars]` : v;
      used += s.length + 3;
      return s;
    }
    if (v === null || typeof v !== 'object') {
      used += 8;
      return v;
    }
    if (depth >= 3) {
      used += 12;
      return '[nested]';
    }
    if (Array.isArray(v)) {
      const items = v.slice(0, 32).map((x) => bound(x, depth + 1));
      if (v.length > 32) items.push(`…[+${v.length - 32} items]`);
      return items;
    }
    const out: Record<string, unknown> = {};
    let n = 0;
    for (const [k, x] of Object.entries(v)) {
      if (++n > 64) {
        out['…'] = `[+${Object.keys(v).length - 64} fields]`;
        break;
      }
      const key = k.length > maxChars ? `${k.slice(0, maxChars)}…` : k;
      used += key.length + 4;
      out[key] = bound(x, depth + 1);
    }
    return out;
  };
  const kept: unknown[] = [];
  for (const instance of inputs) {
    if (used >= budget) break;
    kept.push(bound(instance, 0));
  }
  const omitted = inputs.length - kept.length;
  return omitted > 0 ? { ...object, inputs: kept, inputsOmitted: omitted } : { ...object, inputs: kept };
}

/** What GuardedDestination reads of SonicBoom's state (sonic-boom 4, pinned by the lockfile). */
interface SonicState {
  readonly fd: number;
  readonly _writing: boolean;
  readonly _len: number;
  _bufs: (string | Buffer)[];
  _writingBuf: string | Buffer;
}

/** The SonicBoom streams pino and pino-roll build: asynchronous, with `write`/`error`/`drop`/`drain` events. */
type Sonic = DestinationStream &
  NodeJS.EventEmitter & {
    flushSync(): void;
    end(): void;
    /** PipeStream's: stops writing, and drops (the `drop` event) what it still holds. */
    abandon?(): void;
  };

/**
 * One destination (the rotated file, or stdout) that can fail without taking
 * the server with it. SonicBoom, left alone, crashes the process on a write
 * error (an unhandled `error` event, e.g. ENOSPC), buffers without bound while
 * a destination is stuck, and its synchronous exit flush retries a failing
 * write forever, so a full disk also made SIGTERM hang the process.
 *
 * Here an error marks the destination failing: its lines are dropped and
 * counted, the other destinations get one WARN, and once a second a line is
 * offered again; the first write that succeeds marks it recovered (an INFO
 * with the count). SonicBoom's own buffer is capped (`LOG_BUFFER_BYTES`),
 * beyond which it drops and says so. Nothing here ever blocks the event loop.
 */
class GuardedDestination {
  private failing = false;
  private failedAt = 0;
  private lastProbe = 0;
  private droppedInEpisode = 0;
  private closed = false;
  private readonly isFile: boolean;

  constructor(
    readonly name: LogDestinationName,
    private readonly sonic: Sonic,
    private readonly output: LogOutput,
    fd?: number,
  ) {
    // Writes to a regular file never block for long; a pipe with a stalled reader can block forever.
    this.isFile = fd === undefined ? true : safeIsFile(fd);
    sonic.on('error', (err: NodeJS.ErrnoException) => this.onError(err));
    sonic.on('drop', (data: string | Buffer) => this.drop(countLines(data)));
    sonic.on('write', () => this.onWritten());
    // pino registers an exit hook that flushes SonicBoom synchronously; that flush
    // retries a failing write forever. Ours is bounded (flushSync below).
    // pino's exit hook (its own destinations') calls this too: the lines of the
    // current turn are handed over first, or a crash would lose them.
    (sonic as { flushSync: () => void }).flushSync = () => {
      this.output.handOverPending();
      this.flushSync();
    };
  }

  /** Writes `line`, which may be several lines (LogOutput hands over one chunk per event-loop turn). */
  write(line: string): void {
    if (this.closed) return;
    if (this.failing) {
      const now = Date.now();
      if (now - this.lastProbe < PROBE_MS) {
        this.drop(countLines(line));
        return;
      }
      this.lastProbe = now; // this line is the probe: SonicBoom retries its buffer, then this
    }
    try {
      this.sonic.write(line);
    } catch {
      // A stream that throws (SonicBoom after `end()`, "SonicBoom destroyed")
      // loses these lines, and only these: never the caller, never the other destination.
      this.drop(countLines(line));
    }
  }

  /** Resolves once everything buffered is written, or at once if failing, or after `timeoutMs`. */
  flush(timeoutMs: number): Promise<void> {
    const s = this.sonic as unknown as SonicState;
    if (this.failing || this.closed || (!s._writing && s._len === 0)) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.sonic.off('drain', done);
        this.sonic.off('error', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.sonic.on('drain', done);
      this.sonic.on('error', done);
    });
  }

  /**
   * The synchronous flush pino calls after `fatal` and at process exit:
   * writes what is buffered to a regular file, stopping at the first error
   * (no retry loop), and never writes synchronously to a pipe, which could
   * block forever. What is left is counted as dropped.
   */
  flushSync(): void {
    const s = this.sonic as unknown as SonicState;
    if (s.fd < 0) return;
    const pending: (string | Buffer)[] = [];
    if (!s._writing && s._writingBuf.length > 0) pending.push(s._writingBuf);
    pending.push(...s._bufs);
    if (pending.length === 0) return;
    if (s._writing || this.failing || this.closed || !this.isFile) {
      if (this.closed || this.failing) this.discard(s, pending);
      return;
    }
    try {
      for (const chunk of pending) {
        let buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        while (buf.length > 0) buf = buf.subarray(writeSync(s.fd, buf));
      }
      s._bufs = [];
      s._writingBuf = '';
    } catch {
      this.discard(s, pending);
    }
  }

  /** Stops accepting lines; what is still buffered is counted as dropped at exit. */
  close(): void {
    this.closed = true;
    const s = this.sonic as unknown as SonicState;
    if (s._len > 0 && !s._writing) this.discard(s, [s._writingBuf, ...s._bufs]);
    this.sonic.abandon?.();
  }

  private discard(s: SonicState, chunks: (string | Buffer)[]): void {
    const n = chunks.reduce((sum, c) => sum + countLines(c), 0);
    s._bufs = [];
    s._writingBuf = '';
    if (n > 0) this.drop(n);
  }

  private drop(n: number): void {
    this.droppedInEpisode += n;
    this.output.dropped(this.name, n);
  }

  private onError(err: NodeJS.ErrnoException): void {
    if (this.failing) return;
    this.failing = true;
    this.failedAt = Date.now();
    this.lastProbe = this.failedAt;
    this.droppedInEpisode = 0;
    this.output.notice(this, 'warn', 'log destination failing; dropping its lines', {
      destination: this.name,
      code: err.code ?? 'unknown',
      error: err.message,
    });
  }

  private onWritten(): void {
    if (!this.failing) return;
    this.failing = false;
    this.output.notice(undefined, 'info', 'log destination recovered', {
      destination: this.name,
      dropped: this.droppedInEpisode,
      failedForMs: Date.now() - this.failedAt,
    });
  }
}

function safeIsFile(fd: number): boolean {
  try {
    return fstatSync(fd).isFile();
  } catch {
    return false;
  }
}

function countLines(data: string | Buffer): number {
  if (typeof data === 'string') {
    let n = 0;
    for (let i = data.indexOf('\n'); i >= 0; i = data.indexOf('\n', i + 1)) n++;
    return n;
  }
  let n = 0;
  for (let i = data.indexOf(10); i >= 0; i = data.indexOf(10, i + 1)) n++;
  return n;
}

/**
 * The logger's destination: every line goes to each destination (file and
 * stdout), after the line-size cap. Lines a destination drops are reported
 * to `onDropped` (the app counts them in `inference_log_write_errors_total`);
 * those dropped before anyone listens are kept as a count and reported on
 * subscription.
 *
 * Lines are handed to the destinations once per event-loop turn, joined into
 * one chunk (`setImmediate`, no timer): under load a turn finishes many calls,
 * and each SonicBoom write that finds the stream idle starts an `fs.write`
 * of its own, about 5 µs of the event loop each. A line waits at most until
 * the end of the turn that logged it; `flush`, `flushSync` (pino's exit and
 * `fatal` hook) and `close` hand over what is pending first, and a logging
 * layer notice follows the lines before it.
 */
export class LogOutput implements DestinationStream {
  private readonly destinations: GuardedDestination[] = [];
  private readonly early = new Map<LogDestinationName, number>();
  private listener: ((destination: LogDestinationName, lines: number) => void) | undefined;
  /** This turn's lines, not yet handed to the destinations, and at most how many bytes they make. */
  private pending: string[] = [];
  private pendingBytes = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private readonly handOver = () => this.handOverPending();
  private readonly maxChunkBytes: number;

  /** `bufferBytes`: each destination's buffer cap (LOG_BUFFER_BYTES), which bounds a chunk (`chunkBytes`). */
  constructor(
    private readonly maxLineBytes: number,
    bufferBytes = 16 * 1024 * 1024,
  ) {
    this.maxChunkBytes = chunkBytes(bufferBytes);
    flushAtExit(this);
  }

  add(name: LogDestinationName, sonic: Sonic, fd?: number): void {
    this.destinations.push(new GuardedDestination(name, sonic, this, fd));
  }

  get size(): number {
    return this.destinations.length;
  }

  write(line: string): void {
    // length ≤ bytes ≤ 3 × length (UTF-16 → UTF-8), so most lines skip the byte count.
    if (line.length * 3 > this.maxLineBytes && Buffer.byteLength(line) > this.maxLineBytes) {
      line = tooLong(line, this.maxLineBytes);
    }
    // At most 3 UTF-8 bytes per UTF-16 unit. A turn that logs a lot hands over
    // in pieces, before the line that would take the chunk past its bound.
    const bytes = line.length * 3;
    if (this.pendingBytes > 0 && this.pendingBytes + bytes > this.maxChunkBytes) this.handOverPending();
    this.pending.push(line);
    this.pendingBytes += bytes;
    this.scheduled ??= setImmediate(this.handOver);
  }

  /** Hands this turn's lines to every destination as one chunk (also what every flush and exit does first). */
  handOverPending(): void {
    if (this.scheduled !== undefined) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    if (this.pending.length === 0) return;
    const chunk = this.pending.length === 1 ? (this.pending[0] as string) : this.pending.join('');
    this.pending = [];
    this.pendingBytes = 0;
    for (const d of this.destinations) d.write(chunk);
  }

  /** Reports dropped lines, including any dropped before this call. */
  onDropped(listener: (destination: LogDestinationName, lines: number) => void): void {
    this.listener = listener;
    for (const [d, n] of this.early) listener(d, n);
    this.early.clear();
  }

  dropped(destination: LogDestinationName, lines: number): void {
    if (this.listener) this.listener(destination, lines);
    else this.early.set(destination, (this.early.get(destination) ?? 0) + lines);
  }

  /** A line from the logging layer itself, to every destination but `except`. */
  notice(
    except: GuardedDestination | undefined,
    level: 'info' | 'warn',
    msg: string,
    fields: Record<string, unknown>,
  ): void {
    const line = `${JSON.stringify({ level, time: new Date().toISOString(), pid: process.pid, ...fields, msg })}\n`;
    this.handOverPending();
    for (const d of this.destinations) if (d !== except) d.write(line);
  }

  /** Waits, at most `timeoutMs`, until every healthy destination has written what it holds. */
  async flush(timeoutMs: number): Promise<void> {
    this.handOverPending();
    await Promise.all(this.destinations.map((d) => d.flush(timeoutMs)));
  }

  flushSync(): void {
    this.handOverPending();
    for (const d of this.destinations) d.flushSync();
  }

  /** Before exit: no further lines; whatever could not be written is counted as dropped. */
  close(): void {
    this.handOverPending();
    for (const d of this.destinations) d.close();
  }
}

/**
 * Every LogOutput still referenced hands over and writes what it holds when
 * the process exits (`process.exit`, an uncaught exception): pino-roll's file
 * stream has no exit hook of its own. Weak references, so a LogOutput that is
 * dropped (tests make many) is not kept alive; one listener for them all.
 */
const atExit = new Set<WeakRef<LogOutput>>();
const forgotten = new FinalizationRegistry<WeakRef<LogOutput>>((ref) => atExit.delete(ref));
let exitHooked = false;
function flushAtExit(output: LogOutput): void {
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => {
      for (const ref of atExit) {
        try {
          ref.deref()?.flushSync();
        } catch {
          // At exit there is no one left to tell, and the next LogOutput must still get its turn.
        }
      }
    });
  }
  const ref = new WeakRef(output);
  atExit.add(ref);
  forgotten.register(output, ref);
}

/** The stand-in for a line over `LOG_MAX_LINE_BYTES`: its level, time, request id and size. */
function tooLong(line: string, max: number): string {
  const head = line.slice(0, 512);
  const level = /"level":"(\w+)"/.exec(head)?.[1] ?? 'info';
  const requestId = /"requestId":"([\x21-\x7e]{1,128}?)"/.exec(head)?.[1];
  const time = /"time":"([^"]{1,40})"/.exec(head)?.[1] ?? new Date().toISOString();
  return `${JSON.stringify({
    level,
    time,
    pid: process.pid,
    ...(requestId === undefined ? {} : { requestId }),
    bytes: Buffer.byteLength(line),
    limit: max,
    msg: 'log line over LOG_MAX_LINE_BYTES; dropped',
  })}\n`;
}

/** The root logger and its destination (for the drop counter and the bounded final flush). */
export interface Logging {
  readonly logger: Logger;
  readonly output: LogOutput;
}

/**
 * Builds the root logger: JSON lines with level names (debug, info, warn,
 * error), to daily files rotated by pino-roll (older ones archived by
 * `LogArchiver`) and to stdout for containers.
 *
 * Both destinations are asynchronous: SonicBoom streams (the file, and stdout
 * when it is a file or a terminal), or PipeStream when stdout is a pipe or a
 * socket (pipe-stream.ts says why). A log call serialises and appends to a
 * buffer, and the bytes reach the disk or the pipe later, off the request
 * path. Either can fail (a full disk) without stopping the server; see
 * GuardedDestination. Before exit, `output.flush(timeoutMs)` writes what is
 * pending, bounded in time.
 */
export async function createLogger(log: Config['log']): Promise<Logging> {
  const output = new LogOutput(log.maxLineBytes, log.bufferBytes);
  if (log.dir !== '') {
    // pino-roll creates the directory asynchronously but links current.log
    // synchronously, so a missing LOG_DIR would crash start-up with ENOENT.
    mkdirSync(log.dir, { recursive: true });
    const file = (await roll({
      file: join(log.dir, LOG_FILE_STEM),
      extension: '.log',
      frequency: log.rotate,
      dateFormat: 'yyyy-MM-dd',
      mkdir: true,
      symlink: true,
      maxLength: log.bufferBytes,
    })) as unknown as Sonic;
    output.add('file', file);
  }
  let blocking: string | undefined;
  if (log.stdout) {
    // A pipe or a socket gets epoll-driven writes (pipe-stream.ts); a file or a terminal, SonicBoom on fd 1.
    const out = stdoutPipe();
    if (out.fd !== undefined) {
      output.add('stdout', new PipeStream(out.fd, log.bufferBytes) as unknown as Sonic, out.fd);
    } else {
      const stdout = pino.destination({
        dest: 1,
        sync: false,
        maxLength: log.bufferBytes,
      }) as unknown as Sonic;
      output.add('stdout', stdout, 1);
      if (out.kind === 'pipe') blocking = 'stdout is a pipe that /proc/self/fd/1 could not reopen';
    }
  }
  if (output.size === 0) return { logger: pino({ ...options(log), enabled: false }), output };
  const logger = pino(options(log), output);
  if (blocking) {
    logger.warn(
      `${blocking}: its writes block, and if its reader stalls, so does shutdown (only SIGKILL ends it)`,
    );
  }
  return { logger, output };
}

/** A logger writing to an injected stream (tests and benchmarks capture logs this way). */
export function createStreamLogger(log: Config['log'], destination: DestinationStream): Logger {
  return pino(options(log), destination);
}
