/**
 * The project's docker-compose.yml driven through Docker Compose (the v5 CLI
 * scripts/dev/bootstrap.mjs builds) against any Docker-compatible engine named by
 * DOCKER_HOST; here, podman's socket (podman.ts). One project name per run, so
 * a test stack never touches anyone else's, and host ports chosen by the caller.
 */
import { join } from 'node:path';
import { type ExecResult, exec, execOk, runSyncQuietly } from './exec.js';
import { PROJECT_ROOT, tool } from './paths.js';

/** The variables docker-compose.yml reads for its host side (all bound to 127.0.0.1). */
export interface ComposePorts {
  /** Envoy's gRPC listener (default 8080). */
  readonly ENVOY_PORT: number;
  /** Envoy's QA listener, the one that honours x-ab-group (default 8081). */
  readonly ENVOY_QA_PORT?: number;
  /** Envoy's read-only admin view (default 9902). */
  readonly ENVOY_ADMIN_PORT: number;
  /** Prometheus (default 9090). */
  readonly PROMETHEUS_PORT: number;
}

export interface ComposeOptions {
  readonly project: string;
  readonly dockerHost: string;
  readonly ports: ComposePorts;
  /** The directory mounted as Envoy's RDS directory (default envoy/routes). */
  readonly routesDir?: string;
  readonly composeFile?: string;
}

/** One container as `docker compose ps --format json` lists it. */
export interface ComposeContainer {
  readonly ID: string;
  readonly Name: string;
  readonly Service: string;
  readonly State: string;
  readonly Health: string;
}

export class ComposeStack {
  constructor(private readonly o: ComposeOptions) {}

  get project(): string {
    return this.o.project;
  }

  /** The environment for `docker` and `docker compose` calls. */
  get env(): NodeJS.ProcessEnv {
    const ports = Object.fromEntries(Object.entries(this.o.ports).map(([k, v]) => [k, String(v)]));
    return {
      ...process.env,
      ...ports,
      ...(this.o.routesDir ? { ROUTES_DIR: this.o.routesDir } : {}),
      DOCKER_HOST: this.o.dockerHost,
      COMPOSE_PROJECT_NAME: this.o.project,
    };
  }

  private args(rest: readonly string[]): string[] {
    return [
      '--project-directory',
      PROJECT_ROOT,
      '-f',
      this.o.composeFile ?? join(PROJECT_ROOT, 'docker-compose.yml'),
      '-p',
      this.o.project,
      ...rest,
    ];
  }

  /** `docker compose <args>`; resolves whatever the exit code. */
  run(args: readonly string[], timeoutMs = 300_000): Promise<ExecResult> {
    return exec(tool('docker-compose'), this.args(args), { env: this.env, timeoutMs });
  }

  /** `docker compose <args>`; throws unless it exits 0. */
  runOk(args: readonly string[], timeoutMs = 300_000): Promise<string> {
    return execOk(tool('docker-compose'), this.args(args), { env: this.env, timeoutMs });
  }

  /**
   * `up -d --no-build --wait`: returns once every service is running and every
   * one with a health check is healthy (the image is built beforehand, once).
   */
  async up(extra: readonly string[] = [], timeoutMs = 300_000): Promise<number> {
    const t0 = Date.now();
    await this.runOk(
      ['up', '-d', '--no-build', '--wait', '--wait-timeout', String(Math.floor(timeoutMs / 1000)), ...extra],
      timeoutMs + 30_000,
    );
    return Date.now() - t0;
  }

  async ps(): Promise<ComposeContainer[]> {
    const out = await this.runOk(['ps', '--all', '--format', 'json'], 60_000);
    // Compose prints one JSON object per line (older versions: one array).
    const text = out.trim();
    if (text === '') return [];
    if (text.startsWith('[')) return JSON.parse(text) as ComposeContainer[];
    return text.split('\n').map((l) => JSON.parse(l) as ComposeContainer);
  }

  /** `down` with volumes and orphans; returns how long it took. */
  async down(timeoutS = 30): Promise<number> {
    const t0 = Date.now();
    await this.runOk(
      ['down', '--volumes', '--remove-orphans', '--timeout', String(timeoutS)],
      (timeoutS + 60) * 1000,
    );
    return Date.now() - t0;
  }

  /** For an interrupted run: the same, synchronously, with a short stop timeout. */
  downSync(): void {
    runSyncQuietly(
      tool('docker-compose'),
      this.args(['down', '--volumes', '--remove-orphans', '--timeout', '5']),
      this.env,
    );
  }

  /** `docker <args>` against the same engine. */
  docker(args: readonly string[], timeoutMs = 60_000): Promise<string> {
    return execOk('docker', args, { env: this.env, timeoutMs });
  }

  /** `docker inspect` of one container or image, parsed. */
  async inspect<T>(id: string): Promise<T> {
    const [first] = JSON.parse(await this.docker(['inspect', id])) as T[];
    if (first === undefined) throw new Error(`docker inspect ${id}: nothing`);
    return first;
  }
}
