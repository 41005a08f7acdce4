/**
 * Runs the real server (`node dist/server/main.js`) as a child process on
 * loopback and reads its JSON log lines from stdout. Used by benchmarks, the
 * local stack and tests that need signals or a real process death.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { PROJECT_ROOT } from './paths.js';

export interface SpawnedServer {
  proc: ChildProcess;
  grpcPort: number;
  metricsPort: number;
  /** Every JSON log line the process printed on stdout (unless `onLine` consumes them). */
  lines: Record<string, unknown>[];
  /** SIGTERM and wait for exit; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL and wait for exit. */
  kill(): Promise<void>;
}

/**
 * Runs `node dist/server/main.js` as a child process on loopback with the given
 * env (GRPC_PORT and METRICS_PORT default to 0) and resolves once it logged
 * "server started". Use it where a test needs signals or a real process death.
 */
export function spawnServer(
  env: Record<string, string>,
  timeoutMs = 20_000,
  onLine?: (line: Record<string, unknown>) => void,
): Promise<SpawnedServer> {
  const proc = spawn(process.execPath, [join(PROJECT_ROOT, 'dist', 'server', 'main.js')], {
    cwd: PROJECT_ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      GRPC_PORT: '0',
      METRICS_PORT: '0',
      MODEL_ROOT: join(PROJECT_ROOT, 'models'),
      LOG_DIR: '',
      LOG_STDOUT: 'true',
      DRAIN_MS: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`server did not start within ${timeoutMs} ms; stderr: ${stderr}`));
    }, timeoutMs);
    let buf = '';
    proc.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    proc.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      let nl = buf.indexOf('\n');
      while (nl >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        nl = buf.indexOf('\n');
        let rec: Record<string, unknown>;
        try {
          rec = JSON.parse(line) as Record<string, unknown>;
        } catch {
          continue;
        }
        if (onLine) onLine(rec);
        else lines.push(rec);
        if (rec.msg === 'server started') {
          clearTimeout(timer);
          resolve({
            proc,
            grpcPort: rec.grpcPort as number,
            metricsPort: rec.metricsPort as number,
            lines,
            stop: async () => {
              proc.kill('SIGTERM');
              return exited;
            },
            kill: async () => {
              proc.kill('SIGKILL');
              await exited;
            },
          });
        }
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before starting; stderr: ${stderr}`));
    });
  });
}
