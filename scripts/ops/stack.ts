/**
 * `npm start`: the whole A/B stack on loopback.
 *
 *   stable server  127.0.0.1:50051  metrics :9464  older demo version   logs/stable
 *   canary server  127.0.0.1:50052  metrics :9465  newer demo version   logs/canary
 *   Envoy          127.0.0.1:8080   QA :8081   admin :9901 (read-only; full admin on
 *                  envoy/run/admin.sock, mode 0600)   envoy/envoy.yaml   logs/envoy
 *
 * It waits until Envoy reports both clusters healthy, prints the endpoints and
 * a grpcurl line, and on Ctrl-C (SIGINT) or SIGTERM stops the servers first
 * (they drain while Envoy still answers), then Envoy, and exits 0.
 *
 * The routes start from the committed default (envoy/routes/routes.yaml,
 * 90/10) on every start; `npm run weights` changes the live copy in
 * envoy/run/routes/, which is not committed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runIfMain } from '../lib/cli.js';
import { ACCESS_LOG_ROTATION, AccessLogRotator } from '../lib/envoy/access-log.js';
import type { EnvoyAdmin, HostHealth } from '../lib/envoy/admin.js';
import { type BootstrapOptions, LOCAL_BOOTSTRAP } from '../lib/envoy/config.js';
import { bootstrapText, writeFileAtomic } from '../lib/envoy/files.js';
import { type EnvoyProcess, envoyBinary, startEnvoy } from '../lib/envoy/process.js';
import { SEED_RECORD as GRPCURL_RECORD } from '../lib/load/payload.js';
import { PROJECT_ROOT } from '../lib/paths.js';
import { olderAndNewer } from '../lib/versions.js';

/** The demo model and the versions the two arms serve: canary the newest, stable the one before. */
export function demoVersions(modelRoot: string, model = 'conversion'): { stable: string; canary: string } {
  const { older, newer } = olderAndNewer(modelRoot, model);
  return { stable: older, canary: newer };
}

/** Where everything of one stack lives, and on which ports. */
export interface StackLayout {
  /** The Envoy bootstrap to run: the committed envoy/envoy.yaml, or a rendering for other ports. */
  readonly envoyConfig: string;
  /** Written to `envoyConfig` when set; undefined when the committed file is used as is. */
  readonly rendered?: string;
  readonly bootstrap: BootstrapOptions;
  readonly routesPath: string;
  readonly adminAddressPath: string;
  readonly logDirs: { readonly stable: string; readonly canary: string; readonly envoy: string };
  readonly ports: {
    readonly stable: number;
    readonly canary: number;
    readonly stableMetrics: number;
    readonly canaryMetrics: number;
  };
}

/**
 * The default stack runs the committed envoy/envoy.yaml from the repository
 * root, with the live routes in envoy/run/routes/ and logs in logs/. With a
 * port offset or a state directory (tests, a second stack next to the first),
 * every port moves by the offset and the bootstrap is rendered into the state
 * directory with absolute paths.
 */
