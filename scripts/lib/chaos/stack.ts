/**
 * The stack `npm run chaos` breaks: a stable and a canary server (real
 * processes, following the labels of a private copy of the model
 * repository), and Envoy in front of them with hot restart enabled, all on
 * loopback ports chosen free at start. Server logs go to a small tmpfs when
 * the harness runs as root, so a full log disk can be one of the faults.
 */
import { spawnSync } from 'node:child_process';
import {
  closeSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statfsSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type AccessLogEntry, readAccessLog } from '../envoy/access-log-entry.js';
import type { EnvoyAdmin } from '../envoy/admin.js';
import { type BootstrapOptions, DEFAULT_WEIGHTS } from '../envoy/config.js';
import { bootstrapText, routesText } from '../envoy/files.js';
import { type EnvoyProcess, envoyBinary, startEnvoy } from '../envoy/process.js';
import { MODELS_DIR, PROJECT_ROOT } from '../paths.js';
import { type ServerProcess, startServer } from '../server-process.js';
import { waitUntil } from '../wait-for.js';

export type Arm = 'stable' | 'canary';

export interface ChaosStackOptions {
  /** Active health check interval. */
  readonly healthCheckIntervalMs: number;
  /** A tmpfs of this size for the servers' logs (root only; else a plain directory). */
  readonly logDiskBytes: number;
  readonly say: (line: string) => void;
}

