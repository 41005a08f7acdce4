/**
 * Long-running child processes (servers, baselines): started with their
 * output in a file or piped, awaited until ready, and stopped. Load generators
 * that run to their end have their own runner (scripts/lib/tool-process.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROJECT_ROOT } from './paths.js';

/** True once `proc` has exited (by code or by signal). */
function hasExited(proc: ChildProcess): boolean {
  return proc.exitCode !== null || proc.signalCode !== null;
}

/** How a child ended, as a person reads it: `code 0`, `signal SIGKILL`. */
export function exitText(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `code ${code}`;
}

/**
 * SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (null
 * when a signal ended it) once the process has exited.
 */
export function stopChild(proc: ChildProcess, graceMs = 5000): Promise<number | null> {
  if (hasExited(proc)) return Promise.resolve(proc.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
    proc.kill('SIGTERM');
  });
}

/**
 * Spawns `cmd` from the project root with stdout and stderr appended to
 * `outFile`, not piped through this process (parsing a server's log lines
 * here would take CPU from what a benchmark measures).
 */
export function spawnToFile(
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  outFile: string,
  options: { readonly detached?: boolean } = {},
): ChildProcess {
  const fd = openSync(outFile, 'a');
  try {
    return spawn(cmd, args, {
      cwd: PROJECT_ROOT,
      env,
      stdio: ['ignore', fd, fd],
      detached: options.detached ?? false,
    });
  } finally {
    closeSync(fd);
  }
}

/** The last `lines` lines of a file, for an error message; `(no output)` when it cannot be read. */
export function fileTail(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no output)';
  }
}

/**
 * Resolves once `ready()` is true, polling every `intervalMs`; rejects when
 * the process exits first or `timeoutMs` passes, with `output()` (what it
 * printed) in the message.
 */
export async function untilReady(
  what: string,
  proc: ChildProcess,
  ready: () => boolean | Promise<boolean>,
  o: { readonly timeoutMs: number; readonly output: () => string; readonly intervalMs?: number },
): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  while (Date.now() < deadline) {
    if (hasExited(proc)) {
      throw new Error(
        `${what} exited (${exitText(proc.exitCode, proc.signalCode)}) before it was ready:\n${o.output()}`,
      );
    }
    if (await ready()) return;
    await sleep(o.intervalMs ?? 100);
  }
  throw new Error(`${what} was not ready within ${o.timeoutMs} ms:\n${o.output()}`);
}
