/**
 * The baselines `npm run bench` compares this server with, started on
 * 127.0.0.1 and registered with a `Processes` list: the floor (bare grpc-js,
 * scripts/bench/floor-server.ts) and the seed's Flask stack
 * (scripts/bench/flask_app.py). Each prints `{"event":"listening","port":N}`
 * once it listens.
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileTail, spawnToFile, stopChild, untilReady } from '../children.js';
import { DIST, PROJECT_ROOT, VENV_PYTHON } from '../paths.js';
import type { Processes } from './processes.js';

export const FLASK_APP = join(PROJECT_ROOT, 'scripts', 'bench', 'flask_app.py');
/** flask_app.py's exit code when the rebuilt estimator is not the served model. */
export const FLASK_EXIT_NOT_SAME = 3;

/** A process that only needs a port: the floor server or the Flask baseline. */
export interface BenchProcess {
  readonly name: string;
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly port: number;
  readonly outFile: string;
  stop(): Promise<unknown>;
}

/** The port of the process's `{"event":"listening","port":N}` line in `outFile`, once it printed one. */
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

/** Spawns `cmd` with output to `workDir/<name>.out`, registers it, and resolves once it listens. */
async function startListening(
  procs: Processes,
  o: {
    readonly name: string;
    readonly what: string;
    readonly cmd: string;
    readonly args: readonly string[];
    readonly env: NodeJS.ProcessEnv;
    readonly workDir: string;
    readonly timeoutMs: number;
  },
): Promise<BenchProcess> {
  const outFile = join(o.workDir, `${o.name}.out`);
  const proc = spawnToFile(o.cmd, o.args, o.env, outFile);
  const stop = () => stopChild(proc);
  procs.add(o.name, stop);
  await untilReady(o.what, proc, () => listeningPort(outFile) !== undefined, {
    timeoutMs: o.timeoutMs,
    output: () => fileTail(outFile),
  });
  const port = listeningPort(outFile) as number;
  return { name: o.name, proc, pid: proc.pid as number, port, outFile, stop };
}

/** Starts the floor server (scripts/bench/floor-server.ts, built into dist/). */
export function startFloor(
  procs: Processes,
  workDir: string,
  nodeArgs: readonly string[] = [],
): Promise<BenchProcess> {
  return startListening(procs, {
    name: 'floor',
    what: 'floor server',
    cmd: process.execPath,
    args: [...nodeArgs, join(DIST, 'scripts', 'bench', 'floor-server.js'), '--port', '0'],
    env: { PATH: process.env.PATH ?? '' },
    workDir,
    timeoutMs: 20_000,
  });
}

/**
 * Starts the Flask baseline for `versionDir`. It rebuilds and verifies the
 * sklearn estimator first (a few seconds), and exits 3 if it is not the
 * served model, which rejects here with its explanation.
 */
export function startFlask(
  procs: Processes,
  o: { workDir: string; versionDir: string; logPredictions?: boolean; timeoutMs?: number },
): Promise<BenchProcess> {
  const args = [FLASK_APP, o.versionDir, '--port', '0'];
  if (o.logPredictions ?? true) args.push('--log-file', join(o.workDir, 'flask-predictions.log'));
  return startListening(procs, {
    name: 'flask',
    what: 'Flask baseline',
    cmd: VENV_PYTHON,
    args,
    env: { PATH: process.env.PATH ?? '', PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' },
    workDir: o.workDir,
    timeoutMs: o.timeoutMs ?? 180_000,
  });
}