export function stackLayout(o: { portOffset: number; stateDir?: string }): StackLayout {
  const ports = {
    stable: 50051 + o.portOffset,
    canary: 50052 + o.portOffset,
    stableMetrics: 9464 + o.portOffset,
    canaryMetrics: 9465 + o.portOffset,
  };
  if (o.portOffset === 0 && o.stateDir === undefined) {
    return {
      envoyConfig: join(PROJECT_ROOT, 'envoy', 'envoy.yaml'),
      bootstrap: LOCAL_BOOTSTRAP,
      routesPath: join(PROJECT_ROOT, LOCAL_BOOTSTRAP.routesPath),
      adminAddressPath: join(PROJECT_ROOT, 'envoy', 'run', 'admin-address'),
      logDirs: {
        stable: join(PROJECT_ROOT, 'logs', 'stable'),
        canary: join(PROJECT_ROOT, 'logs', 'canary'),
        envoy: join(PROJECT_ROOT, 'logs', 'envoy'),
      },
      ports,
    };
  }
  const dir = resolve(PROJECT_ROOT, o.stateDir ?? join('envoy', 'run', `offset-${o.portOffset}`));
  const bootstrap: BootstrapOptions = {
    ...LOCAL_BOOTSTRAP,
    listener: { host: '127.0.0.1', port: LOCAL_BOOTSTRAP.listener.port + o.portOffset },
    admin: { host: '127.0.0.1', port: LOCAL_BOOTSTRAP.admin.port + o.portOffset },
    qaListener: { host: '127.0.0.1', port: (LOCAL_BOOTSTRAP.qaListener?.port ?? 8081) + o.portOffset },
    adminSocket: join(dir, 'admin.sock'),
    stable: { host: '127.0.0.1', port: ports.stable },
    canary: { host: '127.0.0.1', port: ports.canary },
    routesPath: join(dir, 'routes', 'routes.yaml'),
    accessLog: join(dir, 'logs', 'envoy', 'access.log'),
  };
  return {
    envoyConfig: join(dir, 'envoy.yaml'),
    rendered: bootstrapText(bootstrap, `npm start -- --port-offset ${o.portOffset}`),
    bootstrap,
    routesPath: bootstrap.routesPath,
    adminAddressPath: join(dir, 'admin-address'),
    logDirs: {
      stable: join(dir, 'logs', 'stable'),
      canary: join(dir, 'logs', 'canary'),
      envoy: join(dir, 'logs', 'envoy'),
    },
    ports,
  };
}

/** A path as the operator should type it: relative to the repository when inside it. */
function shown(path: string): string {
  const rel = relative(PROJECT_ROOT, path);
  return rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}

interface ServerSpec {
  readonly role: 'stable' | 'canary';
  readonly grpcPort: number;
  readonly metricsPort: number;
  readonly logDir: string;
  readonly version: string;
}

/** A child in its own process group, with line-wise output handling. */
interface Child {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly exited: Promise<string>;
  running: boolean;
}

const say = (s: string) => process.stdout.write(`[stack] ${s}\n`);

function lines(stream: NodeJS.ReadableStream | null, onLine: (line: string) => void): void {
  let buf = '';
  stream?.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      onLine(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
    }
  });
}

function track(name: string, proc: ChildProcess): Child {
  const child: Child = {
    name,
    proc,
    running: true,
    exited: new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        child.running = false;
        resolve(signal ? `signal ${signal}` : `code ${code}`);
      }),
    ),
  };
  return child;
}

/** Server log lines worth showing in the terminal; Predict lines stay in the log files. */
const LIFECYCLE = /^(server started|signal received|shutdown|second signal|start-up failed|model)/;

function startServer(spec: ServerSpec, onStarted: () => void): Child {
  const proc = spawn(process.execPath, [join(PROJECT_ROOT, 'dist', 'server', 'main.js')], {
    cwd: PROJECT_ROOT,
    // Own process group: Ctrl-C reaches the stack only, which then stops children in order.
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      ROLE: spec.role,
      GRPC_HOST: '127.0.0.1',
      GRPC_PORT: String(spec.grpcPort),
      METRICS_HOST: '127.0.0.1',
      METRICS_PORT: String(spec.metricsPort),
      MODEL_ROOT: process.env.MODEL_ROOT ?? 'models',
      MODEL_VERSION_POLICY: `conversion=${spec.version}`,
      LOG_DIR: spec.logDir,
      LOG_STDOUT: 'true',
      // Envoy checks health every second; two seconds of NOT_SERVING is enough for it to notice.
      DRAIN_MS: process.env.DRAIN_MS ?? '2000',
    },
  });
  const tag = `[${spec.role}]`;
  lines(proc.stdout, (line) => {
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      process.stdout.write(`${tag} ${line}\n`);
      return;
    }
    const msg = String(rec.msg ?? '');
    if (msg === 'server started') onStarted();
    if (msg === 'Predict' && rec.level === 'info') return;
    if (LIFECYCLE.test(msg) || ['warn', 'error', 'fatal'].includes(String(rec.level))) {
      const { level, msg: _m, time: _t, pid: _p, ...rest } = rec;
      const extra = Object.keys(rest).length > 0 ? ` ${JSON.stringify(rest)}` : '';
      process.stdout.write(`${tag} ${level === 'info' ? '' : `${level}: `}${msg}${extra}\n`);
    }
  });
  lines(proc.stderr, (line) => process.stderr.write(`${tag} ${line}\n`));
  return track(spec.role, proc);
}

