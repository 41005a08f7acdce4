/**
 * Child processes for the deployment tooling: commands that run to their end
 * with a time limit, daemons that are stopped with an escalating signal, and a
 * teardown list that also runs when the process is interrupted (Ctrl-C,
 * SIGTERM), so a container stack or an API server is never left behind.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';

export interface ExecOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Written to stdin, which is then closed. */
  readonly input?: string;
  /** The command is killed (SIGKILL) after this long; default 120 s. */
  readonly timeoutMs?: number;
}

export interface ExecResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
  readonly timedOut: boolean;
}

/** A command failed; the message names it, its exit and the end of its stderr. */
export class ExecError extends Error {
  override name = 'ExecError';
  constructor(
    readonly command: string,
    readonly result: ExecResult,
  ) {
    const how = result.timedOut
      ? `timed out after ${result.ms} ms`
      : `exited ${result.code ?? result.signal}`;
    const tail = (result.stderr.trim() || result.stdout.trim()).split('\n').slice(-15).join('\n');
    super(`${command} ${how}${tail ? `:\n${tail}` : ''}`);
  }
}

const OUTPUT_LIMIT = 64 * 1024 * 1024;

/** Runs a command to its end and resolves with what it printed, whatever its exit code. */
export function exec(cmd: string, args: readonly string[], o: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(cmd, args, {
      cwd: o.cwd,
      env: o.env ?? process.env,
      stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout?.setEncoding('utf8');
    child.stderr?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      if (stdout.length < OUTPUT_LIMIT) stdout += d;
    });
    child.stderr?.on('data', (d: string) => {
      stderr = (stderr + d).slice(-1024 * 1024);
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, o.timeoutMs ?? 120_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0, timedOut });
    });
    if (o.input !== undefined) {
      // A command that exits before reading its input must not crash us with EPIPE.
      child.stdin?.on('error', () => {});
      child.stdin?.end(o.input);
    }
  });
}

/** Runs a command and returns its stdout; throws ExecError unless it exits 0. */
export async function execOk(cmd: string, args: readonly string[], o: ExecOptions = {}): Promise<string> {
  const r = await exec(cmd, args, o);
  if (r.code !== 0) throw new ExecError(`${cmd} ${args.join(' ')}`.slice(0, 300), r);
  return r.stdout;
}

/** A long-running child process whose output goes to a log file. */
export class Daemon {
  private constructor(
    readonly name: string,
    private readonly child: ChildProcess,
    readonly logFile: string,
  ) {
    child.once('exit', (code, signal) => {
      this.exit = { code, signal };
    });
  }

  /** Set once the process has exited. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  static start(
    name: string,
    cmd: string,
    args: readonly string[],
    o: { readonly logFile: string; readonly env?: NodeJS.ProcessEnv; readonly cwd?: string },
  ): Daemon {
    const fd = openSync(o.logFile, 'a');
    try {
      const child = spawn(cmd, args, { cwd: o.cwd, env: o.env ?? process.env, stdio: ['ignore', fd, fd] });
      return new Daemon(name, child, o.logFile);
    } finally {
      closeSync(fd);
    }
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves once it has exited. */
  async stop(graceMs = 5000): Promise<void> {
    if (this.exit || this.child.pid === undefined) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  /** For an interrupted run: no waiting. */
  killNow(): void {
    if (!this.exit) this.child.kill('SIGKILL');
  }
}

interface TeardownStep {
  readonly name: string;
  readonly run: () => Promise<void>;
  /** What to do synchronously when the process is interrupted. */
  readonly onInterrupt: () => void;
}

/**
 * Cleanup steps, run in reverse order of registration by `runAll()` (a
 * suite's `after` hook), or synchronously when SIGINT or SIGTERM arrives
 * before that, after which the process exits 130 / 143, or when the process
 * exits with steps still pending (a crash that skipped the `after` hook).
 */
export class Teardown {
  private readonly steps: TeardownStep[] = [];
  private readonly onSignal = (sig: NodeJS.Signals) => {
    this.interruptAll(sig);
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };

  private readonly onExit = () => this.interruptAll('exit');

  constructor() {
    process.on('SIGINT', this.onSignal);
    process.on('SIGTERM', this.onSignal);
    process.on('exit', this.onExit);
  }

  private interruptAll(why: string): void {
    if (this.steps.length === 0) return;
    process.stderr.write(`\n[deploy] ${why}: tearing down ${this.steps.map((s) => s.name).join(', ')}\n`);
    for (const s of this.steps.splice(0).reverse()) {
      try {
        s.onInterrupt();
      } catch (err) {
        process.stderr.write(`[deploy] teardown of ${s.name} failed: ${(err as Error).message}\n`);
      }
    }
  }

  add(name: string, run: () => Promise<void>, onInterrupt: () => void): void {
    this.steps.push({ name, run, onInterrupt });
  }

  /** Runs every step (newest first), each even if an earlier one failed; throws the first failure. */
  async runAll(): Promise<void> {
    let first: unknown;
    for (const s of this.steps.splice(0).reverse()) {
      try {
        await s.run();
      } catch (err) {
        first ??= err;
        process.stderr.write(`[deploy] teardown of ${s.name} failed: ${(err as Error).message}\n`);
      }
    }
    process.off('SIGINT', this.onSignal);
    process.off('SIGTERM', this.onSignal);
    process.off('exit', this.onExit);
    if (first) throw first;
  }
}

/** A synchronous command for teardown on interrupt; its failure is only reported. */
export function runSyncQuietly(cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): void {
  const r = spawnSync(cmd, args, { env: env ?? process.env, stdio: 'ignore', timeout: 60_000 });
  if (r.status !== 0)
    process.stderr.write(`[deploy] ${cmd} ${args.slice(0, 4).join(' ')} exited ${r.status}\n`);
}

/** The shared poll loop (a probe that throws is tried again until the deadline). */
export { waitFor } from '../wait-for.js';
