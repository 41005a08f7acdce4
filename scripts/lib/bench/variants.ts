/**
 * Sections of `npm run bench -- --extras` that compare one direct server
 * under different settings, in interleaved closed-loop rounds: the cost of
 * per-prediction logging, and micro-batching off vs on.
 */
import { startBenchServer } from './processes.js';
import { scrapeServer } from './scrape.js';
import { cpuTable, measurementTable, roundsCell } from './tables.js';
import {
  type BenchContext,
  CORES,
  grpcTarget,
  interleaved,
  paced,
  pinned,
  type Target,
  warmUp,
  watchServer,
} from './targets.js';
import { change, combineRounds, type Measurement, pct } from './verdicts.js';

/** `rps` on each target in `rounds` interleaved rounds (rotating the order), combined per target. */
async function interleavedPaced(ctx: BenchContext, targets: readonly Target[], rps: number) {
  const { rounds, durationMs } = ctx.opts;
  const per = new Map<string, Measurement[]>(targets.map((t) => [t.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < targets.length; i++) {
      const t = targets[(r + i) % targets.length] as Target;
      const load = { ...paced(ctx, rps), durationMs: Math.round(durationMs / rounds) };
      per.get(t.name)?.push(await t.run(load));
    }
  }
  return new Map([...per].map(([name, ms]) => [name, combineRounds(ms)]));
}

/** Two or more direct servers with different env, compared in interleaved closed-loop rounds. */
async function directVariants(
  ctx: BenchContext,
  title: string,
  variants: readonly { name: string; env: Record<string, string> }[],
  concurrency: number,
  /** Also a fixed rate, in interleaved rounds (the batching section's low-load latency). */
  pacedRps?: number,
): Promise<
  { name: string; m: Measurement; meanBatchRows: number | undefined; paced: Measurement | undefined }[]
> {
  const { procs, workDir } = ctx;
  try {
    ctx.progress(`[bench] ${title}: starting ${variants.map((v) => v.name).join(', ')}`);
    const servers = await Promise.all(
      variants.map((v, i) =>
        startBenchServer(procs, { name: `variant-${i}`, workDir, env: pinned(ctx, v.env) }),
      ),
    );
    const targets = servers.map((s, i) =>
      grpcTarget(ctx, (variants[i] as { name: string }).name, s.host, [watchServer(s, 'server')]),
    );
    await warmUp(ctx, targets, concurrency);
    const before = await Promise.all(servers.map((s) => scrapeServer(s.metricsPort)));
    const results = await interleaved(ctx, targets, concurrency);
    const after = await Promise.all(servers.map((s) => scrapeServer(s.metricsPort)));
    const pacedRuns = pacedRps === undefined ? undefined : await interleavedPaced(ctx, targets, pacedRps);
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
        paced: pacedRuns?.get(v.name),
      };
    });
  } finally {
    await procs.stopAll();
  }
}

export async function logging(ctx: BenchContext): Promise<string> {
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
    cpuTable(
      [
        { name: 'logging on', m: on.m },
        { name: 'logging off', m: off.m },
      ],
      CORES,
    ),
    '',
    `Cost of per-prediction logging: ${pct(cost)} of throughput (target ≤ 10%: ${cost <= 0.1 ? 'met' : '**MISSED**'}).`,
  ].join('\n');
}

export async function batching(ctx: BenchContext): Promise<string> {
  const c = ctx.opts.batchConcurrency;
  const results = await directVariants(
    ctx,
    'micro-batching off vs on',
    [
      { name: 'batching off', env: { MODEL_BATCHING: '' } },
      { name: `batching on (${ctx.opts.batching})`, env: { MODEL_BATCHING: ctx.opts.batching } },
    ],
    c,
    ctx.opts.rate,
  );
  const [off, on] = results;
  return [
    `## Micro-batching off vs on (direct, closed loop c=${c}, then ${ctx.opts.rate}/s; ${ctx.opts.rounds} interleaved rounds each)`,
    '',
    measurementTable([
      ...results,
      ...results.flatMap((r) => (r.paced ? [{ name: `${r.name}, ${ctx.opts.rate}/s`, m: r.paced }] : [])),
    ]),
    '',
    '| run | mean rows per ONNX Runtime run | ok/s per round |',
    '| --- | ---: | --- |',
    ...results.map(
      (r) =>
        `| ${r.name} | ${r.meanBatchRows === undefined ? 'n/a' : r.meanBatchRows.toFixed(2)} | ${roundsCell(r.m)} |`,
    ),
    '',
    cpuTable(
      results.map((r) => ({ name: r.name, m: r.m })),
      CORES,
    ),
    '',
    off && on ? `Throughput change with batching: ${pct(change(off.m.okRps, on.m.okRps))}.` : '',
  ].join('\n');
}
