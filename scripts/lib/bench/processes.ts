/**
 * What a benchmark starts, kept in one list so that it stops everything it
 * started, in reverse order, whether it ends normally, fails, or is
 * interrupted; and the real server as benchmarks run it.
 *
 * A benchmark's server logs where production's do, to files (pino-roll under
 * `LOG_DIR`), never through a pipe to the benchmark: parsing 10 000 log lines
 * a second here would take CPU from the processes being measured on a 2-core
 * machine. It is therefore ready when gRPC health says SERVING (models loaded
 * and warm), not on the "server started" log line, which `LOG_LEVEL=warn`
 * would not print.
 */
import { cpSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { stopChild } from '../children.js';
import { MODELS_DIR } from '../paths.js';
import { type ServerProcess, startServer } from '../server-process.js';

/** Stops registered in start order; `stopAll` runs them in reverse, each once, ignoring failures. */
/**
 * A repository in `workDir` holding only these versions of the demo model and
 * no labels.json, so a server pinned with MODEL_VERSION_POLICY serves exactly
 * the pin (a model with labels serves its label, whatever the pin says).
 * Copied once per work dir; returns its root.
 */
export function benchRepository(workDir: string, versions: readonly string[], model = 'conversion'): string {
  const root = join(workDir, 'models');
  for (const v of versions) {
    const to = join(root, model, v);
    if (!existsSync(to)) cpSync(join(MODELS_DIR, model, v), to, { recursive: true });
  }
  return root;
}

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

/** One real server process of a benchmark. */
export interface BenchServer extends ServerProcess {
  readonly name: string;
  /** Where its stdout/stderr go. */
  readonly outFile: string;
}

let serverStarts = 0;

/**
 * Starts the real server on free loopback ports with `env` over these
 * defaults: the demo models, logs to files in `workDir/logs-<name>-<n>` (not
 * stdout), no drain delay, 2 s shutdown grace. Registered with `procs` from
 * the spawn on; resolves once health says SERVING.
 */
export async function startBenchServer(
  procs: Processes,
  o: {
    readonly name: string;
    readonly workDir: string;
    readonly env?: Readonly<Record<string, string>>;
    /** Extra node flags, e.g. `--cpu-prof`. */
    readonly nodeArgs?: readonly string[];
    /** Another build's `dist/server/main.js` (default: this tree's). */
    readonly main?: string;
    readonly timeoutMs?: number;
  },
): Promise<BenchServer> {
  // Each start gets its own files, even when a name is used again.
  const stem = `${o.name}-${++serverStarts}`;
  const outFile = join(o.workDir, `${stem}.out`);
  const server = await startServer({
    ports: 'free',
    outFile,
    env: { LOG_DIR: join(o.workDir, `logs-${stem}`), SHUTDOWN_GRACE_MS: '2000', ...o.env },
    ...(o.nodeArgs ? { nodeArgs: o.nodeArgs } : {}),
    ...(o.main !== undefined ? { main: o.main } : {}),
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
    onSpawn: (proc) => procs.add(o.name, () => stopChild(proc)),
  });
  return { ...server, name: o.name, outFile };
}