/** A port free right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** Resident memory of a process in MB (Linux /proc), 0 when gone. */
export function rssMb(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return Number(m?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  return waitUntil(what, cond, { timeoutMs, intervalMs: 50 });
}

export class ChaosStack {
  readonly servers: Record<Arm, ServerProcess>;
  envoy: EnvoyProcess;
  private epoch = 0;

  private constructor(
    readonly dir: string,
    readonly modelRoot: string,
    readonly logDir: string,
    /** True when logDir is a tmpfs this stack mounted (the log-disk fault needs it). */
    readonly logDiskMounted: boolean,
    readonly ports: { listener: number; admin: number },
    private readonly configPath: string,
    private readonly baseId: number,
    private readonly serverEnv: Record<Arm, Record<string, string>>,
    servers: Record<Arm, ServerProcess>,
    envoy: EnvoyProcess,
  ) {
    this.servers = servers;
    this.envoy = envoy;
  }

  get admin(): EnvoyAdmin {
    return this.envoy.admin;
  }

  get accessLogPath(): string {
    return join(this.dir, 'access.log');
  }

  static async start(o: ChaosStackOptions): Promise<ChaosStack> {
    const dir = mkdtempSync(join(tmpdir(), 'chaos-'));
    const modelRoot = join(dir, 'models');
    cpSync(MODELS_DIR, modelRoot, { recursive: true });
    const logDir = join(dir, 'logs');
    mkdirSync(logDir);
    const root = typeof process.getuid === 'function' && process.getuid() === 0;
    let mounted = false;
    if (root) {
      const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${o.logDiskBytes}`, 'tmpfs', logDir]);
      mounted = r.status === 0;
    }
    const env = (arm: Arm): Record<string, string> => ({
      ROLE: arm,
      MODEL_ROOT: modelRoot,
      MODEL_POLL_MS: '200',
      LOG_DIR: join(logDir, arm),
      LOG_STDOUT: 'true',
      // Smaller lines: the log disk fills only when the log-disk-full fault fills it.
      LOG_INPUTS: 'false',
      DRAIN_MS: '1500',
      SHUTDOWN_GRACE_MS: '5000',
    });
    const serverEnv = { stable: env('stable'), canary: env('canary') };
    const spawnArm = (arm: Arm, port = 0) =>
      startServer({
        env: { ...serverEnv[arm], GRPC_PORT: String(port) },
        timeoutMs: 30_000,
        // Warnings and errors only; Predict lines would pile up in memory.
        onLog: (line) => {
          if (line.msg !== 'Predict' && line.level !== 'info') o.say(`[${arm}] ${line.level}: ${line.msg}`);
        },
      });
    const [stable, canary] = await Promise.all([spawnArm('stable'), spawnArm('canary')]);
    const ports = { listener: await freePort(), admin: await freePort() };
    const routesPath = join(dir, 'routes', 'routes.yaml');
    mkdirSync(join(dir, 'routes'));
    writeFileSync(routesPath, routesText(DEFAULT_WEIGHTS, 'chaos-initial'));
    const bootstrap: BootstrapOptions = {
      // Fixed ports: hot restart hands sockets over by address, which port 0 would not match.
      listener: { host: '127.0.0.1', port: ports.listener },
      admin: { host: '127.0.0.1', port: ports.admin },
      stable: { host: '127.0.0.1', port: stable.grpcPort },
      canary: { host: '127.0.0.1', port: canary.grpcPort },
      discovery: 'static',
      routesPath,
      accessLog: join(dir, 'access.log'),
      healthCheckIntervalMs: o.healthCheckIntervalMs,
    };
    const configPath = join(dir, 'envoy.yaml');
    writeFileSync(configPath, bootstrapText(bootstrap, 'npm run chaos'));
    const baseId = 1000 + (process.pid % 50_000);
    const envoy = await ChaosStack.envoyEpoch(dir, configPath, baseId, 0);
    const stack = new ChaosStack(
      dir,
      modelRoot,
      logDir,
      mounted,
      ports,
      configPath,
      baseId,
      serverEnv,
      { stable, canary },
      envoy,
    );
    await stack.waitHealthy(20_000);
    return stack;
  }

  private static envoyEpoch(dir: string, configPath: string, baseId: number, epoch: number) {
    return startEnvoy({
      binary: envoyBinary(PROJECT_ROOT),
      configPath,
      cwd: dir,
      adminAddressPath: join(dir, `admin-address-${epoch}`),
      logLevel: 'error',
      fileFlushIntervalMs: 200,
      hotRestart: { baseId, epoch, drainTimeS: 2, parentShutdownTimeS: 4 },
    });
  }

  /** Both clusters healthy in Envoy. */
  async healthy(): Promise<boolean> {
    return (await this.admin.clusterHealthy('stable')) && (await this.admin.clusterHealthy('canary'));
  }

  async waitHealthy(timeoutMs: number): Promise<void> {
    await until('Envoy to see both arms healthy', () => this.healthy(), timeoutMs);
  }

  async clusterHealthy(arm: Arm): Promise<boolean> {
    return this.admin.clusterHealthy(arm).catch(() => false);
  }

  /** Starts a fresh server for `arm` on the same port (after a kill or a drain). */
  async restart(arm: Arm): Promise<void> {
    const port = this.servers[arm].grpcPort;
    this.servers[arm] = await startServer({
      env: { ...this.serverEnv[arm], GRPC_PORT: String(port) },
      timeoutMs: 30_000,
      onLog: () => undefined,
    });
  }

  /**
   * Hot restart: a new Envoy (epoch + 1) takes over the listening sockets,
   * the old one drains its connections and exits. Resolves once the new one
   * is ready and the old one has exited.
   */
  async hotRestartEnvoy(): Promise<void> {
    const old = this.envoy;
    this.epoch++;
    this.envoy = await ChaosStack.envoyEpoch(this.dir, this.configPath, this.baseId, this.epoch);
    await old.exited;
  }

  /** The Envoy access log, parsed (lines Envoy has flushed). */
  accessLog(): AccessLogEntry[] {
    return readAccessLog(this.accessLogPath);
  }

  /** Fills the log tmpfs to the last byte; returns a function that frees it again. */
  fillLogDisk(): () => void {
    const filler = join(this.logDir, '.filler');
    const fd = openSync(filler, 'a');
    const chunk = Buffer.alloc(64 * 1024, 0x2e);
    try {
      for (;;) writeSync(fd, chunk);
    } catch {
      // ENOSPC: the big chunks no longer fit
    }
    try {
      for (;;) writeSync(fd, chunk.subarray(0, 1));
    } catch {
      // ENOSPC: not a byte left
    } finally {
      closeSync(fd);
    }
    return () => rmSync(filler, { force: true });
  }

  /** Free bytes on the log disk. */
  logDiskFree(): number {
    const s = statfsSync(this.logDir);
    return s.bavail * s.bsize;
  }

  /** Resident memory of each process, MB. */
  rss(): { stable: number; canary: number; envoy: number } {
    return {
      stable: rssMb(this.servers.stable.proc.pid),
      canary: rssMb(this.servers.canary.proc.pid),
      envoy: rssMb(this.envoy.proc.pid),
    };
  }

  async stop(): Promise<void> {
    for (const arm of ['stable', 'canary'] as const) {
      const p = this.servers[arm].proc;
      if (p.exitCode === null && p.signalCode === null) {
        p.kill('SIGCONT');
        await Promise.race([this.servers[arm].stop(), sleep(15_000)]);
        if (p.exitCode === null && p.signalCode === null) await this.servers[arm].kill();
      }
    }
    await this.envoy.stop(5000).catch(() => undefined);
    if (this.logDiskMounted) spawnSync('umount', ['-l', this.logDir]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
