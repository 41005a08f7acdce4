/**
 * `npm start`: the whole A/B stack on loopback.
 *
 *   stable server  127.0.0.1:50051  metrics :9464  older demo version   logs/stable
 *   canary server  127.0.0.1:50052  metrics :9465  newer demo version   logs/canary
 *   Envoy          127.0.0.1:8080   QA :8081   admin :9901 (read-only; the full admin
 *                  is the Unix socket envoy/run/admin.sock, mode 0600)   logs/envoy
 *
 * It waits until Envoy reports both clusters healthy, prints the endpoints and
 * a grpcurl line, and on Ctrl-C (SIGINT) or SIGTERM stops the servers first
 * (they drain while Envoy still answers), then Envoy, and exits 0.
 *
 * The routes start from the committed default (envoy/routes/routes.yaml,
 * 90/10) on every start; `npm run rollout` (and `weights`) changes the live
 * copy in envoy/run/routes/, which is not committed. Each server follows its
 * role's label in the model's labels.json. The pieces are libraries:
 * scripts/lib/stack/ (layout, labels, supervisor, banner, server log lines),
 * scripts/lib/server-process.ts and scripts/lib/envoy/.
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { intOption, parseCommandLine } from '../lib/args.js';
import { stopChild } from '../lib/children.js';
import { optionsOrExit, runIfMain } from '../lib/cli.js';
import { ACCESS_LOG_ROTATION, AccessLogRotator } from '../lib/envoy/access-log.js';
import { writeFileAtomic } from '../lib/envoy/files.js';
import { waitClustersHealthy } from '../lib/envoy/health.js';
import { envoyBinary, startEnvoy } from '../lib/envoy/process.js';
import { PROJECT_ROOT } from '../lib/paths.js';
import { busyPorts } from '../lib/ports.js';
import { startServer } from '../lib/server-process.js';
import { readyBanner } from '../lib/stack/banner.js';
import { armVersions } from '../lib/stack/labels.js';
import { MAX_PORT_OFFSET, ROLES, type Role, shown, stackLayout, stackPorts } from '../lib/stack/layout.js';
import { terminalLine } from '../lib/stack/server-log.js';
import { type Child, Supervisor } from '../lib/stack/supervisor.js';

export const USAGE = `Usage: npm start [-- [--port-offset <n>] [--state-dir <dir>]]

Starts a stable and a canary server and Envoy (90/10) on loopback, waits until
Envoy sees both healthy, and prints the endpoints. Ctrl-C or SIGTERM stops
the servers (they drain), then Envoy.

  --port-offset <n>   add n to every port (Envoy 8080/8081/9901, servers 50051/50052, metrics 9464/9465)
  --state-dir <dir>   keep the rendered bootstrap, live routes and logs there
                      (default: envoy/envoy.yaml, envoy/run/routes/ and logs/)
  -h, --help          this text`;

interface StackOptions {
  readonly portOffset: number;
  readonly stateDir?: string;
  readonly help: boolean;
}

export function parseStackArgs(argv: readonly string[]): StackOptions {
  const { values } = parseCommandLine(argv, {
    'port-offset': { type: 'string' },
    'state-dir': { type: 'string' },
  });
  return {
    portOffset: intOption(values['port-offset'], '--port-offset', 0, MAX_PORT_OFFSET) ?? 0,
    ...(values['state-dir'] ? { stateDir: values['state-dir'] } : {}),
    help: values.help === true,
  };
}

const say = (s: string) => process.stdout.write(`[stack] ${s}\n`);

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'start', usage: USAGE, parse: parseStackArgs }, argv);
  if (typeof opts === 'number') return opts;
  const t0 = Date.now();
  const supervisor = new Supervisor(say);
  supervisor.handleSignals();
  try {
    const layout = stackLayout(opts);
    const modelRoot = resolve(PROJECT_ROOT, process.env.MODEL_ROOT ?? 'models');
    const versions = await armVersions(modelRoot, say);
    say(
      `model conversion: labels stable=${versions.stable}, canary=${versions.canary} (each server follows its role's label)`,
    );
    const busy = await busyPorts(stackPorts(layout));
    if (busy.length > 0) {
      throw new Error(
        `these ports are already in use:\n  ${busy.join('\n  ')}\n` +
          'Another stack may be running (stop it with Ctrl-C), or another program holds them.',
      );
    }
    // Envoy opens its access log but does not create the directory (the servers' logger creates its own).
    mkdirSync(layout.envoyLogDir, { recursive: true });
    if (layout.rendered !== undefined) await writeFileAtomic(layout.envoyConfig, layout.rendered);
    // A socket left by a stack that was killed would stop Envoy binding its admin.
    const socket = layout.bootstrap.adminSocket;
    if (socket) rmSync(resolve(PROJECT_ROOT, socket), { force: true });
    await writeFileAtomic(
      layout.routesPath,
      readFileSync(join(PROJECT_ROOT, 'envoy', 'routes', 'routes.yaml'), 'utf8'),
    );
    say(`routes: ${shown(layout.routesPath)} reset to the committed default (envoy/routes/routes.yaml)`);

    const servers: Child[] = [];
    const startArm = async (role: Role) => {
      const slot = layout.servers[role];
      say(`starting ${role} server on 127.0.0.1:${slot.grpcPort} (metrics :${slot.metricsPort})…`);
      try {
        return await startServer({
          inheritEnv: true,
          ports: { grpc: slot.grpcPort, metrics: slot.metricsPort },
          env: {
            ROLE: role,
            MODEL_ROOT: modelRoot,
            LOG_DIR: slot.logDir,
            LOG_STDOUT: 'true',
            // Envoy checks health every second; two seconds of NOT_SERVING is enough for it to notice.
            DRAIN_MS: process.env.DRAIN_MS ?? '2000',
          },
          // Own process group: Ctrl-C reaches the stack only, which then stops children in order.
          detached: true,
          onSpawn: (proc) => servers.push(supervisor.add(role, proc, () => stopChild(proc, 30_000))),
          onLog: (rec) => {
            const line = terminalLine(role, rec);
            if (line !== undefined) process.stdout.write(`${line}\n`);
          },
          onText: (line, stream) => process[stream].write(`[${role}] ${line}\n`),
        });
      } catch (err) {
        const why = (err as Error).message.replace(/; stderr: [\s\S]*$/, '');
        throw new Error(`the ${role} server did not start (${why}); see its output above`);
      }
    };
    await Promise.all(ROLES.map(startArm));

    say(
      `starting Envoy on 127.0.0.1:${layout.bootstrap.listener.port} (admin :${layout.bootstrap.admin.port}, ${shown(layout.envoyConfig)})…`,
    );
    const envoy = await startEnvoy({
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
    const envoyChild = supervisor.add('envoy', envoy.proc, () => envoy.stop(5000), true);
    await waitClustersHealthy(
      envoy,
      { stable: 1, canary: 1 },
      { timeoutMs: 30_000, intervalMs: 200, onState: (state) => say(`Envoy sees ${state}`) },
    );
    // Envoy never rotates its access log file: rename it aside when large, and Envoy reopens it.
    if (layout.bootstrap.accessLog !== 'stdout') {
      new AccessLogRotator({
        path: resolve(PROJECT_ROOT, layout.bootstrap.accessLog),
        ...ACCESS_LOG_ROTATION,
        reopen: () => envoy.reopenLogs(),
      }).start();
    }

    for (const child of servers) {
      supervisor.onUnexpectedExit(child, (how) =>
        say(`${child.name} server exited (${how}); Envoy now routes around it. Ctrl-C stops the stack.`),
      );
    }
    supervisor.onUnexpectedExit(envoyChild, (how) => {
      void supervisor.stopAll(`Envoy exited (${how})`, 1).then((code) => process.exit(code));
    });
    process.stdout.write(readyBanner(layout, versions, (Date.now() - t0) / 1000));
    return await new Promise<number>(() => undefined); // run until a signal
  } catch (err) {
    process.stderr.write(`[stack] ${(err as Error).message}\n`);
    return supervisor.hasChildren ? supervisor.stopAll('start-up failed', 1) : 1;
  }
}

runIfMain(import.meta.url, 'start', main);
