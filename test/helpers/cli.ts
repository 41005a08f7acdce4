/**
 * Test helper: runs a command as a child process, as an operator would, to
 * its end, bounded by a timeout.
 */
import { spawn } from 'node:child_process';
import { basename, join } from 'node:path';
import { ROOT } from './server.js';

/** How a finished command ended, with everything it printed. */
export interface CliRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `command args` with stdin closed (or fed `input`) and resolves once it
 * has exited and its output is read, whatever its exit code. After
 * `timeoutMs` it is killed (SIGKILL) and the promise rejects with what it had
 * printed so far.
 */
export function runCli(
  command: string,
  args: readonly string[],
  options: {
    readonly cwd?: string;
    readonly timeoutMs?: number;
    readonly name?: string;
    readonly input?: string;
  } = {},
): Promise<CliRun> {
  const { timeoutMs = 30_000, name = basename(command) } = options;
  return new Promise((resolve, reject) => {
    const proc = spawn(command, args, {
      ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    // An early exit closes the pipe; the exit code and stderr then tell why.
    proc.stdin.on('error', () => undefined);
    proc.stdin.end(options.input);
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
    });
    proc.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(
        new Error(`${name} did not finish within ${timeoutMs} ms; stdout: ${stdout}; stderr: ${stderr}`),
      );
    }, timeoutMs);
    proc.once('error', reject);
    proc.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * A runner for the built script `name` (dist/scripts/<dir>/<name>.js, e.g. `ops/qa`): node runs it
 * from the project root with the given arguments, as `npm run` would.
 */
export function nodeScript(name: string): (args: readonly string[], timeoutMs?: number) => Promise<CliRun> {
  const script = join(ROOT, 'dist', 'scripts', `${name}.js`);
  return (args, timeoutMs) => runCli(process.execPath, [script, ...args], { cwd: ROOT, name, timeoutMs });
}