/** Which of the stack's ports are taken, with what they are for. */
async function busyPorts(ports: readonly { port: number; what: string }[]): Promise<string[]> {
  const busy: string[] = [];
  for (const p of ports) {
    const err = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      const s = createServer();
      s.once('error', (e: NodeJS.ErrnoException) => resolve(e));
      s.listen(p.port, '127.0.0.1', () => s.close(() => resolve(undefined)));
    });
    if (err) busy.push(`127.0.0.1:${p.port} (${p.what}): ${err.code ?? err.message}`);
  }
  return busy;
}

function describeHosts(hosts: readonly HostHealth[] | undefined): string {
  if (!hosts || hosts.length === 0) return 'no hosts';
  return hosts.map((h) => (h.healthy ? 'healthy' : h.flags.join('+') || 'unhealthy')).join(', ');
}

async function waitHealthy(admin: EnvoyAdmin, timeoutMs: number, envoy: EnvoyProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const clusters = await admin.clusters().catch(() => undefined);
    if (clusters) {
      const stable = clusters.get('stable');
      const canary = clusters.get('canary');
      const state = `stable: ${describeHosts(stable)}; canary: ${describeHosts(canary)}`;
      if (state !== last) say(`Envoy sees ${state}`);
      last = state;
      if (
        stable?.every((h) => h.healthy) &&
        canary?.every((h) => h.healthy) &&
        stable.length &&
        canary.length
      ) {
        return;
      }
    }
    if (envoy.proc.exitCode !== null) throw new Error('Envoy exited while waiting for healthy clusters');
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`Envoy did not report both clusters healthy within ${timeoutMs / 1000} s (${last})`);
}

export const USAGE = `Usage: npm start [-- --port-offset <n>] [-- --state-dir <dir>]

  --port-offset <n>   add n to every port (Envoy 8080/9901, servers 50051/50052, metrics 9464/9465)
  --state-dir <dir>   keep the rendered bootstrap, live routes and logs there
                      (default: envoy/envoy.yaml, envoy/run/routes/ and logs/)
`;

function parseStackArgs(argv: readonly string[]): { portOffset: number; stateDir?: string } {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: { 'port-offset': { type: 'string' }, 'state-dir': { type: 'string' } },
  });
  const raw = values['port-offset'] ?? '0';
  const portOffset = Number(raw);
  if (!/^\d+$/.test(raw) || 50052 + portOffset > 65535) {
    throw new Error(`--port-offset must be an integer from 0 to ${65535 - 50052}, got "${raw}"`);
  }
  return { portOffset, ...(values['state-dir'] ? { stateDir: values['state-dir'] } : {}) };
}

