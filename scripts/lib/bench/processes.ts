/**
 * The processes a benchmark starts, all on 127.0.0.1: the real server, the
 * floor server, the Flask baseline and Envoy in front of servers. Each start
 * function resolves once its process answers, and registers a stop with a
 * `Processes` list, so that a benchmark stops everything it started, in
 * reverse order, whether it ends normally, fails, or is interrupted.
 *
 * The real server's logs go where production's go, to files (pino-roll under
 * `LOG_DIR`), never through a pipe to the benchmark: parsing 10 000 log lines
 * a second here would take CPU from the processes being measured on a 2-core
 * machine. Readiness is therefore taken from gRPC health (SERVING once the
 * models are loaded and warm), not from the "server started" log line, which
 * `LOG_LEVEL=warn` would not print.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { credentials, Metadata } from '@grpc/grpc-js';
import {
  HealthCheckResponse_ServingStatus,
  HealthClient,
} from '../../../server/generated/grpc/health/v1/health.js';
import {
  type BootstrapOptions,
  bootstrap,
  DEFAULT_WEIGHTS,
  type Endpoint,
  type Weights,
} from '../envoy/config.js';
import { type EnvoyProcess, envoyBinary, startEnvoy } from '../envoy/process.js';
import { toYaml } from '../envoy/yaml.js';
import { PROJECT_ROOT } from '../paths.js';

/** The service whose health means "models loaded and warm". */
const SERVICE = 'inference.v1.InferenceService';

/** Stops registered in start order; `stopAll` runs them in reverse, each once, ignoring failures. */
export class Processes {
  private readonly stops: { name: string; stop: () => Promise<unknown> }[] = [];

  add(name: string, stop: () => Promise<unknown>): void {
    this.stops.push({ name, stop });
  }

  /** Stops and forgets `name` (the last one registered under it). */
  async stop(name: string): Promise<void> {
    const i = this.stops.map((s) => s.name).lastIndexOf(name);
    if (i < 0) return;
    const [entry] = this.stops.splice(i, 1);
    await entry?.stop().catch(() => undefined);
  }

  async stopAll(): Promise<void> {
    while (this.stops.length > 0)
      await this.stops
        .pop()
        ?.stop()
        .catch(() => undefined);
  }
}

/** A free TCP port on 127.0.0.1 (bound, read, released: the caller binds it right after). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export function stopChild(proc: ChildProcess, graceMs = 5000): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

function tail(path: string, lines = 15): string {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no output)';
  }
}

/** Spawns `cmd` with stdout and stderr appended to `outFile` (not piped through this process). */
function spawnToFile(
  cmd: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  outFile: string,
): ChildProcess {
  const fd = openSync(outFile, 'a');
  try {
    return spawn(cmd, args, { cwd: PROJECT_ROOT, env, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
}

/** Resolves once `ready()` is true; rejects if the process exits first or time runs out. */
async function waitReady(
  what: string,
  proc: ChildProcess,
  outFile: string,
  ready: () => Promise<boolean>,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(
        `${what} exited (${proc.exitCode ?? proc.signalCode}) before it was ready:\n${tail(outFile)}`,
      );
    }
    if (await ready()) return;
    await sleep(100);
  }
  throw new Error(`${what} was not ready within ${timeoutMs} ms:\n${tail(outFile)}`);
}

/** A child process that printed `{"event":"listening","port":N}` on its first stdout line. */
function waitListening(
  what: string,
  proc: ChildProcess,
  outFile: string,
  timeoutMs: number,
): Promise<number> {
  return waitReady(what, proc, outFile, async () => listeningPort(outFile) !== undefined, timeoutMs).then(
    () => listeningPort(outFile) as number,
  );
}

function listeningPort(outFile: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(outFile, 'utf8');
  } catch {
    return undefined;
  }
  for (const line of text.split('\n')) {
    try {
      const rec = JSON.parse(line) as { event?: string; port?: number };
      if (rec.event === 'listening' && typeof rec.port === 'number') return rec.port;
    } catch {
      // not JSON: a log line
    }
  }
  return undefined;
}

/** One real server process. */
export interface BenchServer {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly grpcPort: number;
  readonly metricsPort: number;
  /** host:port of gRPC. */
  readonly host: string;
  /** Where its stdout/stderr go. */
  readonly outFile: string;
  stop(): Promise<void>;
}

async function healthServing(client: HealthClient): Promise<boolean> {
  return new Promise((resolve) =>
    client.check({ service: SERVICE }, new Metadata(), { deadline: Date.now() + 1000 }, (err, res) =>
      resolve(!err && res?.status === HealthCheckResponse_ServingStatus.SERVING),
    ),
  );
}

let serverStarts = 0;

/**
 * Starts `node dist/server/main.js` on free loopback ports with `env` over
 * these defaults: the demo models, logs to files in `workDir/logs-<name>`
 * (not stdout), no drain delay. Resolves once health says SERVING.
 */
