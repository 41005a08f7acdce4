/**
 * The families section of `npm run bench -- --families` (issue 5): end-to-end
 * RT through Envoy at a fixed rate for each model family (LR, GBDT, MLP),
 * against the seed notes' Flask figures.
 */
import { cpSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURE_MODELS_DIR, MODELS_DIR } from '../paths.js';
import { newestVersion } from '../versions.js';
import { startBenchServer } from './processes.js';
import { cpuTable, f2, measurementTable } from './tables.js';
import {
  type BenchContext,
  CORES,
  DEFAULT_SPLIT,
  envoyStack,
  grpcTarget,
  MODEL,
  paced,
  warmUp,
} from './targets.js';
import type { Measurement } from './verdicts.js';

/** Issue 5's RT table: each family through Envoy at a fixed rate. */
export async function familyRt(ctx: BenchContext): Promise<string> {
  const { procs, workDir, opts } = ctx;
  const repo = join(workDir, 'families-repo');
  mkdirSync(repo, { recursive: true });
  cpSync(join(MODELS_DIR, MODEL), join(repo, MODEL), { recursive: true });
  const list = [
    { family: 'LR', model: MODEL, flaskMs: 10 },
    { family: 'GBDT', model: 'conversion-gbdt', flaskMs: 20 },
    { family: 'MLP', model: 'conversion-mlp', flaskMs: 70 },
  ];
  for (const f of list.slice(1))
    cpSync(join(FIXTURE_MODELS_DIR, f.model), join(repo, f.model), { recursive: true });
  const rows: string[] = [];
  const ms: { name: string; m: Measurement }[] = [];
  try {
    ctx.progress(
      `[bench] families: Envoy → stable + canary serving LR, GBDT and MLP, ${opts.familiesRate}/s each`,
    );
    const env = (role: string) => ({ ROLE: role, MODEL_ROOT: repo });
    const [stable, canary] = await Promise.all([
      startBenchServer(procs, { name: 'stable', workDir, env: env('stable') }),
      startBenchServer(procs, { name: 'canary', workDir, env: env('canary') }),
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
    `Envoy (${opts.envoyWorkers} worker) → stable + canary (${DEFAULT_SPLIT}), both serving every family; ghz, c=${opts.concurrency}, ${opts.durationMs / 1000} s per family.`,
    '',
    "| family | model@version | ok/s | p50 ms | p99 ms | errors | notes' Flask RT ms | p99 beats it | p99 ≤ 5 ms | load avg 1m |",
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |',
    ...rows,
    '',
    measurementTable(ms),
    '',
    cpuTable(ms, CORES),
  ].join('\n');
}
