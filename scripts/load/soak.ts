/**
 * `npm run soak`: issue 4's soak. The real stack on loopback (stable server
 * on the older demo version, canary on the newer, Envoy splitting 90/10),
 * driven through Envoy at a share (default 50%) of its max QPS, measured first
 * with a closed loop (or given with --max-qps), for 2 minutes by default. The
 * RSS of both servers and Envoy is sampled from /proc every few seconds.
 *
 * Pass: every process's RSS grows less than 10% after warm-up (the median of
 * the last third of the samples over the median of the first third after
 * warm-up, so that garbage-collection sawtooth is not mistaken for growth;
 * the peak is reported beside it), and no request fails. Exit 0 on pass, 1 on a miss (named), 2 on bad options, 3 when the
 * stack or ghz could not run. Prints a markdown report and writes it to
 * reports/soak-<timestamp>.md. Everything binds 127.0.0.1 and is stopped on
 * the way out, including on failure and Ctrl-C.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { durationOption, intOption, numberOption, parseCommandLine } from '../lib/args.js';
import { startEnvoyFor } from '../lib/bench/envoy.js';
import { describeLoad, ghzPhase, type Progress, summaryLine } from '../lib/bench/measure.js';
import { mib, rssBytes } from '../lib/bench/process-stats.js';
import { benchRepository, Processes, startBenchServer } from '../lib/bench/processes.js';
import { cpuPerCall, type GrowthResult, type Measurement, pct, rssGrowth } from '../lib/bench/verdicts.js';
import { abortOnSignals, optionsOrExit, runIfMain, UsageError } from '../lib/cli.js';
import { DEFAULT_WEIGHTS } from '../lib/envoy/config.js';
import { MODELS_DIR } from '../lib/paths.js';
import { olderAndNewer, versionStamp } from '../lib/versions.js';

const MODEL = 'conversion';

export interface SoakOptions {
  readonly durationMs: number;
  /** Given max QPS; undefined: measure it. */
  readonly maxQps: number | undefined;
  /** Share of max QPS to drive at. */
  readonly share: number;
  readonly sampleIntervalMs: number;
  /** RSS samples before this are ignored; the baseline is the first one after it. */
  readonly warmupMs: number;
  /** Length of the closed-loop run that measures max QPS. */
  readonly measureMs: number;
  readonly concurrency: number;
  readonly envoyWorkers: number;
  /** Largest acceptable RSS growth after warm-up, 0..1. */
  readonly maxGrowth: number;
  readonly reportsDir: string;
  readonly help: boolean;
}

const SOAK_USAGE = `Usage: npm run soak -- [options]

Runs stable + canary + Envoy (90/10) on loopback, drives Predict through Envoy
at a share of its max QPS, samples the RSS of both servers and Envoy, and
checks that RSS stays flat after warm-up and that no request fails.

  --duration D          soak length (default 2m)
  --max-qps N           max QPS through Envoy; default: measured first (closed loop)
  --share X             share of max QPS to drive at, 0..1 (default 0.5)
  --measure D           length of the max-QPS measurement (default 10s)
  --warmup D            RSS samples before this are not judged (default 30s)
  --sample-interval D   RSS sampling period (default 5s)
  --concurrency C       ghz workers (default 50)
  --envoy-workers N     Envoy --concurrency (default 1)
  --max-growth X        largest acceptable RSS growth after warm-up (default 0.1)
  --reports DIR         where soak-<timestamp>.md goes (default reports)
  -h, --help            this text

Exit status: 0 pass, 1 a target missed (named), 2 bad options, 3 could not run.`;

export function parseSoakArgs(argv: readonly string[], cwd = process.cwd()): SoakOptions {
  const { values: v } = parseCommandLine(argv, {
    duration: { type: 'string' },
    'max-qps': { type: 'string' },
    share: { type: 'string' },
    measure: { type: 'string' },
    warmup: { type: 'string' },
    'sample-interval': { type: 'string' },
    concurrency: { type: 'string' },
    'envoy-workers': { type: 'string' },
    'max-growth': { type: 'string' },
    reports: { type: 'string' },
  });
  const durationMs = durationOption(v.duration, '--duration', 5000, 3_600_000) ?? 120_000;
  const warmupMs = durationOption(v.warmup, '--warmup', 0, 3_600_000) ?? 30_000;
  if (warmupMs >= durationMs) throw new UsageError('--warmup must be shorter than --duration.');
  return Object.freeze({
    durationMs,
    maxQps: numberOption(v['max-qps'], '--max-qps', 1, 1_000_000),
    share: numberOption(v.share, '--share', 0.01, 1) ?? 0.5,
    sampleIntervalMs: durationOption(v['sample-interval'], '--sample-interval', 500, 600_000) ?? 5000,
    warmupMs,
    measureMs: durationOption(v.measure, '--measure', 1000, 600_000) ?? 10_000,
    concurrency: intOption(v.concurrency, '--concurrency', 1, 2000) ?? 50,
    envoyWorkers: intOption(v['envoy-workers'], '--envoy-workers', 1, 64) ?? 1,
    maxGrowth: numberOption(v['max-growth'], '--max-growth', 0, 10) ?? 0.1,
    reportsDir: resolve(cwd, v.reports ?? 'reports'),
    help: v.help === true,
  });
}

