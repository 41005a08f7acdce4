/**
 * `npm run bench`: where this service stands, side by side, in one run on this
 * machine (issue 4). Every target gets the seed's sample record, the same
 * model weights (the newest demo LR version, pinned) and a closed-loop load
 * generator of the same kind:
 *
 *   direct  this server, one process                                                   — ghz
 *   envoy   Envoy → stable + canary servers, 90/10, as the real stack                  — ghz
 *   flask   the seed's way: Flask's threaded dev server, sklearn in Python, JSON       — hey
 *   floor   bare grpc-js + the generated stubs, constant answer (scripts/bench/floor-server.ts) — ghz
 *
 * For each: max throughput (closed loop) and p50/p99 at a fixed rate; then the
 * ratios (ours/Flask, ours/floor, Envoy's added p99), Envoy at the issue's fixed
 * 5000 QPS, verdicts against the targets, RSS, and the CPU each process spent
 * per call. One more row, not judged, runs the direct server with
 * micro-batching on (`--batching`), to show how much of the gap it closes. Optional sections: logging on/off, micro-batching off/on, scaling
 * 1 → 2 servers behind Envoy, and issue 5's per-family RT through Envoy.
 *
 * The machine is shared, so every comparison of throughput starts all its
 * targets first and runs them in interleaved rounds (`--rounds`), rotating the
 * order, instead of one target after the other: load from elsewhere then falls
 * on all of them alike. Load averages are printed with every figure.
 *
 * Everything binds 127.0.0.1; every load is bounded by its duration; every
 * process started here is stopped on the way out, including on failure and
 * Ctrl-C. The report goes to stdout and reports/bench-<timestamp>.md.
 * Options: `npm run bench -- --help`.
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import {
  GENERATOR,
  ghzPhase,
  heyPhase,
  type Load,
  type Progress,
  type Watched,
} from '../lib/bench/measure.js';
import { BENCH_USAGE, type BenchOptions, parseBenchArgs } from '../lib/bench/options.js';
import {
  type BenchEnvoy,
  type BenchServer,
  Processes,
  rssBytes,
  startEnvoyFor,
  startFlask,
  startFloor,
  startServer,
} from '../lib/bench/processes.js';
import { mib, scrapeServer } from '../lib/bench/scrape.js';
import {
  change,
  combineRounds,
  cpuPerCall,
  DEFAULT_TARGETS,
  type Measurement,
  measurementTable,
  pct,
  ratios,
  type SideBySide,
  sideBySideTable,
  type Targets,
  verdictLines,
  verdicts,
} from '../lib/bench/verdicts.js';
import { abortOnSignals, optionsOrExit, runIfMain } from '../lib/cli.js';
import { DEFAULT_WEIGHTS } from '../lib/envoy/config.js';
import { PROJECT_ROOT } from '../lib/paths.js';
import { newestVersion, versionStamp } from '../lib/versions.js';

const MODEL = 'conversion';
const CORES = cpus().length;

interface Context {
  readonly opts: BenchOptions;
  readonly procs: Processes;
  readonly workDir: string;
  readonly progress: Progress;
  readonly signal: AbortSignal;
  /** The demo version every LR target serves. */
  readonly version: string;
}

/** Issue 4's targets, with the Envoy rate as given. */
function targetsFor(opts: BenchOptions): Targets {
  return { ...DEFAULT_TARGETS, envoyRps: opts.envoyRate };
}

/** Something to put load on. */
interface Target {
  readonly name: string;
  /** Processes whose CPU time the phases record. */
  readonly watch: readonly Watched[];
  run(load: Load, label?: string): Promise<Measurement>;
}

function grpcTarget(
  ctx: Context,
  name: string,
  host: string,
  watch: readonly Watched[],
  model = MODEL,
): Target {
  return {
    name,
    watch,
    run: (load, label = name) =>
      ghzPhase({
        target: label,
        host,
        model,
        load,
        workDir: ctx.workDir,
        progress: ctx.progress,
        watch,
        signal: ctx.signal,
      }),
  };
}

function httpTarget(ctx: Context, name: string, url: string, watch: readonly Watched[]): Target {
  return {
    name,
    watch,
    run: (load, label = name) =>
      heyPhase({ target: label, url, load, progress: ctx.progress, watch, signal: ctx.signal }),
  };
}

const closed = (concurrency: number, durationMs: number): Load => ({ concurrency, durationMs });
const paced = (ctx: Context, rps: number): Load => ({
  concurrency: ctx.opts.concurrency,
  rps,
  durationMs: ctx.opts.durationMs,
});

