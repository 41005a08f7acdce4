/**
 * Logging never stops serving: a full disk under the file destination, and
 * under stdout too, with the real server process (its SonicBoom streams, its
 * signal handling, its exit). The disk is a small tmpfs (root only).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import {
  closeSync,
  constants,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { InferenceServiceClient } from '../../server/generated/inference/v1/inference.js';
import { metricValue } from '../helpers/envoy.js';
import { fifoInPlaceOf } from '../helpers/fifo.js';
import { predict, ROOT, SAMPLE_RECORD, waitFor } from '../helpers/server.js';
import { canMount, mountTmpfs, type Tmpfs } from '../helpers/tmpfs.js';

interface Proc {
  readonly proc: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: string | null; atMs: number }>;
  /** JSON lines from stdout, when stdout is a pipe. */
  readonly lines: Record<string, unknown>[];
  stderr: string;
}

function start(env: Record<string, string>, stdout: 'pipe' | number): Proc {
  const proc = spawn(process.execPath, [join(ROOT, 'dist', 'server', 'main.js')], {
    cwd: ROOT,
    env: {
      PATH: process.env.PATH ?? '',
      GRPC_PORT: '0',
      METRICS_PORT: '0',
      MODEL_ROOT: join(ROOT, 'models'),
      DRAIN_MS: '0',
      SHUTDOWN_GRACE_MS: '2000',
      ...env,
    },
    stdio: ['ignore', stdout, 'pipe'],
  });
  const p: Proc = {
    proc,
    lines: [],
    stderr: '',
    exited: new Promise((resolve) =>
      proc.once('exit', (code, signal) => resolve({ code, signal, atMs: Date.now() })),
    ),
  };
  proc.stderr?.on('data', (d: Buffer) => {
    p.stderr += d.toString();
  });
  let buf = '';
  proc.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        p.lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // not JSON
      }
    }
  });
  return p;
}

