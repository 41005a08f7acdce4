/**
 * The one launcher of the real server as a child process (`node
 * dist/server/main.js`) on loopback, for the local stack, the benchmarks and
 * the tests that need signals or a real process death.
 *
 * Two ways to run it:
 * - piped (the default): its stdout is read here line by line; it is ready
 *   when it logs "server started", which also says the ports it bound (so
 *   port 0 works);
 * - `outFile`: its output goes to a file, never through this process (a
 *   benchmark must not spend CPU parsing 10 000 log lines a second); it is
 *   ready when gRPC health says SERVING, so its ports must be known first.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { credentials, Metadata } from '@grpc/grpc-js';
import {
  HealthCheckResponse_ServingStatus,
  HealthClient,
} from '../../server/generated/grpc/health/v1/health.js';
import { exitText, fileTail, spawnToFile, stopChild, untilReady } from './children.js';
import { onLines } from './lines.js';
import { MODELS_DIR, PROJECT_ROOT, SERVER_MAIN } from './paths.js';
import { freePort } from './ports.js';

/** One JSON log line of the server. */
export type LogRecord = Record<string, unknown>;

/** The service whose health means "models loaded and warm". */
const INFERENCE_SERVICE = 'inference.v1.InferenceService';

export interface ServerOptions {
  /**
   * Server config variables over the defaults: the demo models, loopback,
   * no file logging (`LOG_DIR` empty), stdout logging when piped, no drain delay.
   */
  readonly env?: Readonly<Record<string, string>>;
  /**
   * Start from this process's whole environment rather than PATH alone, so an
   * operator's settings (LOG_LEVEL…) reach the server; `env` still wins.
   */
  readonly inheritEnv?: boolean;
  /**
   * gRPC and metrics ports, over `env`. Default: `GRPC_PORT`/`METRICS_PORT` of
   * `env`, else 0 (the kernel picks; piped only). `'free'`: ports found free
   * just before the start.
   */
  readonly ports?: { readonly grpc: number; readonly metrics: number } | 'free';
  /** Node flags before the script, e.g. `--cpu-prof`. */
  readonly nodeArgs?: readonly string[];
  /** The server's entry script (default: this tree's `dist/server/main.js`); `bench:compare` runs another build's. */
  readonly main?: string;
  /** Its own process group, so a terminal's Ctrl-C reaches only the parent, which stops it in order. */
  readonly detached?: boolean;
  /** Append stdout and stderr to this file instead of piping them (readiness from gRPC health). */
  readonly outFile?: string;
  /** Piped: each JSON line of stdout. When given, `lines` stays empty. */
  readonly onLog?: (rec: LogRecord) => void;
  /** Piped: each stdout line that is not JSON, and each stderr line. */
  readonly onText?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Called right after the spawn, before it is ready, so a caller can stop it whatever happens next. */
  readonly onSpawn?: (proc: ChildProcess) => void;
  readonly timeoutMs?: number;
}

/** A started server. */
export interface ServerProcess {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly grpcPort: number;
  readonly metricsPort: number;
  /** host:port of gRPC. */
  readonly host: string;
  /** Piped without `onLog`: every JSON log line it printed on stdout. */
  readonly lines: LogRecord[];
  /** Resolves once it has exited, with how (`code 0`, `signal SIGKILL`). */
  readonly exited: Promise<string>;
  /** SIGTERM (the server drains), SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>;
}

function healthServing(client: HealthClient): Promise<boolean> {
  return new Promise((resolve) =>
    client.check(
      { service: INFERENCE_SERVICE },
      new Metadata(),
      { deadline: Date.now() + 1000 },
      (err, res) => resolve(!err && res?.status === HealthCheckResponse_ServingStatus.SERVING),
    ),
  );
}

/** Starts the server as `o` says and resolves once it is ready; rejects (and stops it) otherwise. */
export async function startServer(o: ServerOptions = {}): Promise<ServerProcess> {
  const piped = o.outFile === undefined;
  const given = o.ports === 'free' ? { grpc: await freePort(), metrics: await freePort() } : o.ports;
  const env: NodeJS.ProcessEnv = {
    GRPC_HOST: '127.0.0.1',
    METRICS_HOST: '127.0.0.1',
    GRPC_PORT: '0',
    METRICS_PORT: '0',
    MODEL_ROOT: MODELS_DIR,
    LOG_DIR: '',
    LOG_STDOUT: piped ? 'true' : 'false',
    DRAIN_MS: '0',
    ...(o.inheritEnv ? process.env : { PATH: process.env.PATH ?? '' }),
    ...o.env,
    // Ports given as an option win over any environment.
    ...(given ? { GRPC_PORT: String(given.grpc), METRICS_PORT: String(given.metrics) } : {}),
  };
  const ports = { grpc: Number(env.GRPC_PORT), metrics: Number(env.METRICS_PORT) };
  if (!piped && !(ports.grpc > 0)) {
    throw new Error('a server whose output goes to a file needs its ports given (or "free")');
  }
  const args = [...(o.nodeArgs ?? []), o.main ?? SERVER_MAIN];
  const proc =
    o.outFile === undefined
      ? spawn(process.execPath, args, {
          cwd: PROJECT_ROOT,
          env,
          stdio: ['ignore', 'pipe', 'pipe'],
          detached: o.detached ?? false,
        })
      : spawnToFile(process.execPath, args, env, o.outFile, { detached: o.detached ?? false });
  const exited = new Promise<string>((resolve) =>
    proc.once('exit', (code, signal) => resolve(exitText(code, signal))),
  );
  o.onSpawn?.(proc);
  const lines: LogRecord[] = [];
  const timeoutMs = o.timeoutMs ?? 60_000;
  const done = (grpcPort: number, metricsPort: number): ServerProcess => ({
    proc,
    pid: proc.pid as number,
    grpcPort,
    metricsPort,
    host: `127.0.0.1:${grpcPort}`,
    lines,
    exited,
    stop: (graceMs = 30_000) => stopChild(proc, graceMs),
    kill: async () => {
      proc.kill('SIGKILL');
      await exited;
    },
  });

  if (o.outFile !== undefined) {
    const outFile = o.outFile;
    const client = new HealthClient(`127.0.0.1:${ports.grpc}`, credentials.createInsecure());
    try {
      await untilReady('server', proc, () => healthServing(client), {
        timeoutMs,
        output: () => fileTail(outFile),
      });
    } catch (err) {
      await stopChild(proc, 1000);
      throw err;
    } finally {
      client.close();
    }
    return done(ports.grpc, ports.metrics);
  }

  let stderr = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`server did not start within ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    onLines(proc.stderr, (line) => {
      // A crash's reason is at the end; keep a bounded tail for the error message.
      stderr = `${stderr}${line}\n`.slice(-8192);
      o.onText?.(line, 'stderr');
    });
    onLines(proc.stdout, (line) => {
      let rec: LogRecord;
      try {
        rec = JSON.parse(line) as LogRecord;
      } catch {
        o.onText?.(line, 'stdout');
        return;
      }
      if (o.onLog) o.onLog(rec);
      else lines.push(rec);
      if (rec.msg === 'server started') {
        clearTimeout(timer);
        resolve(done(rec.grpcPort as number, rec.metricsPort as number));
      }
    });
    // 'close', not 'exit': by then stderr has been read to its end, so the message holds the reason.
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code ?? signal} before starting; stderr: ${stderr}`));
    });
  });
}