export async function startServer(
  procs: Processes,
  o: {
    name: string;
    workDir: string;
    env?: Readonly<Record<string, string>>;
    /** Extra node flags, e.g. `--cpu-prof`. */
    nodeArgs?: readonly string[];
    timeoutMs?: number;
  },
): Promise<BenchServer> {
  const [grpcPort, metricsPort] = [await freePort(), await freePort()];
  // Each start gets its own files, even when a name is used again.
  const stem = `${o.name}-${++serverStarts}`;
  const outFile = join(o.workDir, `${stem}.out`);
  const logDir = join(o.workDir, `logs-${stem}`);
  // pino-roll's `current.log` symlink fails (ENOENT) when LOG_DIR does not exist yet.
  mkdirSync(logDir, { recursive: true });
  const env = {
    PATH: process.env.PATH ?? '',
    GRPC_HOST: '127.0.0.1',
    GRPC_PORT: String(grpcPort),
    METRICS_HOST: '127.0.0.1',
    METRICS_PORT: String(metricsPort),
    MODEL_ROOT: join(PROJECT_ROOT, 'models'),
    LOG_DIR: logDir,
    LOG_STDOUT: 'false',
    DRAIN_MS: '0',
    SHUTDOWN_GRACE_MS: '2000',
    ...o.env,
  };
  const proc = spawnToFile(
    process.execPath,
    [...(o.nodeArgs ?? []), join(PROJECT_ROOT, 'dist', 'server', 'main.js')],
    env,
    outFile,
  );
  const stop = () => stopChild(proc);
  procs.add(o.name, stop);
  const client = new HealthClient(`127.0.0.1:${grpcPort}`, credentials.createInsecure());
  try {
    await waitReady(`server ${o.name}`, proc, outFile, () => healthServing(client), o.timeoutMs ?? 60_000);
  } finally {
    client.close();
  }
  return {
    name: o.name,
    proc,
    pid: proc.pid as number,
    grpcPort,
    metricsPort,
    host: `127.0.0.1:${grpcPort}`,
    outFile,
    stop,
  };
}

/** A process that only needs a port: the floor server or the Flask baseline. */
export interface BenchProcess {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly outFile: string;
  stop(): Promise<void>;
}

/** Starts the floor server (scripts/bench/floor-server.ts, built into dist/). */
export async function startFloor(
  procs: Processes,
  workDir: string,
  nodeArgs: readonly string[] = [],
): Promise<BenchProcess> {
  const outFile = join(workDir, 'floor.out');
  const proc = spawnToFile(
    process.execPath,
    [...nodeArgs, join(PROJECT_ROOT, 'dist', 'scripts', 'bench', 'floor-server.js'), '--port', '0'],
    { PATH: process.env.PATH ?? '' },
    outFile,
  );
  const stop = () => stopChild(proc);
  procs.add('floor', stop);
  const port = await waitListening('floor server', proc, outFile, 20_000);
  return { name: 'floor', proc, pid: proc.pid as number, port, outFile, stop };
}

/** The venv's Python. */
export const VENV_PYTHON = join(PROJECT_ROOT, '.venv', 'bin', 'python');
export const FLASK_APP = join(PROJECT_ROOT, 'scripts', 'bench', 'flask_app.py');
/** flask_app.py's exit code when the rebuilt estimator is not the served model. */
export const FLASK_EXIT_NOT_SAME = 3;

/**
 * Starts the Flask baseline for `versionDir`. It rebuilds and verifies the
 * sklearn estimator first (a few seconds), and exits 3 if it is not the
 * served model, which rejects here with its explanation.
 */
