/**
 * Runs a load generator (ghz, hey) as a child process to its end: progress
 * ticks while it runs, SIGINT on abort, a bounded tail of its stderr and,
 * when asked, a bounded head of its stdout. What its exit means is left to
 * the wrapper that knows the tool (scripts/lib/load/ghz.ts, scripts/lib/bench/hey.ts).
 */
import { spawn } from 'node:child_process';

/** What a caller of a load generator may ask of the run. */
export interface ToolRunOptions {
  /** Called every `tickMs` while the tool runs, with the elapsed milliseconds. */
  readonly onTick?: (elapsedMs: number) => void;
  readonly tickMs?: number;
  /** Aborting sends the tool SIGINT: ghz and hey both stop and still report. */
  readonly signal?: AbortSignal;
}

/** How the tool ended, with what it printed. */
export interface ToolExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** Empty unless `stdoutChars` was given. */
  readonly stdout: string;
  /** The last 8 KiB. */
  readonly stderr: string;
}

const STDERR_TAIL_CHARS = 8192;

/**
 * Runs `bin args` and resolves when it has exited, whatever its exit code.
 * Rejects only when it could not start (the spawn error, unwrapped).
 * `stdoutChars`: keep stdout, up to about that many characters from its start
 * (omitted: stdout is not read at all).
 */
export function runTool(
  bin: string,
  args: readonly string[],
  options: ToolRunOptions & { readonly stdoutChars?: number } = {},
): Promise<ToolExit> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const keepStdout = options.stdoutChars !== undefined;
    const child = spawn(bin, args, { stdio: ['ignore', keepStdout ? 'pipe' : 'ignore', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      if (stdout.length < (options.stdoutChars ?? 0)) stdout += d;
    });
    child.stderr?.on('data', (d: string) => {
      // A tool's fatal error is at the end; keep a bounded tail in case of a flood.
      stderr = (stderr + d).slice(-STDERR_TAIL_CHARS);
    });
    const timer = options.onTick
      ? setInterval(() => options.onTick?.(Date.now() - t0), options.tickMs ?? 1000)
      : undefined;
    const onAbort = () => child.kill('SIGINT');
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const done = () => {
      clearInterval(timer);
      options.signal?.removeEventListener('abort', onAbort);
    };
    child.once('error', (err) => {
      done();
      reject(err);
    });
    child.once('close', (code, signal) => {
      done();
      resolve({ code, signal, stdout, stderr });
    });
  });
}