/** RSS samples of one process over the soak. */
interface Series {
  readonly name: string;
  readonly pid: number;
  readonly samples: { atMs: number; rss: number }[];
}

export interface SoakVerdict {
  readonly name: string;
  readonly ok: boolean;
  readonly detail: string;
}

/** The soak's verdicts: RSS growth per process and failed requests. */
export function soakVerdicts(
  growth: readonly { name: string; g: GrowthResult | undefined }[],
  run: Pick<Measurement, 'count' | 'errorCount' | 'errors'>,
  maxGrowth: number,
): SoakVerdict[] {
  const out: SoakVerdict[] = growth.map(({ name, g }) =>
    g === undefined
      ? { name: `${name} RSS`, ok: false, detail: 'no sample after warm-up' }
      : {
          name: `${name} RSS`,
          ok: g.growth < maxGrowth,
          detail:
            `median ${mib(g.baseline)} in the first third after warm-up → ${mib(g.last)} in the last: ${pct(g.growth)} ` +
            `(peak ${mib(g.peak)}, ${pct(g.peakGrowth)}; ${g.samples} samples); limit < ${pct(maxGrowth, 0)}`,
        },
  );
  out.push({
    name: 'failed requests',
    ok: run.count > 0 && run.errorCount === 0,
    detail:
      run.count === 0
        ? 'no request completed'
        : `${run.errorCount} of ${run.count}${run.errors.length ? ` (${run.errors.join('; ')})` : ''}; limit 0`,
  });
  return out;
}

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'soak', usage: SOAK_USAGE, parse: parseSoakArgs }, argv);
  if (typeof opts === 'number') return opts;
  const started = new Date();
  const loadAtStart = loadavg();
  const workDir = mkdtempSync(join(tmpdir(), 'soak-'));
  const procs = new Processes();
  const progress: Progress = (line) => process.stderr.write(`${line}\n`);
  const signal = abortOnSignals((sig) =>
    progress(`\n[soak] ${sig}: stopping the load and every process started here`),
  );
  const command = `npm run soak${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const { older, newer } = olderAndNewer(MODELS_DIR, MODEL, false);
  const repo = benchRepository(workDir, [older, newer], MODEL);
  const timer: { id?: NodeJS.Timeout } = {};
  try {
    progress(`[soak] starting stable (${MODEL}@${older}), canary (${MODEL}@${newer}) and Envoy (90/10)`);
    const [stable, canary] = await Promise.all([
      startBenchServer(procs, {
        name: 'stable',
        workDir,
        env: { ROLE: 'stable', MODEL_ROOT: repo, MODEL_VERSION_POLICY: `${MODEL}=${older}` },
      }),
      startBenchServer(procs, {
        name: 'canary',
        workDir,
        env: { ROLE: 'canary', MODEL_ROOT: repo, MODEL_VERSION_POLICY: `${MODEL}=${newer}` },
      }),
    ]);
    // Routes at DEFAULT_WEIGHTS (startEnvoyFor's default), as the report says.
    const envoy = await startEnvoyFor(procs, {
      workDir,
      stable: [stable],
      canary,
      concurrency: opts.envoyWorkers,
    });
    const watch = [
      { name: 'stable server', pid: stable.pid },
      { name: 'canary server', pid: canary.pid },
      { name: 'Envoy', pid: envoy.pid },
    ];
    const phase = (target: string, load: Parameters<typeof ghzPhase>[0]['load']) =>
      ghzPhase({
        target,
        host: envoy.host,
        model: MODEL,
        load,
        workDir,
        progress,
        watch,
        signal,
      });

    let maxQps = opts.maxQps;
    let measured: Measurement | undefined;
    if (maxQps === undefined) {
      progress(
        `[soak] measuring max QPS through Envoy: closed loop c=${opts.concurrency}, ${opts.measureMs / 1000} s`,
      );
      await phase('warm-up', { concurrency: opts.concurrency, durationMs: 3000 });
      measured = await phase('max', { concurrency: opts.concurrency, durationMs: opts.measureMs });
      maxQps = measured.okRps;
    }
    const rps = Math.max(1, Math.round(opts.share * maxQps));
    progress(
      `[soak] ${opts.durationMs / 1000} s at ${rps}/s (${Math.round(opts.share * 100)}% of ${Math.round(maxQps)}/s)`,
    );

    const series: Series[] = watch.map((w) => ({ ...w, samples: [] }));
    const t0 = Date.now();
    const sample = () => {
      const atMs = Date.now() - t0;
      const parts: string[] = [];
      for (const s of series) {
        const rss = rssBytes(s.pid);
        if (rss !== undefined) s.samples.push({ atMs, rss });
        parts.push(`${s.name} ${mib(rss)}`);
      }
      progress(
        `  [rss] t=${(atMs / 1000).toFixed(0)}s ${parts.join(', ')} (load ${(loadavg()[0] ?? 0).toFixed(2)})`,
      );
    };
    sample();
    timer.id = setInterval(sample, opts.sampleIntervalMs);
    const run = await phase('soak', { concurrency: opts.concurrency, rps, durationMs: opts.durationMs });
    clearInterval(timer.id);
    sample();

    const growth = series.map((s) => ({ name: s.name, g: rssGrowth(s.samples, opts.warmupMs) }));
    const verdicts = soakVerdicts(growth, run, opts.maxGrowth);
    const ok = verdicts.every((v) => v.ok);
    const f2 = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(2));
    const report = [
      `# Soak ${started.toISOString()}`,
      '',
      `Command: \`${command}\`. ${cpus().length} CPUs, shared with other users; load average at start ` +
        `${loadAtStart.map((l) => l.toFixed(2)).join(' ')}, at end ${loadavg()
          .map((l) => l.toFixed(2))
          .join(' ')}.`,
      `Stack: Envoy (${opts.envoyWorkers} worker) → stable ${MODEL}@${older} + canary ${MODEL}@${newer}, ` +
        `${DEFAULT_WEIGHTS.stable}/${DEFAULT_WEIGHTS.canary}; LOG_LEVEL=info to rotated files. Payload: the seed record, 1000 users.`,
      '',
      measured
        ? `Max QPS through Envoy (closed loop c=${opts.concurrency}, ${opts.measureMs / 1000} s): ${summaryLine(measured)}.`
        : `Max QPS given: ${maxQps}.`,
      '',
      `Soak: ${describeLoad({ concurrency: opts.concurrency, rps, durationMs: opts.durationMs })} for ${opts.durationMs / 1000} s: ` +
        `achieved ${Math.round(run.okRps)}/s, p50 ${f2(run.p50Ms)} ms, p90 ${f2(run.p90Ms)} ms, p99 ${f2(run.p99Ms)} ms, ` +
        `max ${f2(run.maxMs)} ms, ${run.okCount} ok, ${run.errorCount} failed, load ${run.load1[0].toFixed(2)}→${run.load1[1].toFixed(2)}.`,
      '',
      `| process | RSS at start | after ${opts.warmupMs / 1000} s warm-up (median, first third) | end (median, last third) | growth | peak after warm-up | peak growth | CPU µs per call |`,
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...series.map((s, i) => {
        const g = growth[i]?.g;
        const cpu = cpuPerCall(run, cpus().length).find((c) => c.process === s.name);
        return (
          `| ${s.name} | ${mib(s.samples[0]?.rss)} | ${mib(g?.baseline)} | ${mib(g?.last)} | ${pct(g?.growth)} | ` +
          `${mib(g?.peak)} | ${pct(g?.peakGrowth)} | ${cpu ? cpu.usPerCall.toFixed(0) : 'n/a'} |`
        );
      }),
      '',
      '### Verdicts',
      '',
      ...verdicts.map((v) => `- ${v.ok ? 'met' : '**MISSED**'}: ${v.name} — ${v.detail}`),
      '',
      '### RSS samples (MiB)',
      '',
      `| t s | ${series.map((s) => s.name).join(' | ')} |`,
      `| ---: | ${series.map(() => '---:').join(' | ')} |`,
      ...(series[0]?.samples ?? []).map((s0, i) => {
        const cells = series.map((s) => {
          const x = s.samples[i];
          return x ? (x.rss / 2 ** 20).toFixed(1) : '';
        });
        return `| ${(s0.atMs / 1000).toFixed(0)} | ${cells.join(' | ')} |`;
      }),
    ].join('\n');
    mkdirSync(opts.reportsDir, { recursive: true });
    const file = join(opts.reportsDir, `soak-${versionStamp(started)}.md`);
    writeFileSync(file, `${report}\n`);
    process.stdout.write(`\n${report}\n\nReport: ${file}\n`);
    if (signal.aborted) return 1;
    if (!ok) {
      process.stdout.write(
        `\nSoak missed: ${verdicts
          .filter((v) => !v.ok)
          .map((v) => v.name)
          .join(', ')}\n`,
      );
      return 1;
    }
    process.stdout.write('\nSoak passed.\n');
    return 0;
  } catch (err) {
    if (signal.aborted) return 1;
    process.stderr.write(`soak: ${(err as Error).message}\n`);
    return 3;
  } finally {
    clearInterval(timer.id);
    await procs.stopAll();
    rmSync(workDir, { recursive: true, force: true });
  }
}

runIfMain(import.meta.url, 'soak', main);
