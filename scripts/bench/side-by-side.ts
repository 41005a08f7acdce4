/**
 * `npm run bench`: where this service stands, side by side, in one run on this
 * machine (issue 4). Every target gets the seed's sample record, the same
 * model weights (the newest demo LR version, pinned) and a closed-loop load
 * generator of the same kind:
 *
 *   direct  this server, one process                                                   — ghz
 *           (and, not judged, the same server through the Open Inference Protocol's ModelInfer)
 *   envoy   Envoy → stable + canary servers, 90/10, as the real stack                  — ghz
 *   flask   the seed's way: Flask's threaded dev server, sklearn in Python, JSON       — hey
 *   floor   bare grpc-js + the generated stubs, constant answer (scripts/bench/floor-server.ts) — ghz
 *
 * For each: max throughput (closed loop) and p50/p99 at a fixed rate; then the
 * ratios (ours/Flask, ours/floor, Envoy's added p99), Envoy at the issue's fixed
 * 5000 QPS, verdicts against the targets, RSS, and the CPU each process spent
 * per call. One more row, not judged, runs the direct server with
 * micro-batching on (`--batching`), to show how much of the gap it closes.
 * Optional sections: logging on/off, micro-batching off/on, scaling 1 → 2
 * servers behind Envoy, and issue 5's per-family RT through Envoy.
 *
 * The sections live in scripts/lib/bench/ (side-by-side, variants, scaling,
 * family-rt); this command runs the chosen ones in order and writes the report.
 * The machine is shared, so every comparison of throughput starts all its
 * targets first and runs them in interleaved rounds (`--rounds`); load
 * averages are printed with every figure.
 *
 * Everything binds 127.0.0.1; every load is bounded by its duration; every
 * process started here is stopped on the way out, including on failure and
 * Ctrl-C. The report goes to stdout and reports/bench-<timestamp>.md.
 * Options: `npm run bench -- --help`.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { envoyTuning } from '../lib/bench/envoy-tuning.js';
import { familyRt } from '../lib/bench/family-rt.js';
import type { Progress } from '../lib/bench/measure.js';
import { BENCH_USAGE, parseBenchArgs, type Section } from '../lib/bench/options.js';
import { Processes } from '../lib/bench/processes.js';
import { scaling } from '../lib/bench/scaling.js';
import { sideBySide, targetsFor } from '../lib/bench/side-by-side.js';
import { type BenchContext, CORES, MODEL } from '../lib/bench/targets.js';
import { batching, logging } from '../lib/bench/variants.js';
import { verdicts } from '../lib/bench/verdicts.js';
import { abortOnSignals, optionsOrExit, runIfMain } from '../lib/cli.js';
import { MODELS_DIR } from '../lib/paths.js';
import { newestVersion, versionStamp } from '../lib/versions.js';

const loadText = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'bench', usage: BENCH_USAGE, parse: parseBenchArgs }, argv);
  if (typeof opts === 'number') return opts;
  const started = new Date();
  const workDir = mkdtempSync(join(tmpdir(), 'bench-'));
  const procs = new Processes();
  const progress: Progress = (line) => process.stderr.write(`${line}\n`);
  const signal = abortOnSignals((sig) => {
    progress(`\n[bench] ${sig}: stopping the load and every process started here (again to quit at once)`);
    void procs.stopAll();
  });

  const version = newestVersion(join(MODELS_DIR, MODEL));
  const ctx: BenchContext = { opts, procs, workDir, progress, signal, version };
  const command = `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const header = [
    `# Benchmark ${started.toISOString()}`,
    '',
    `Command: \`${command}\`. Machine: ${CORES} CPUs (${cpus()[0]?.model ?? '?'}), ` +
      `${(totalmem() / 2 ** 30).toFixed(0)} GiB, shared with other users; load average at start ${loadText()}. ` +
      `Node ${process.version}.`,
    `Model: ${MODEL}@${version} (LR) for every LR target. Payload: the seed's sample record; ` +
      'gRPC calls cycle through 1000 users (userId = x-user-id), HTTP sends the record as JSON. ' +
      `Phases of ${opts.durationMs / 1000} s per target (max throughput: ${opts.rounds} interleaved rounds) ` +
      `after ${opts.warmupMs / 1000} s of warm-up; load generators, servers and Envoy share the same cores.`,
  ].join('\n');
  progress(
    `[bench] ${started.toISOString()} sections: ${[...opts.sections].join(', ')}; work dir ${workDir}`,
  );

  const parts: string[] = [header];
  let missed = false;
  let failed = false;
  const sections: [Section, (c: BenchContext) => Promise<string>][] = [
    [
      'side',
      async (c) => {
        const side = await sideBySide(c);
        missed = verdicts(side.runs, targetsFor(opts)).some((v) => v.status !== 'met');
        return side.markdown;
      },
    ],
    ['logging', logging],
    ['batching', batching],
    ['scaling', scaling],
    ['envoy', envoyTuning],
    ['families', familyRt],
  ];
  try {
    for (const [name, fn] of sections) {
      if (!opts.sections.has(name)) continue;
      try {
        parts.push(await fn(ctx));
      } catch (err) {
        if (signal.aborted) throw err;
        failed = true;
        parts.push(`## ${name}\n\nFAILED: ${(err as Error).message}`);
        progress(`[bench] ${name} FAILED: ${(err as Error).message}`);
      } finally {
        await procs.stopAll();
      }
    }
  } catch (err) {
    if (!signal.aborted) throw err;
    parts.push('(interrupted)');
  } finally {
    await procs.stopAll();
    rmSync(workDir, { recursive: true, force: true });
  }
  const ended = new Date();
  parts.push(
    `_Run took ${((ended.getTime() - started.getTime()) / 1000).toFixed(0)} s; load average at end ${loadText()}._`,
  );
  const report = `${parts.join('\n\n')}\n`;
  mkdirSync(opts.reportsDir, { recursive: true });
  const file = join(opts.reportsDir, `bench-${versionStamp(started)}.md`);
  writeFileSync(file, report);
  process.stdout.write(`\n${report}\nReport: ${file}\n`);
  if (failed || signal.aborted) return 1;
  return opts.strict && missed ? 1 : 0;
}

runIfMain(import.meta.url, 'bench', main);