/** How the process exited, or undefined if it is still running after `ms`. */
async function exitWithin(p: Proc, ms: number): Promise<Awaited<Proc['exited']> | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.exited,
      new Promise<undefined>((r) => {
        timer = setTimeout(() => r(undefined), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** JSON lines of a file (missing file: none); a torn last line is skipped. */
function fileLines(path: string): Record<string, unknown>[] {
  if (!existsSync(path)) return [];
  const out: Record<string, unknown>[] = [];
  for (const l of readFileSync(path, 'utf8').split('\n')) {
    try {
      out.push(JSON.parse(l) as Record<string, unknown>);
    } catch {
      // partial or empty
    }
  }
  return out;
}

/** Every line of the rotated log files in `dir`. */
function rotatedLines(dir: string): Record<string, unknown>[] {
  return readdirSync(dir)
    .filter((n) => /^server\..*\.log$/.test(n))
    .flatMap((n) => fileLines(join(dir, n)));
}

async function metrics(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}

/** `n` Predict calls, one at a time; resolves with how many succeeded. */
async function calls(port: number, n: number): Promise<number> {
  const client = new InferenceServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
  let ok = 0;
  try {
    for (let i = 0; i < n; i++) {
      await predict(
        client,
        { instances: [{ ...SAMPLE_RECORD, deviceName: 'x'.repeat(200) }] },
        undefined,
        5000,
      );
      ok++;
    }
  } finally {
    client.close();
  }
  return ok;
}

describe('logging on a full disk', function () {
  this.timeout(60_000);
  let disk: Tmpfs;
  let server: Proc | undefined;

  before(function () {
    if (!canMount()) this.skip(); // mounting a tmpfs needs root
  });
  beforeEach(() => {
    disk = mountTmpfs(512 * 1024);
  });
  afterEach(async () => {
    if (server && server.proc.exitCode === null && server.proc.signalCode === null) {
      server.proc.kill('SIGKILL');
      await server.exited;
    }
    server = undefined;
    disk?.unmount();
  });

  it('keeps serving when LOG_DIR is full, counts and reports the dropped lines, and recovers when space returns', async () => {
    const logDir = join(disk.dir, 'logs');
    server = start({ LOG_DIR: logDir, LOG_STDOUT: 'true' }, 'pipe');
    const s = server;
    await waitFor('server started', () => s.lines.some((l) => l.msg === 'server started'), 20_000);
    const started = s.lines.find((l) => l.msg === 'server started') as {
      grpcPort: number;
      metricsPort: number;
    };
    disk.fill();
    expect(await calls(started.grpcPort, 200)).to.equal(200);
    expect(s.proc.exitCode, s.stderr).to.equal(null);
    const warn = s.lines.find((l) => l.msg === 'log destination failing; dropping its lines');
    expect(warn, 'a WARN on stdout naming the file destination').to.include({
      level: 'warn',
      destination: 'file',
    });
    const dropped = metricValue(await metrics(started.metricsPort), 'inference_log_write_errors_total', {
      destination: 'file',
    });
    expect(dropped).to.be.greaterThan(0);

    disk.free();
    await waitFor(
      'Predict lines in the log file again',
      async () => {
        await calls(started.grpcPort, 5);
        return rotatedLines(logDir).some((l) => l.msg === 'log destination recovered');
      },
      10_000,
      200,
    );
    const recovered = rotatedLines(logDir).find((l) => l.msg === 'log destination recovered');
    expect(recovered).to.include({ destination: 'file' });
    expect(Number(recovered?.dropped)).to.be.greaterThan(0);

    s.proc.kill('SIGTERM');
    const exit = await s.exited;
    expect(exit.code, s.stderr).to.equal(0);
    expect(s.lines.some((l) => l.msg === 'shutdown: complete')).to.equal(true);
  });

  it('keeps serving and still shuts down on SIGTERM when stdout and LOG_DIR are both on the full disk', async () => {
    const logDir = join(disk.dir, 'logs');
    const outPath = join(disk.dir, 'stdout.log');
    const out = openSync(outPath, 'a');
    server = start({ LOG_DIR: logDir, LOG_STDOUT: 'true', SHUTDOWN_GRACE_MS: '2000' }, out);
    closeSync(out);
    const s = server;
    await waitFor('server started', () => fileLines(outPath).some((l) => l.msg === 'server started'), 20_000);
    const started = fileLines(outPath).find((l) => l.msg === 'server started') as {
      grpcPort: number;
      metricsPort: number;
    };
    disk.fill();
    expect(await calls(started.grpcPort, 200)).to.equal(200);
    const text = await metrics(started.metricsPort);
    expect(
      metricValue(text, 'inference_log_write_errors_total', { destination: 'stdout' }),
    ).to.be.greaterThan(0);
    expect(metricValue(text, 'inference_log_write_errors_total', { destination: 'file' })).to.be.greaterThan(
      0,
    );

    const t0 = Date.now();
    s.proc.kill('SIGTERM');
    const exit = await exitWithin(s, 15_000);
    expect(
      exit,
      'the server exited after SIGTERM (it used to spin in a synchronous flush forever)',
    ).to.not.equal(undefined);
    expect(exit?.code, s.stderr).to.equal(0);
    // DRAIN_MS 0 + nothing in flight: well inside the grace period, plus the bounded final flush.
    expect((exit?.atMs ?? 0) - t0).to.be.lessThan(2000 + 3000);
  });
});

describe('logging to a stdout whose reader stalled', function () {
  this.timeout(60_000);

  // A stuck log driver: the reader holds stdout open and never reads. Once the
  // pipe (64 KiB) or the socket buffer is full, a blocking write() waits for
  // good, and Node's exit waits for it.
  for (const kind of ['a pipe (FIFO)', "a socket (Node's stdio: 'pipe')"] as const) {
    it(`on ${kind}: keeps serving, and exits 0 on SIGTERM within the bounded flush (it used to hang in write() for good)`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'stalled-stdout-'));
      const logDir = join(dir, 'logs');
      mkdirSync(logDir);
      let reader: number | undefined;
      let s: Proc | undefined;
      try {
        if (kind === 'a pipe (FIFO)') {
          const fifo = join(dir, 'stdout');
          fifoInPlaceOf(fifo);
          reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
          const writer = openSync(fifo, constants.O_WRONLY);
          s = start({ LOG_DIR: logDir, LOG_STDOUT: 'true' }, writer);
          closeSync(writer);
        } else {
          s = start({ LOG_DIR: logDir, LOG_STDOUT: 'true' }, 'pipe');
          s.proc.stdout?.pause(); // read no more than the stream's own small buffer
        }
        const server = s;
        await waitFor(
          'server started',
          () => rotatedLines(logDir).some((l) => l.msg === 'server started'),
          20_000,
        );
        const started = rotatedLines(logDir).find((l) => l.msg === 'server started') as { grpcPort: number };
        // About 800 KB of log lines: far more than the pipe or the socket holds.
        expect(await calls(started.grpcPort, 800)).to.equal(800);
        const t0 = Date.now();
        server.proc.kill('SIGTERM');
        const exit = await exitWithin(server, 15_000);
        expect(exit, 'the server exited after SIGTERM').to.not.equal(undefined);
        expect(exit?.code, server.stderr).to.equal(0);
        // DRAIN_MS 0, nothing in flight, then the final flush, bounded by LOG_FLUSH_TIMEOUT_MS (2 s).
        expect((exit?.atMs ?? 0) - t0).to.be.lessThan(2000 + 2000 + 2000);
        expect(rotatedLines(logDir).map((l) => l.msg)).to.include('shutdown: complete');
      } finally {
        if (s && s.proc.exitCode === null && s.proc.signalCode === null) {
          s.proc.kill('SIGKILL');
          await s.exited;
        }
        if (reader !== undefined) closeSync(reader);
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }
});

describe('logging at shutdown', function () {
  this.timeout(30_000);

  it('writes the last lines ("shutdown: complete") to the log file before the process exits', async () => {
    const logDir = mkdtempSync(join(tmpdir(), 'shutdown-logs-'));
    try {
      const s = start({ LOG_DIR: logDir, LOG_STDOUT: 'false' }, 'pipe');
      await waitFor(
        'server started',
        () => rotatedLines(logDir).some((l) => l.msg === 'server started'),
        20_000,
      );
      const started = rotatedLines(logDir).find((l) => l.msg === 'server started') as { grpcPort: number };
      // A burst of lines just before the signal, so writes are still pending when shutdown begins.
      await calls(started.grpcPort, 50);
      s.proc.kill('SIGTERM');
      const exit = await s.exited;
      expect(exit.code, s.stderr).to.equal(0);
      const msgs = rotatedLines(logDir).map((l) => l.msg);
      expect(msgs.filter((m) => m === 'Predict')).to.have.length(50);
      expect(msgs.at(-1)).to.equal('shutdown: complete');
    } finally {
      rmSync(logDir, { recursive: true, force: true });
    }
  });
});
