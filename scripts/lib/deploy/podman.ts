/**
 * Podman as the container engine behind Docker's CLI and Compose: its
 * Docker-compatible API on a socket of our own (`podman system service`), and
 * the health checks that podman 4.3 would schedule with systemd timers, which
 * this machine kind does not have: without them a container's HEALTHCHECK never
 * runs, so `depends_on: condition: service_healthy` and `up --wait` wait forever.
 */
import { request } from 'node:http';
import { join } from 'node:path';
import { Daemon, exec, execOk, waitFor } from './exec.js';

/** `podman …` with a time limit; returns stdout, throws ExecError on failure. */
export function podman(args: readonly string[], timeoutMs = 120_000): Promise<string> {
  return execOk('podman', args, { timeoutMs });
}

/** Podman's Docker-compatible API served on a unix socket in `dir`. */
export class PodmanService {
  private constructor(
    private readonly daemon: Daemon,
    readonly socketPath: string,
  ) {}

  /** Where `podman system service` writes its log (warnings such as "… resorting to SIGKILL"). */
  get logFile(): string {
    return this.daemon.logFile;
  }

  /** The value for DOCKER_HOST. */
  get dockerHost(): string {
    return `unix://${this.socketPath}`;
  }

  static async start(dir: string): Promise<PodmanService> {
    const socketPath = join(dir, 'podman.sock');
    // --time=0: no idle timeout; we stop it ourselves.
    const daemon = Daemon.start(
      'podman system service',
      'podman',
      ['system', 'service', '--time=0', `unix://${socketPath}`],
      {
        logFile: join(dir, 'podman-service.log'),
      },
    );
    const service = new PodmanService(daemon, socketPath);
    await waitFor(
      'podman system service to answer /_ping',
      async () => {
        if (daemon.exit)
          throw new Error(
            `podman system service exited (${JSON.stringify(daemon.exit)}); see ${daemon.logFile}`,
          );
        return (await service.ping()) ? true : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100 },
    );
    return service;
  }

  ping(): Promise<boolean> {
    return new Promise((resolve) => {
      const req = request({ socketPath: this.socketPath, path: '/_ping', timeout: 2000 }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      });
      req.on('error', () => resolve(false));
      req.on('timeout', () => req.destroy());
      req.end();
    });
  }

  stop(): Promise<void> {
    return this.daemon.stop(5000);
  }

  killNow(): void {
    this.daemon.killNow();
  }
}

/**
 * Runs `podman healthcheck run` every `intervalMs` for each running container
 * of a Compose project that has a health check: the scheduler podman 4.3
 * lacks here. Podman then records each result in the container's state, so
 * `docker inspect` shows the HEALTHCHECK's own verdict (healthy only after a
 * check passed; unhealthy after `retries` failures).
 */
export class HealthcheckRunner {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  /** Checks run, and how many of them failed, for the report. */
  runs = 0;
  failures = 0;

  constructor(
    private readonly project: string,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    if (this.running) return; // a slow check must not pile up behind itself
    this.running = true;
    try {
      const ids = (
        await exec(
          'podman',
          [
            'ps',
            '-q',
            '--filter',
            `label=com.docker.compose.project=${this.project}`,
            '--filter',
            'status=running',
          ],
          { timeoutMs: 10_000 },
        )
      ).stdout
        .split('\n')
        .filter(Boolean);
      await Promise.all(
        ids.map(async (id) => {
          const hasCheck = await exec(
            'podman',
            ['inspect', '--format', '{{if .Config.Healthcheck}}yes{{end}}', id],
            {
              timeoutMs: 10_000,
            },
          );
          if (hasCheck.stdout.trim() !== 'yes') return;
          const r = await exec('podman', ['healthcheck', 'run', id], { timeoutMs: 15_000 });
          this.runs++;
          if (r.code !== 0) this.failures++;
        }),
      );
    } catch {
      // podman busy or a container going away between ps and run: next tick
    } finally {
      this.running = false;
    }
  }
}

/**
 * Removes the containers and networks of Compose projects named `<prefix><pid>`
 * whose process is gone: what a test run killed with SIGKILL (or a crashed
 * machine) left behind. Projects of live processes are left alone.
 */
export async function removeStaleProjects(prefix: string): Promise<string[]> {
  const labels = await podman(['ps', '-a', '--format', '{{index .Labels "com.docker.compose.project"}}']);
  const stale = [...new Set(labels.split('\n').filter((p) => p.startsWith(prefix)))].filter((p) => {
    const pid = Number(p.slice(prefix.length));
    if (!Number.isInteger(pid) || pid <= 0) return false;
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  });
  for (const project of stale) {
    const ids = (await podman(['ps', '-aq', '--filter', `label=com.docker.compose.project=${project}`]))
      .split('\n')
      .filter(Boolean);
    if (ids.length > 0) await exec('podman', ['rm', '-f', '-t', '2', ...ids], { timeoutMs: 120_000 });
    await exec('podman', ['network', 'rm', `${project}_default`], { timeoutMs: 30_000 });
  }
  return stale;
}
