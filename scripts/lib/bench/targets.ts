/**
 * What `npm run bench` puts load on, and how: a target is a gRPC host (ghz,
 * Predict or ModelInfer) or an HTTP URL (hey) with the processes whose CPU a
 * phase records; phases are closed loops or paced, after a warm-up, and
 * throughput comparisons run in interleaved rounds, rotating the order, so
 * that load from elsewhere on a shared machine falls on every target alike.
 */
import { cpus } from 'node:os';
import { DEFAULT_WEIGHTS } from '../envoy/config.js';
import { type BenchEnvoy, startEnvoyFor } from './envoy.js';
import { type Encoding, ghzPhase, heyPhase, type Load, type Progress, type Watched } from './measure.js';
import type { BenchOptions } from './options.js';
import type { BenchServer, Processes } from './processes.js';
import { benchRepository } from './processes.js';
import { combineRounds, type Measurement } from './verdicts.js';

/** The model every LR target serves. */
export const MODEL = 'conversion';
/** The machine's cores, for the shares in CPU tables. */
export const CORES = cpus().length;

/** What running phases on targets needs: the load options, ghz's files, progress and the abort signal. */
export interface PhaseContext {
  readonly opts: Pick<BenchOptions, 'durationMs' | 'rounds' | 'warmupMs' | 'concurrency'>;
  readonly workDir: string;
  readonly progress: Progress;
  readonly signal: AbortSignal;
}

/** What every section of a bench run shares. */
export interface BenchContext extends PhaseContext {
  readonly opts: BenchOptions;
  readonly procs: Processes;
  /** The demo version every LR target serves. */
  readonly version: string;
}

/** Something to put load on. */
export interface Target {
  readonly name: string;
  /** Processes whose CPU time the phases record. */
  readonly watch: readonly Watched[];
  run(load: Load, label?: string): Promise<Measurement>;
}

/**
 * A gRPC target driven by ghz: Predict for `model`, or with `oip` the Open
 * Inference Protocol's ModelInfer, its tensors encoded as `oip`.
 */
export function grpcTarget(
  ctx: PhaseContext,
  name: string,
  host: string,
  watch: readonly Watched[],
  model = MODEL,
  oip?: Encoding,
): Target {
  return {
    name,
    watch,
    run: (load, label = name) =>
      ghzPhase({
        target: label,
        host,
        model,
        ...(oip ? { oip } : {}),
        load,
        workDir: ctx.workDir,
        progress: ctx.progress,
        watch,
        signal: ctx.signal,
      }),
  };
}

export function httpTarget(ctx: PhaseContext, name: string, url: string, watch: readonly Watched[]): Target {
  return {
    name,
    watch,
    run: (load, label = name) =>
      heyPhase({ target: label, url, load, progress: ctx.progress, watch, signal: ctx.signal }),
  };
}

/** A closed loop of `concurrency` workers for `durationMs`. */
export const closed = (concurrency: number, durationMs: number): Load => ({ concurrency, durationMs });

/** `rps` calls per second with the run's concurrency and duration. */
export const paced = (ctx: PhaseContext, rps: number): Load => ({
  concurrency: ctx.opts.concurrency,
  rps,
  durationMs: ctx.opts.durationMs,
});

/** Unmeasured load on each target, so JIT, connections and caches are warm. */
export async function warmUp(
  ctx: PhaseContext,
  targets: readonly Target[],
  concurrency = ctx.opts.concurrency,
): Promise<void> {
  if (ctx.opts.warmupMs <= 0) return;
  for (const t of targets) await t.run(closed(concurrency, ctx.opts.warmupMs), `${t.name} warm-up`);
}

/**
 * The closed-loop throughput of every target: `opts.rounds` rounds of
 * duration/rounds each, round r starting at target r (rotation), combined
 * per target.
 */
export async function interleaved(
  ctx: PhaseContext,
  targets: readonly Target[],
  concurrency = ctx.opts.concurrency,
): Promise<Map<string, Measurement>> {
  const { rounds, durationMs } = ctx.opts;
  const per = new Map<string, Measurement[]>(targets.map((t) => [t.name, []]));
  for (let r = 0; r < rounds; r++) {
    ctx.progress(`[bench] round ${r + 1}/${rounds}`);
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(r + i) % targets.length] as Target;
      per.get(t.name)?.push(await t.run(closed(concurrency, Math.round(durationMs / rounds))));
    }
  }
  return new Map([...per].map(([name, ms]) => [name, combineRounds(ms)]));
}

/** Env pinning the demo version, so direct, Envoy's servers and Flask hold the same weights. */
export function pinned(ctx: BenchContext, extra: Record<string, string> = {}): Record<string, string> {
  return {
    MODEL_ROOT: benchRepository(ctx.workDir, [ctx.version]),
    MODEL_VERSION_POLICY: `${MODEL}=${ctx.version}`,
    ...extra,
  };
}

export const watchServer = (s: BenchServer, name = s.name): Watched => ({ name, pid: s.pid });

/**
 * Envoy in front of one stable and one canary server at the real stack's
 * weights (90/10), and the processes a run through it should watch.
 */
export async function envoyStack(
  ctx: BenchContext,
  stable: BenchServer,
  canary: BenchServer,
): Promise<{ envoy: BenchEnvoy; watch: Watched[] }> {
  const envoy = await startEnvoyFor(ctx.procs, {
    workDir: ctx.workDir,
    stable: [stable],
    canary,
    concurrency: ctx.opts.envoyWorkers,
  });
  const watch = [
    { name: 'Envoy', pid: envoy.pid },
    watchServer(stable, 'stable server'),
    watchServer(canary, 'canary server'),
  ];
  return { envoy, watch };
}

/** The split the real stack starts with, as the report names it: `90/10`. */
export const DEFAULT_SPLIT = `${DEFAULT_WEIGHTS.stable}/${DEFAULT_WEIGHTS.canary}`;
