/**
 * The side-by-side section of `npm run bench`: this server direct, the same
 * server through the Open Inference Protocol's ModelInfer in both encodings
 * (not judged: its cost per call beside Predict's), the same server with
 * micro-batching on (not judged), Envoy in front of a stable and
 * a canary server (90/10), the seed's Flask stack and the grpc-js floor, all
 * started first and then measured in interleaved rounds (max throughput), at
 * a fixed rate, and Envoy at the issue's high rate; then the ratios, the
 * verdicts against issue 4's targets, the CPU per call and the memory.
 */
import { join } from 'node:path';
import { MODELS_DIR } from '../paths.js';
import { startFlask, startFloor } from './baselines.js';
import { h2loadInstalled } from './h2load.js';
import { GENERATOR, h2loadPhase } from './measure.js';
import { startPeers } from './peers/lineup.js';
import { peersSection } from './peers/peer-table.js';
import { mib, rssBytes } from './process-stats.js';
import { startBenchServer } from './processes.js';
import { scrapeServer } from './scrape.js';
import { cpuTable, f2, roundsCell, sideBySideTable } from './tables.js';
import {
  type BenchContext,
  CORES,
  DEFAULT_SPLIT,
  envoyStack,
  grpcTarget,
  httpTarget,
  interleaved,
  MODEL,
  paced,
  pinned,
  type Target,
  warmUp,
  watchServer,
} from './targets.js';
import {
  cpuPerCall,
  DEFAULT_TARGETS,
  type Measurement,
  ratios,
  type SideBySide,
  type Targets,
  verdictLines,
  verdicts,
} from './verdicts.js';

/** Issue 4's targets, with the Envoy rate as given. */
export function targetsFor(opts: BenchContext['opts']): Targets {
  return { ...DEFAULT_TARGETS, envoyRps: opts.envoyRate };
}

function ratioOf(a: Measurement | undefined, b: Measurement | undefined): number | undefined {
  return a && b && b.okRps > 0 ? a.okRps / b.okRps : undefined;
}

/** One process's CPU per call in run `a` over run `b`. */
function cpuRatio(
  a: Measurement | undefined,
  b: Measurement | undefined,
  process: string,
): number | undefined {
  const of = (m: Measurement | undefined) =>
    m ? cpuPerCall(m, CORES).find((c) => c.process === process)?.usPerCall : undefined;
  const x = of(a);
  const y = of(b);
  return x !== undefined && y !== undefined && y > 0 ? x / y : undefined;
}

const fmtRatio = (x: number | undefined, digits: number) =>
  x === undefined ? 'n/a' : `${x.toFixed(digits)}×`;

/** h2load's connections and streams per connection for the Envoy rate run (100 calls in flight at most, as ghz's c=50 × 2). */
const H2LOAD_SHAPE = { clients: 4, streams: 25 } as const;

export interface SideResult {
  readonly markdown: string;
  readonly runs: SideBySide;
}