export async function startFlask(
  procs: Processes,
  o: { workDir: string; versionDir: string; logPredictions?: boolean; timeoutMs?: number },
): Promise<BenchProcess> {
  const outFile = join(o.workDir, 'flask.out');
  const args = [FLASK_APP, o.versionDir, '--port', '0'];
  if (o.logPredictions ?? true) args.push('--log-file', join(o.workDir, 'flask-predictions.log'));
  const proc = spawnToFile(
    VENV_PYTHON,
    args,
    { PATH: process.env.PATH ?? '', PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
    outFile,
  );
  const stop = () => stopChild(proc);
  procs.add('flask', stop);
  const port = await waitListening('Flask baseline', proc, outFile, o.timeoutMs ?? 180_000);
  return { name: 'flask', proc, pid: proc.pid as number, port, outFile, stop };
}

/** Envoy in front of servers, as the real stack runs it. */
export interface BenchEnvoy {
  readonly envoy: EnvoyProcess;
  readonly pid: number;
  /** host:port of the gRPC listener. */
  readonly host: string;
  readonly configPath: string;
  stop(): Promise<void>;
}

/**
 * Adds endpoints to the `stable` cluster of a rendered bootstrap. The
 * renderer (scripts/lib/envoy/config.ts) takes one endpoint per arm; each extra
 * endpoint here is a copy of the rendered one (same arm metadata) at another
 * address, which is what Compose replicas look like to STRICT_DNS.
 */
export function withExtraStableEndpoints(config: ReturnType<typeof bootstrap>, extra: readonly Endpoint[]) {
  if (extra.length === 0) return config;
  const copy = JSON.parse(JSON.stringify(config)) as ReturnType<typeof bootstrap>;
  const cluster = (copy.static_resources.clusters as { name?: string; load_assignment?: unknown }[]).find(
    (c) => c.name === 'stable',
  );
  const group = (cluster?.load_assignment as { endpoints?: { lb_endpoints?: unknown[] }[] } | undefined)
    ?.endpoints?.[0];
  const first = group?.lb_endpoints?.[0] as { endpoint: { address: unknown } } | undefined;
  if (!group?.lb_endpoints || !first) throw new Error('rendered bootstrap has no stable endpoint to copy');
  for (const e of extra) {
    group.lb_endpoints.push({
      ...first,
      endpoint: { address: { socket_address: { address: e.host, port_value: e.port } } },
    });
  }
  return copy;
}

/**
 * Renders the bootstrap with scripts/lib/envoy/config.ts for these servers
 * (stable: one or more; canary: one) with the routes inlined at `weights`
 * (default: the real stack's, `DEFAULT_WEIGHTS`), starts Envoy
 * (scripts/envoy/process.ts) and resolves once both clusters are healthy.
 * The access log goes to a file, as in the local stack.
 */
export async function startEnvoyFor(
  procs: Processes,
  o: {
    workDir: string;
    name?: string;
    stable: readonly BenchServer[];
    canary: BenchServer;
    weights?: Weights;
    /** Envoy worker threads (its `--concurrency`). */
    concurrency: number;
    timeoutMs?: number;
  },
): Promise<BenchEnvoy> {
  const name = o.name ?? 'envoy';
  const dir = join(o.workDir, name);
  mkdirSync(dir, { recursive: true });
  const [first, ...more] = o.stable;
  if (!first) throw new Error('Envoy needs at least one stable server');
  const options: BootstrapOptions = {
    listener: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    stable: { host: '127.0.0.1', port: first.grpcPort },
    canary: { host: '127.0.0.1', port: o.canary.grpcPort },
    discovery: 'static',
    // Unused: the routes are inlined (the same routeConfiguration() the RDS file holds).
    routesPath: join(dir, 'routes', 'routes.yaml'),
    inlineRoutes: o.weights ?? DEFAULT_WEIGHTS,
    accessLog: join(dir, 'access.log'),
    healthCheckIntervalMs: 1000,
  };
  const config = withExtraStableEndpoints(
    bootstrap(options),
    more.map((s) => ({ host: '127.0.0.1', port: s.grpcPort })),
  );
  const configPath = join(dir, 'envoy.yaml');
  writeFileSync(configPath, `# Rendered by scripts/bench/processes.ts\n${toYaml(config)}`);
  const envoy = await startEnvoy({
    binary: envoyBinary(PROJECT_ROOT),
    configPath,
    cwd: dir,
    adminAddressPath: join(dir, 'admin-address'),
    concurrency: o.concurrency,
    timeoutMs: o.timeoutMs ?? 30_000,
  });
  const stop = async () => {
    await envoy.stop(3000);
  };
  procs.add(name, stop);
  const deadline = Date.now() + (o.timeoutMs ?? 30_000);
  for (;;) {
    const clusters = await envoy.admin.clusters().catch(() => new Map());
    const healthy = (c: string, n: number) =>
      (clusters.get(c) ?? []).filter((h: { healthy: boolean }) => h.healthy).length >= n;
    if (healthy('stable', o.stable.length) && healthy('canary', 1)) break;
    if (Date.now() > deadline)
      throw new Error(`Envoy did not see every server healthy:\n${envoy.log.slice(-10).join('\n')}`);
    await sleep(100);
  }
  const port = await envoy.admin.listenerPort('grpc_ingress');
  return { envoy, pid: envoy.proc.pid as number, host: `127.0.0.1:${port}`, configPath, stop };
}

/** Resident set size of a process from /proc (Linux), in bytes; undefined once it has gone. */
export function rssBytes(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Linux's USER_HZ: /proc/<pid>/stat times are in these ticks (100 on every mainstream kernel). */
const TICKS_PER_S = 100;

/**
 * CPU time of a process from /proc/<pid>/stat (Linux), in ms: its own
 * (utime + stime) and that of its children it has waited for (cutime +
 * cstime). Undefined once it has gone. Resolution 10 ms.
 */
export function cpuTimesMs(pid: number): { self: number; children: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // Fields after the command name, which is in parentheses and may hold spaces:
  // state(3) ... utime(14) stime(15) cutime(16) cstime(17), numbered from 1.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const at = (n: number) => Number(f[n - 3]);
  const tick = 1000 / TICKS_PER_S;
  return { self: (at(14) + at(15)) * tick, children: (at(16) + at(17)) * tick };
}

/** True when the venv and the Envoy binary are installed (`node scripts/dev/bootstrap.mjs`). */
export function pythonReady(): boolean {
  return existsSync(VENV_PYTHON);
}