async function main(argv: readonly string[]): Promise<number> {
  const t0 = Date.now();
  const children: Child[] = [];
  let envoy: EnvoyProcess | undefined;
  // Last resort if the stack itself dies: take the process groups down with it.
  process.once('exit', () => {
    for (const c of children) if (c.running) c.proc.kill('SIGKILL');
  });

  let stopping: Promise<number> | undefined;
  const stopAll = (reason: string, code: number): Promise<number> => {
    stopping ??= (async () => {
      say(`stopping (${reason}): servers first, so they drain while Envoy still answers, then Envoy`);
      const servers = children.filter((c) => c.name !== 'envoy');
      await Promise.all(
        servers.map(async (c) => {
          if (!c.running) return;
          c.proc.kill('SIGTERM');
          const timer = setTimeout(() => c.proc.kill('SIGKILL'), 30_000);
          say(`${c.name} exited (${await c.exited})`);
          clearTimeout(timer);
        }),
      );
      if (envoy && envoy.proc.exitCode === null) say(`envoy exited (${await envoy.stop(5000)})`);
      say('stopped');
      return code;
    })();
    return stopping;
  };
  let firstSignalAt = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    const now = Date.now();
    // A terminal and npm may both deliver one Ctrl-C; only a later second signal forces.
    if (firstSignalAt !== 0 && now - firstSignalAt > 1000) {
      say(`${signal} again: killing everything now`);
      for (const c of children) if (c.running) c.proc.kill('SIGKILL');
      process.exit(1);
    }
    if (firstSignalAt === 0) {
      firstSignalAt = now;
      void stopAll(signal, 0).then((code) => process.exit(code));
    }
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    const layout = stackLayout(parseStackArgs(argv));
    const { bootstrap, ports } = layout;
    const modelRoot = resolve(PROJECT_ROOT, process.env.MODEL_ROOT ?? 'models');
    const versions = demoVersions(modelRoot);
    say(`model conversion: stable serves ${versions.stable}, canary serves ${versions.canary}`);
    const specs: ServerSpec[] = [
      {
        role: 'stable',
        grpcPort: ports.stable,
        metricsPort: ports.stableMetrics,
        logDir: layout.logDirs.stable,
        version: versions.stable,
      },
      {
        role: 'canary',
        grpcPort: ports.canary,
        metricsPort: ports.canaryMetrics,
        logDir: layout.logDirs.canary,
        version: versions.canary,
      },
    ];
    const busy = await busyPorts([
      { port: bootstrap.listener.port, what: 'Envoy gRPC listener' },
      ...(bootstrap.qaListener ? [{ port: bootstrap.qaListener.port, what: 'Envoy QA listener' }] : []),
      { port: bootstrap.admin.port, what: 'Envoy admin (read-only view)' },
      ...specs.flatMap((s) => [
        { port: s.grpcPort, what: `${s.role} server gRPC` },
        { port: s.metricsPort, what: `${s.role} server metrics` },
      ]),
    ]);
    if (busy.length > 0) {
      throw new Error(
        `these ports are already in use:\n  ${busy.join('\n  ')}\n` +
          'Another stack may be running (stop it with Ctrl-C), or another program holds them.',
      );
    }
    // pino-roll needs the log directory before it links current.log; Envoy needs its log directory.
    for (const d of Object.values(layout.logDirs)) mkdirSync(d, { recursive: true });
    if (layout.rendered !== undefined) await writeFileAtomic(layout.envoyConfig, layout.rendered);
    // A socket left by a stack that was killed would stop Envoy binding its admin.
    if (bootstrap.adminSocket) rmSync(resolve(PROJECT_ROOT, bootstrap.adminSocket), { force: true });
    await writeFileAtomic(
      layout.routesPath,
      readFileSync(join(PROJECT_ROOT, 'envoy', 'routes', 'routes.yaml'), 'utf8'),
    );
    say(`routes: ${shown(layout.routesPath)} reset to the committed default (envoy/routes/routes.yaml)`);

    const started = specs.map((spec) => {
      say(`starting ${spec.role} server on 127.0.0.1:${spec.grpcPort} (metrics :${spec.metricsPort})…`);
      let resolveStarted: () => void = () => undefined;
      const ready = new Promise<void>((r) => {
        resolveStarted = r;
      });
      const child = startServer(spec, () => resolveStarted());
      children.push(child);
      return Promise.race([
        ready,
        child.exited.then((how) => {
          throw new Error(`the ${spec.role} server exited (${how}) before starting; see its output above`);
        }),
        new Promise<never>((_, reject) =>
          setTimeout(
            () => reject(new Error(`the ${spec.role} server did not start within 60 s`)),
            60_000,
          ).unref(),
        ),
      ]);
    });
    await Promise.all(started);

    say(
      `starting Envoy on 127.0.0.1:${bootstrap.listener.port} (admin :${bootstrap.admin.port}, ${shown(layout.envoyConfig)})…`,
    );
    envoy = await startEnvoy({
      binary: envoyBinary(PROJECT_ROOT),
      configPath: layout.envoyConfig,
      cwd: PROJECT_ROOT,
      adminAddressPath: layout.adminAddressPath,
      logLevel: 'warning',
      concurrency: 2,
      detached: true,
      onLog: (line) => process.stdout.write(`[envoy] ${line}\n`),
      timeoutMs: 30_000,
    });
    const envoyChild = track('envoy', envoy.proc);
    children.push(envoyChild);
    await waitHealthy(envoy.admin, 30_000, envoy);
    // Envoy never rotates its access log file; rename it aside when large and have Envoy reopen it.
    if (bootstrap.accessLog !== 'stdout') {
      const running = envoy;
      new AccessLogRotator({
        path: resolve(PROJECT_ROOT, bootstrap.accessLog),
        ...ACCESS_LOG_ROTATION,
        reopen: () => running.reopenLogs(),
      }).start();
    }

    for (const c of children.filter((x) => x.name !== 'envoy')) {
      void c.exited.then((how) => {
        if (!stopping) {
          say(`${c.name} server exited (${how}); Envoy now routes around it. Ctrl-C stops the stack.`);
        }
      });
    }
    void envoyChild.exited.then((how) => {
      if (!stopping) void stopAll(`Envoy exited (${how})`, 1).then((code) => process.exit(code));
    });

    // grpcurl is a developer convenience, not installed by the bootstrap.
    const grpcurl = existsSync(join(PROJECT_ROOT, '.tools', 'bin', 'grpcurl'))
      ? '.tools/bin/grpcurl'
      : 'grpcurl';
    const request = JSON.stringify({ model: 'conversion', instances: [GRPCURL_RECORD] });
    const [stable, canary] = specs as [ServerSpec, ServerSpec];
    const admin = `127.0.0.1:${bootstrap.admin.port}`;
    const weightsOptions =
      layout.rendered === undefined ? '' : ` --admin ${admin} --routes ${shown(layout.routesPath)}`;
    const reportOptions =
      layout.rendered === undefined ? '' : ` -- --logs ${shown(join(layout.logDirs.stable, '..'))}`;
    process.stdout.write(
      [
        '',
        `[stack] ready in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
        `  gRPC via Envoy   127.0.0.1:${bootstrap.listener.port}   stable 90% / canary 10%, sticky per x-user-id (x-ab-group is ignored here)`,
        ...(bootstrap.qaListener
          ? [
              `  QA via Envoy     127.0.0.1:${bootstrap.qaListener.port}   the same, plus x-ab-group: stable|canary forces an arm`,
            ]
          : []),
        `  stable server    127.0.0.1:${stable.grpcPort}  conversion ${stable.version}  metrics http://127.0.0.1:${stable.metricsPort}/metrics  logs ${shown(stable.logDir)}/`,
        `  canary server    127.0.0.1:${canary.grpcPort}  conversion ${canary.version}  metrics http://127.0.0.1:${canary.metricsPort}/metrics  logs ${shown(canary.logDir)}/`,
        `  Envoy admin      http://${admin}   read-only (/clusters, /stats, /config_dump)  access log ${shown(join(layout.logDirs.envoy, 'access.log'))}`,
        ...(bootstrap.adminSocket
          ? [
              `  Envoy admin, full  unix socket ${shown(resolve(PROJECT_ROOT, bootstrap.adminSocket))} (mode 0600: this user only)`,
            ]
          : []),
        '',
        'Try it:',
        `  ${grpcurl} -plaintext -H 'x-user-id: 42' -d '${request}' 127.0.0.1:${bootstrap.listener.port} inference.v1.InferenceService/Predict`,
        `  npm run weights -- --canary 25${weightsOptions}`,
        `  npm run weights -- --rollback${weightsOptions}`,
        `  npm run ab-report${reportOptions}`,
        '',
        'Ctrl-C stops everything.',
        '',
      ].join('\n'),
    );
    return await new Promise<number>(() => undefined); // run until a signal
  } catch (err) {
    process.stderr.write(`[stack] ${(err as Error).message}\n`);
    return children.length === 0 ? 1 : stopAll('start-up failed', 1);
  }
}

runIfMain(import.meta.url, 'start', main);