/** Unmeasured load on each target, so JIT, connections and caches are warm. */
async function warmUp(
  ctx: Context,
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
async function interleaved(
  ctx: Context,
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
function pinned(ctx: Context, extra: Record<string, string> = {}): Record<string, string> {
  return { MODEL_VERSION_POLICY: `${MODEL}=${ctx.version}`, ...extra };
}

const watchServer = (s: BenchServer, name = s.name): Watched => ({ name, pid: s.pid });

/**
 * Envoy in front of one stable and one canary server at the real stack's
 * weights (90/10), and the processes a run through it should watch.
 */
async function envoyStack(
  ctx: Context,
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

const f2 = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(2));

/** Where the cores went during each max-throughput run: CPU µs per successful call. */
function cpuTable(rows: readonly { name: string; m: Measurement | undefined }[]): string {
  const lines = [
    `| run | process | CPU µs per call | share of ${CORES} cores |`,
    '| --- | --- | ---: | ---: |',
  ];
  for (const { name, m } of rows) {
    if (!m) continue;
    for (const c of cpuPerCall(m, CORES)) {
      lines.push(
        `| ${name} | ${c.process} | ${c.usPerCall.toFixed(0)} | ${(c.coreShare * 100).toFixed(0)}% |`,
      );
    }
  }
  return lines.join('\n');
}

function ratioOf(a: Measurement | undefined, b: Measurement | undefined): number | undefined {
  return a && b && b.okRps > 0 ? a.okRps / b.okRps : undefined;
}

const fmtRatio = (x: number | undefined, digits: number) =>
  x === undefined ? 'n/a' : `${x.toFixed(digits)}×`;

function roundsCell(m: Measurement | undefined): string {
  return m?.rounds ? m.rounds.map((r) => Math.round(r)).join(' / ') : 'n/a';
}

// ---------------------------------------------------------------- side by side

interface SideResult {
  readonly markdown: string;
  readonly runs: SideBySide;
}

async function sideBySide(ctx: Context): Promise<SideResult> {
  const { opts, procs, workDir, progress } = ctx;
  const versionDir = opts.flaskVersion ?? join(PROJECT_ROOT, 'models', MODEL, ctx.version);
  progress(
    `[bench] starting every target: floor, direct, stable + canary + Envoy (${opts.envoyWorkers} worker), ` +
      `and Flask (rebuilding the sklearn estimator of ${versionDir}, checked against golden.json)`,
  );
  const [floor, direct, batched, stable, canary, flask] = await Promise.all([
    startFloor(procs, workDir),
    startServer(procs, { name: 'direct', workDir, env: pinned(ctx) }),
    // Not judged: the same server with micro-batching on, to show what it closes.
    startServer(procs, {
      name: 'direct-batching',
      workDir,
      env: pinned(ctx, { MODEL_BATCHING: opts.batching }),
    }),
    startServer(procs, { name: 'stable', workDir, env: pinned(ctx, { ROLE: 'stable' }) }),
    startServer(procs, { name: 'canary', workDir, env: pinned(ctx, { ROLE: 'canary' }) }),
    // The baseline may refuse to start (not the same model) or lack its venv: the rest still runs.
    startFlask(procs, { workDir, versionDir }).catch((err: unknown) => err as Error),
  ]);
  if (flask instanceof Error) progress(`[bench] Flask baseline FAILED to start: ${flask.message}`);
  const { envoy, watch } = await envoyStack(ctx, stable, canary);
  const targets = {
    direct: grpcTarget(ctx, 'direct', direct.host, [watchServer(direct, 'server')]),
    batched: grpcTarget(ctx, 'direct+batching', batched.host, [watchServer(batched, 'server')]),
    envoy: grpcTarget(ctx, 'envoy', envoy.host, watch),
    flask:
      flask instanceof Error
        ? undefined
        : httpTarget(ctx, 'flask', `http://127.0.0.1:${flask.port}/v1/test/`, [
            { name: 'Flask', pid: flask.pid },
          ]),
    floor: grpcTarget(ctx, 'floor', `127.0.0.1:${floor.port}`, [{ name: 'floor server', pid: floor.pid }]),
  };
  const order = [targets.direct, targets.batched, targets.envoy, targets.flask, targets.floor].filter(
    (t): t is Target => t !== undefined,
  );

  progress('[bench] warm-up');
  await warmUp(ctx, order);
  progress(`[bench] max throughput: closed loop c=${opts.concurrency}, ${opts.rounds} interleaved rounds`);
  const max = await interleaved(ctx, order);
  progress(`[bench] fixed rate ${opts.rate}/s`);
  const rate = new Map<string, Measurement>();
  for (const t of order) rate.set(t.name, await t.run(paced(ctx, opts.rate)));
  progress(`[bench] Envoy at a fixed ${opts.envoyRate}/s`);
  const high = await targets.envoy.run(paced(ctx, opts.envoyRate));

  const scrape = await scrapeServer(direct.metricsPort);
  const memory = [
    `| this server (direct) after its runs, ${scrape.versions.length} versions loaded: ${scrape.versions.join(', ')} | ${mib(scrape.rssBytes)} | process_resident_memory_bytes |`,
    `| Envoy (${opts.envoyWorkers} worker) | ${mib(rssBytes(envoy.pid))} | /proc VmRSS |`,
    `| floor server (bare grpc-js, no model) | ${mib(rssBytes(floor.pid))} | /proc VmRSS |`,
    flask instanceof Error
      ? '| Flask baseline | n/a (did not start) | |'
      : `| Flask baseline (sklearn, one process) | ${mib(rssBytes(flask.pid))} | /proc VmRSS |`,
  ];
  await procs.stopAll();

  const runs: SideBySide = {
    direct: { max: max.get('direct'), rate: rate.get('direct') },
    envoy: { max: max.get('envoy'), rate: rate.get('envoy'), high },
    flask: { max: max.get('flask'), rate: rate.get('flask') },
    floor: { max: max.get('floor'), rate: rate.get('floor') },
  } as SideBySide;
  const r = ratios(runs);
  const lines = [
    '## Side by side',
    '',
    sideBySideTable([
      { name: 'this server, direct', generator: 'ghz (gRPC)', ...runs.direct },
      {
        name: `(not judged) direct, MODEL_BATCHING=${opts.batching}`,
        generator: 'ghz (gRPC)',
        max: max.get('direct+batching'),
        rate: rate.get('direct+batching'),
      },
      {
        name: `this server via Envoy (${DEFAULT_WEIGHTS.stable}/${DEFAULT_WEIGHTS.canary})`,
        generator: 'ghz (gRPC)',
        ...runs.envoy,
      },
      { name: 'Flask + sklearn (seed)', generator: 'hey (HTTP/1.1 JSON)', ...runs.flask },
      { name: 'floor: bare grpc-js', generator: 'ghz (gRPC)', ...runs.floor },
    ]),
    '',
    `Max throughput per round (ok/s): direct ${roundsCell(runs.direct?.max)}; ` +
      `direct+batching ${roundsCell(max.get('direct+batching'))}; envoy ${roundsCell(runs.envoy?.max)}; ` +
      `flask ${roundsCell(runs.flask?.max)}; floor ${roundsCell(runs.floor?.max)}.`,
    '',
    `Envoy at a fixed ${opts.envoyRate}/s (c=${opts.concurrency}): achieved ${Math.round(high.okRps)}/s, ` +
      `p50 ${f2(high.p50Ms)} ms, p90 ${f2(high.p90Ms)} ms, p99 ${f2(high.p99Ms)} ms, max ${f2(high.maxMs)} ms, ` +
      `errors ${high.errorCount}/${high.count}, load ${high.load1[0].toFixed(2)}→${high.load1[1].toFixed(2)}.`,
    '',
    '| ratio | value |',
    '| --- | ---: |',
    `| ours/Flask throughput (direct max ÷ Flask max) | ${r.oursOverFlask === undefined ? 'n/a' : `${r.oursOverFlask.toFixed(1)}×`} |`,
    `| ours/floor throughput (direct max ÷ floor max) | ${r.oursOverFloor === undefined ? 'n/a' : `${r.oursOverFloor.toFixed(2)}×`} |`,
    `| (not judged) direct with batching ÷ floor | ${fmtRatio(ratioOf(max.get('direct+batching'), runs.floor?.max), 2)} |`,
    `| (not judged) direct with batching ÷ Flask | ${fmtRatio(ratioOf(max.get('direct+batching'), runs.flask?.max), 1)} |`,
    `| Envoy's added p50 at ${opts.rate}/s (Envoy − direct) | ${r.envoyAddedP50Ms === undefined ? 'n/a' : `${f2(r.envoyAddedP50Ms)} ms`} |`,
    `| Envoy's added p99 at ${opts.rate}/s (Envoy − direct) | ${r.envoyAddedP99Ms === undefined ? 'n/a' : `${f2(r.envoyAddedP99Ms)} ms`} |`,
    '',
    '### Verdicts (issue 4 targets)',
    '',
    ...verdictLines(verdicts(runs, targetsFor(opts))),
    '',
    '### Where the cores went (max-throughput runs)',
    '',
    cpuTable([
      { name: 'direct', m: runs.direct?.max },
      { name: 'direct+batching', m: max.get('direct+batching') },
      { name: 'envoy', m: runs.envoy?.max },
      { name: `envoy @${opts.envoyRate}/s`, m: high },
      { name: 'flask', m: runs.flask?.max },
      { name: 'floor', m: runs.floor?.max },
    ]),
    '',
    `"${GENERATOR}" is ghz or hey. Shares are of the whole machine over the run; what is left went to other users of it.`,
    '',
    ...(flask instanceof Error ? [`Flask baseline did not start: ${flask.message}`, ''] : []),
    '### Memory (RSS after the runs)',
    '',
    '| process | RSS | source |',
    '| --- | ---: | --- |',
    ...memory,
  ];
  return { markdown: lines.join('\n'), runs };
}

// ---------------------------------------------------------------- extras

/** Two or more direct servers with different env, compared in interleaved closed-loop rounds. */
async function directVariants(
  ctx: Context,
  title: string,
  variants: readonly { name: string; env: Record<string, string> }[],
  concurrency: number,
): Promise<{ name: string; m: Measurement; meanBatchRows: number | undefined }[]> {
  const { procs, workDir } = ctx;
  try {
    ctx.progress(`[bench] ${title}: starting ${variants.map((v) => v.name).join(', ')}`);
    const servers = await Promise.all(
      variants.map((v, i) => startServer(procs, { name: `variant-${i}`, workDir, env: pinned(ctx, v.env) })),
    );
    const targets = servers.map((s, i) =>
      grpcTarget(ctx, (variants[i] as { name: string }).name, s.host, [watchServer(s, 'server')]),
    );
    await warmUp(ctx, targets, concurrency);
    const before = await Promise.all(servers.map((s) => scrapeServer(s.metricsPort)));
    const results = await interleaved(ctx, targets, concurrency);
    const after = await Promise.all(servers.map((s) => scrapeServer(s.metricsPort)));
    return variants.map((v, i) => {
      const b = before[i];
      const a = after[i];
      // Rows per ONNX Runtime run over the measured rounds only.
      const runs = (a?.runs ?? 0) - (b?.runs ?? 0);
      const rows = (a?.meanBatchRows ?? 0) * (a?.runs ?? 0) - (b?.meanBatchRows ?? 0) * (b?.runs ?? 0);
      return {
        name: v.name,
        m: results.get(v.name) as Measurement,
        meanBatchRows: runs > 0 ? rows / runs : undefined,
      };
    });
  } finally {
    await procs.stopAll();
  }
}

async function logging(ctx: Context): Promise<string> {
  const [on, off] = await directVariants(
    ctx,
    'logging on vs off',
    [
      { name: 'logging on (LOG_LEVEL=info)', env: { LOG_LEVEL: 'info' } },
      { name: 'logging off (LOG_LEVEL=warn)', env: { LOG_LEVEL: 'warn' } },
    ],
    ctx.opts.concurrency,
  );
  if (!on || !off) return '## Logging on vs off\n\nnot measured';
  const cost = -change(off.m.okRps, on.m.okRps);
  return [
    `## Logging on vs off (direct, closed loop c=${ctx.opts.concurrency}, ${ctx.opts.rounds} interleaved rounds)`,
    '',
    'On: one JSON line per prediction (inputs, outputs, latency) at info, to a pino-roll file, as in production. ' +
      'Off: LOG_LEVEL=warn. Metrics stay on in both (their cost is in `npm run bench:breakdown`).',
    '',
    measurementTable([on, off]),
    '',
    `Per round (ok/s): on ${roundsCell(on.m)}; off ${roundsCell(off.m)}.`,
    '',
    cpuTable([
      { name: 'logging on', m: on.m },
      { name: 'logging off', m: off.m },
    ]),
    '',
    `Cost of per-prediction logging: ${pct(cost)} of throughput (target ≤ 10%: ${cost <= 0.1 ? 'met' : '**MISSED**'}).`,
  ].join('\n');
}

async function batching(ctx: Context): Promise<string> {
  const c = ctx.opts.batchConcurrency;
  const results = await directVariants(
    ctx,
    'micro-batching off vs on',
    [
      { name: 'batching off', env: { MODEL_BATCHING: '' } },
      { name: `batching on (${ctx.opts.batching})`, env: { MODEL_BATCHING: ctx.opts.batching } },
    ],
    c,
  );
  const [off, on] = results;
  return [
    `## Micro-batching off vs on (direct, closed loop c=${c}, ${ctx.opts.rounds} interleaved rounds)`,
    '',
    measurementTable(results),
    '',
    '| run | mean rows per ONNX Runtime run | ok/s per round |',
    '| --- | ---: | --- |',
    ...results.map(
      (r) =>
        `| ${r.name} | ${r.meanBatchRows === undefined ? 'n/a' : r.meanBatchRows.toFixed(2)} | ${roundsCell(r.m)} |`,
    ),
    '',
    cpuTable(results.map((r) => ({ name: r.name, m: r.m }))),
    '',
    off && on ? `Throughput change with batching: ${pct(change(off.m.okRps, on.m.okRps))}.` : '',
  ].join('\n');
}

async function scaling(ctx: Context): Promise<string> {
  const { procs, workDir, opts } = ctx;
  try {
    ctx.progress('[bench] scaling: 1 → 2 stable servers behind Envoy (routes 100/0: all traffic to stable)');
    const [s1, s2, canary] = await Promise.all([
      startServer(procs, { name: 'stable-1', workDir, env: pinned(ctx, { ROLE: 'stable' }) }),
      startServer(procs, { name: 'stable-2', workDir, env: pinned(ctx, { ROLE: 'stable' }) }),
      startServer(procs, { name: 'canary', workDir, env: pinned(ctx, { ROLE: 'canary' }) }),
    ]);
    const weights = { stable: 100, canary: 0 };
    const one = await startEnvoyFor(procs, {
      workDir,
      name: 'envoy-1',
      stable: [s1],
      canary,
      weights,
      concurrency: opts.envoyWorkers,
    });
    const two = await startEnvoyFor(procs, {
      workDir,
      name: 'envoy-2',
      stable: [s1, s2],
      canary,
      weights,
      concurrency: opts.envoyWorkers,
    });
    const targets = [
      grpcTarget(ctx, '1 server', one.host, [{ name: 'Envoy', pid: one.pid }, watchServer(s1, 'stable-1')]),
      grpcTarget(ctx, '2 servers', two.host, [
        { name: 'Envoy', pid: two.pid },
        watchServer(s1, 'stable-1'),
        watchServer(s2, 'stable-2'),
      ]),
    ];
    await warmUp(ctx, targets);
    const res = await interleaved(ctx, targets);
    const m1 = res.get('1 server') as Measurement;
    const m2 = res.get('2 servers') as Measurement;
    return [
      `## Scaling: 1 → 2 server processes behind Envoy (${opts.envoyWorkers} Envoy worker, closed loop c=${opts.concurrency}, ${opts.rounds} interleaved rounds)`,
      '',
      'The stable cluster gets a second endpoint (a copy of the rendered one at another port); routes 100/0 so every call goes to stable.',
      '',
      measurementTable([
        { name: 'Envoy → 1 stable server', m: m1 },
        { name: 'Envoy → 2 stable servers', m: m2 },
      ]),
      '',
      `Per round (ok/s): 1 server ${roundsCell(m1)}; 2 servers ${roundsCell(m2)}.`,
      '',
      cpuTable([
        { name: '1 server', m: m1 },
        { name: '2 servers', m: m2 },
      ]),
      '',
      `Scaling 1 → 2: ${(m2.okRps / m1.okRps).toFixed(2)}× throughput.`,
    ].join('\n');
  } finally {
    await procs.stopAll();
  }
}

/** Issue 5's RT table: each family through Envoy at a fixed rate. */
async function families(ctx: Context): Promise<string> {
  const { procs, workDir, opts } = ctx;
  const repo = join(workDir, 'families-repo');
  mkdirSync(repo, { recursive: true });
  cpSync(join(PROJECT_ROOT, 'models', MODEL), join(repo, MODEL), { recursive: true });
  const fixtures = join(PROJECT_ROOT, 'test', 'fixtures', 'models');
  const list = [
    { family: 'LR', model: MODEL, flaskMs: 10 },
    { family: 'GBDT', model: 'conversion-gbdt', flaskMs: 20 },
    { family: 'MLP', model: 'conversion-mlp', flaskMs: 70 },
  ];
  for (const f of list.slice(1)) cpSync(join(fixtures, f.model), join(repo, f.model), { recursive: true });
  const rows: string[] = [];
  const ms: { name: string; m: Measurement }[] = [];
  try {
    ctx.progress(
      `[bench] families: Envoy → stable + canary serving LR, GBDT and MLP, ${opts.familiesRate}/s each`,
    );
    const env = (role: string) => ({ ROLE: role, MODEL_ROOT: repo });
    const [stable, canary] = await Promise.all([
      startServer(procs, { name: 'stable', workDir, env: env('stable') }),
      startServer(procs, { name: 'canary', workDir, env: env('canary') }),
    ]);
    const { envoy, watch } = await envoyStack(ctx, stable, canary);
    for (const f of list) {
      const version = newestVersion(join(repo, f.model));
      const t = grpcTarget(ctx, f.family, envoy.host, watch, f.model);
      await warmUp(ctx, [t]);
      const m = await t.run(paced(ctx, opts.familiesRate));
      ms.push({ name: `${f.family} (${f.model}@${version})`, m });
      const p99 = m.p99Ms;
      rows.push(
        `| ${f.family} | ${f.model}@${version} | ${Math.round(m.okRps)} | ${f2(m.p50Ms)} | ${f2(p99)} | ${m.errorCount} | < ${f.flaskMs} | ` +
          `${p99 !== undefined && p99 < f.flaskMs ? 'yes' : 'no'} | ${p99 !== undefined && p99 <= 5 ? 'met' : '**MISSED**'} | ` +
          `${m.load1[0].toFixed(2)}→${m.load1[1].toFixed(2)} |`,
      );
    }
  } finally {
    await procs.stopAll();
  }
  return [
    `## Serving all three families: end-to-end RT through Envoy at ${opts.familiesRate}/s (issue 5)`,
    '',
    `Envoy (${opts.envoyWorkers} worker) → stable + canary (${DEFAULT_WEIGHTS.stable}/${DEFAULT_WEIGHTS.canary}), both serving every family; ghz, c=${opts.concurrency}, ${opts.durationMs / 1000} s per family.`,
    '',
    "| family | model@version | ok/s | p50 ms | p99 ms | errors | notes' Flask RT ms | p99 beats it | p99 ≤ 5 ms | load avg 1m |",
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |',
    ...rows,
    '',
    measurementTable(ms),
    '',
    cpuTable(ms),
  ].join('\n');
}

// ---------------------------------------------------------------- main

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'bench', usage: BENCH_USAGE, parse: parseBenchArgs }, argv);
  if (typeof opts === 'number') return opts;
  const started = new Date();
  const stamp = versionStamp(started);
  const workDir = mkdtempSync(join(tmpdir(), 'bench-'));
  const procs = new Processes();
  const progress: Progress = (line) => process.stderr.write(`${line}\n`);
  const signal = abortOnSignals((sig) => {
    progress(`\n[bench] ${sig}: stopping the load and every process started here (again to quit at once)`);
    void procs.stopAll();
  });

  const version = newestVersion(join(PROJECT_ROOT, 'models', MODEL));
  const ctx: Context = { opts, procs, workDir, progress, signal, version };
  const command = `npm run bench${argv.length ? ` -- ${argv.join(' ')}` : ''}`;
  const header = [
    `# Benchmark ${started.toISOString()}`,
    '',
    `Command: \`${command}\`. Machine: ${CORES} CPUs (${cpus()[0]?.model ?? '?'}), ` +
      `${(totalmem() / 2 ** 30).toFixed(0)} GiB, shared with other users; load average at start ${loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}. Node ${process.version}.`,
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
  const sections: [string, (c: Context) => Promise<string>][] = [
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
    ['families', families],
  ];
  try {
    for (const [name, fn] of sections) {
      if (!opts.sections.has(name as never)) continue;
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
    `_Run took ${((ended.getTime() - started.getTime()) / 1000).toFixed(0)} s; load average at end ${loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}._`,
  );
  const report = `${parts.join('\n\n')}\n`;
  mkdirSync(opts.reportsDir, { recursive: true });
  const file = join(opts.reportsDir, `bench-${stamp}.md`);
  writeFileSync(file, report);
  process.stdout.write(`\n${report}\nReport: ${file}\n`);
  if (failed || signal.aborted) return 1;
  return opts.strict && missed ? 1 : 0;
}

runIfMain(import.meta.url, 'bench', main);