export async function sideBySide(ctx: BenchContext): Promise<SideResult> {
  const { opts, procs, workDir, progress } = ctx;
  const versionDir = opts.flaskVersion ?? join(MODELS_DIR, MODEL, ctx.version);
  progress(
    `[bench] starting every target: floor, direct, stable + canary + Envoy (${opts.envoyWorkers} worker), ` +
      `and Flask (rebuilding the sklearn estimator of ${versionDir}, checked against golden.json)`,
  );
  const [floor, direct, batched, stable, canary, flask] = await Promise.all([
    startFloor(procs, workDir),
    startBenchServer(procs, { name: 'direct', workDir, env: pinned(ctx) }),
    // Not judged: the same server with micro-batching on, to show what it closes.
    startBenchServer(procs, {
      name: 'direct-batching',
      workDir,
      env: pinned(ctx, { MODEL_BATCHING: opts.batching }),
    }),
    startBenchServer(procs, { name: 'stable', workDir, env: pinned(ctx, { ROLE: 'stable' }) }),
    startBenchServer(procs, { name: 'canary', workDir, env: pinned(ctx, { ROLE: 'canary' }) }),
    // The baseline may refuse to start (not the same model) or lack its venv: the rest still runs.
    startFlask(procs, { workDir, versionDir }).catch((err: unknown) => err as Error),
  ]);
  if (flask instanceof Error) progress(`[bench] Flask baseline FAILED to start: ${flask.message}`);
  const { envoy, watch } = await envoyStack(ctx, stable, canary);
  // --peers: Triton, KServe and MLServer, each checked against the direct server before it joins the run.
  const peers = opts.peers ? await startPeers(ctx, direct.host) : [];
  const targets = {
    direct: grpcTarget(ctx, 'direct', direct.host, [watchServer(direct, 'server')]),
    // Not judged: the same server and records through the Open Inference Protocol, for its cost per call.
    oipRaw: grpcTarget(
      ctx,
      'direct ModelInfer raw',
      direct.host,
      [watchServer(direct, 'server')],
      MODEL,
      'raw',
    ),
    oipTyped: grpcTarget(
      ctx,
      'direct ModelInfer typed',
      direct.host,
      [watchServer(direct, 'server')],
      MODEL,
      'typed',
    ),
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
  const order = [
    targets.direct,
    targets.oipRaw,
    targets.oipTyped,
    targets.batched,
    targets.envoy,
    targets.flask,
    targets.floor,
    ...peers.map((p) => p.target),
  ].filter((t): t is Target => t !== undefined);

  progress('[bench] warm-up');
  await warmUp(ctx, order);
  progress(`[bench] max throughput: closed loop c=${opts.concurrency}, ${opts.rounds} interleaved rounds`);
  const max = await interleaved(ctx, order);
  progress(`[bench] fixed rate ${opts.rate}/s`);
  const rate = new Map<string, Measurement>();
  // The peers' table reports max throughput and CPU only, so they skip the fixed-rate phase.
  const peerTargets = new Set(peers.map((p) => p.target));
  for (const t of order) if (!peerTargets.has(t)) rate.set(t.name, await t.run(paced(ctx, opts.rate)));
  progress(`[bench] Envoy at a fixed ${opts.envoyRate}/s`);
  const high = await targets.envoy.run(paced(ctx, opts.envoyRate));
  // The same rate with a generator that leaves the cores to Envoy and the servers (h2load.ts).
  let highLean: Measurement | undefined;
  if (h2loadInstalled()) {
    progress(`[bench] Envoy at a fixed ${opts.envoyRate}/s, h2load`);
    highLean = await h2loadPhase({
      target: 'envoy h2load',
      host: envoy.host,
      model: MODEL,
      workDir,
      metricsPorts: [stable.metricsPort, canary.metricsPort],
      ...H2LOAD_SHAPE,
      load: {
        concurrency: H2LOAD_SHAPE.clients * H2LOAD_SHAPE.streams,
        rps: opts.envoyRate,
        durationMs: opts.durationMs,
      },
      watch,
      progress,
      signal: ctx.signal,
    });
  } else progress('[bench] h2load not installed (Debian: nghttp2-client): Envoy judged with ghz only');

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
    envoy: { max: max.get('envoy'), rate: rate.get('envoy'), high, ...(highLean ? { highLean } : {}) },
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
        name: '(not judged) direct, Open Inference Protocol ModelInfer, raw_input_contents (tritonclient)',
        generator: 'ghz (gRPC)',
        max: max.get('direct ModelInfer raw'),
        rate: rate.get('direct ModelInfer raw'),
      },
      {
        name: '(not judged) direct, Open Inference Protocol ModelInfer, typed contents (KServe SDK)',
        generator: 'ghz (gRPC)',
        max: max.get('direct ModelInfer typed'),
        rate: rate.get('direct ModelInfer typed'),
      },
      {
        name: `(not judged) direct, MODEL_BATCHING=${opts.batching}`,
        generator: 'ghz (gRPC)',
        max: max.get('direct+batching'),
        rate: rate.get('direct+batching'),
      },
      {
        name: `this server via Envoy (${DEFAULT_SPLIT})`,
        generator: 'ghz (gRPC)',
        ...runs.envoy,
      },
      { name: 'Flask + sklearn (seed)', generator: 'hey (HTTP/1.1 JSON)', ...runs.flask },
      { name: 'floor: bare grpc-js', generator: 'ghz (gRPC)', ...runs.floor },
    ]),
    '',
    `Max throughput per round (ok/s): direct ${roundsCell(runs.direct?.max)}; ` +
      `ModelInfer raw ${roundsCell(max.get('direct ModelInfer raw'))}; ` +
      `ModelInfer typed ${roundsCell(max.get('direct ModelInfer typed'))}; ` +
      `direct+batching ${roundsCell(max.get('direct+batching'))}; envoy ${roundsCell(runs.envoy?.max)}; ` +
      `flask ${roundsCell(runs.flask?.max)}; floor ${roundsCell(runs.floor?.max)}.`,
    '',
    `Envoy at a fixed ${opts.envoyRate}/s (c=${opts.concurrency}): achieved ${Math.round(high.okRps)}/s, ` +
      `p50 ${f2(high.p50Ms)} ms, p90 ${f2(high.p90Ms)} ms, p99 ${f2(high.p99Ms)} ms, max ${f2(high.maxMs)} ms, ` +
      `errors ${high.errorCount}/${high.count}, load ${high.load1[0].toFixed(2)}→${high.load1[1].toFixed(2)}.`,
    '',
    highLean
      ? `Envoy at a fixed ${opts.envoyRate}/s with h2load (${H2LOAD_SHAPE.clients} connections × ${H2LOAD_SHAPE.streams} streams, ` +
        `one pre-encoded Predict): achieved ${Math.round(highLean.okRps)}/s, p50 ${f2(highLean.p50Ms)} ms, ` +
        `p90 ${f2(highLean.p90Ms)} ms, p99 ${f2(highLean.p99Ms)} ms, max ${f2(highLean.maxMs)} ms, ` +
        `errors ${highLean.errorCount}/${highLean.count} (gRPC statuses from the servers' counters), ` +
        `load ${highLean.load1[0].toFixed(2)}→${highLean.load1[1].toFixed(2)}.`
      : 'h2load not installed: no lean-generator run.',
    '',
    '| ratio | value |',
    '| --- | ---: |',
    `| ours/Flask throughput (direct max ÷ Flask max) | ${fmtRatio(r.oursOverFlask, 1)} |`,
    `| ours/floor throughput (direct max ÷ floor max) | ${fmtRatio(r.oursOverFloor, 2)} |`,
    ...(['raw', 'typed'] as const).flatMap((e) => [
      `| (not judged) ModelInfer ${e} ÷ Predict throughput (direct max) | ${fmtRatio(ratioOf(max.get(`direct ModelInfer ${e}`), runs.direct?.max), 2)} |`,
      `| (not judged) ModelInfer ${e} ÷ Predict server CPU per call (direct max) | ${fmtRatio(cpuRatio(max.get(`direct ModelInfer ${e}`), runs.direct?.max, 'server'), 2)} |`,
    ]),
    `| (not judged) direct with batching ÷ floor | ${fmtRatio(ratioOf(max.get('direct+batching'), runs.floor?.max), 2)} |`,
    `| (not judged) direct with batching ÷ Flask | ${fmtRatio(ratioOf(max.get('direct+batching'), runs.flask?.max), 1)} |`,
    `| Envoy's added p50 at ${opts.rate}/s (Envoy − direct) | ${r.envoyAddedP50Ms === undefined ? 'n/a' : `${f2(r.envoyAddedP50Ms)} ms`} |`,
    `| Envoy's added p99 at ${opts.rate}/s (Envoy − direct) | ${r.envoyAddedP99Ms === undefined ? 'n/a' : `${f2(r.envoyAddedP99Ms)} ms`} |`,
    '',
    ...(opts.peers ? [peersSection(peers, max, opts.concurrency, (rows) => cpuTable(rows, CORES)), ''] : []),
    '### Verdicts (issues 4 and 14)',
    '',
    ...verdictLines(verdicts(runs, targetsFor(opts))),
    '',
    '### Where the cores went (max-throughput runs)',
    '',
    cpuTable(
      [
        { name: 'direct', m: runs.direct?.max },
        { name: 'direct ModelInfer raw', m: max.get('direct ModelInfer raw') },
        { name: 'direct ModelInfer typed', m: max.get('direct ModelInfer typed') },
        { name: 'direct+batching', m: max.get('direct+batching') },
        { name: 'envoy', m: runs.envoy?.max },
        { name: `envoy @${opts.envoyRate}/s (ghz)`, m: high },
        { name: `envoy @${opts.envoyRate}/s (h2load)`, m: highLean },
        { name: 'flask', m: runs.flask?.max },
        { name: 'floor', m: runs.floor?.max },
      ],
      CORES,
    ),
    '',
    `"${GENERATOR}" is ghz, h2load or hey. Shares are of the whole machine over the run; what is left went to other users of it.`,
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
