/**
 * Node-side latency of each model family in ONNX Runtime, at batch 1 and 32:
 * loads each version with the server's loader (`ModelVersion.load`, so the
 * same session options as serving) and times `score()`, the awaited
 * `session.run` plus reading the positive-class column. No gRPC, no
 * preprocessing: this is the number to set beside the pipeline's Python
 * figures (model.json `speed.python`), which it prints alongside.
 *
 *     npm run bench:families -- [--runs 2000] [--warmup 200] [--threads 1] [version dir]...
 *
 * Without version dirs it takes the newest version of models/conversion (lr)
 * and of the test fixtures test/fixtures/models/conversion-gbdt and
 * conversion-mlp. Inputs are the versions' golden vectors (real feature rows),
 * cycled. Cells run round-robin (one call per family × batch cell in turn), so
 * load from other processes on a shared machine spreads over every cell
 * instead of skewing whichever ran last. Prints a markdown table.
 */
import { readFile } from 'node:fs/promises';
import { cpus, loadavg } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import * as ort from 'onnxruntime-node';
import { ModelVersion } from '../../server/model-version.js';
import { intOption, parseCommandLine } from '../lib/args.js';
import { optionsOrExit, runIfMain } from '../lib/cli.js';
import { FIXTURE_MODELS_DIR, MODELS_DIR } from '../lib/paths.js';
import { percentile } from '../lib/stats.js';
import { newestVersion } from '../lib/versions.js';

const DEFAULT_MODELS = [
  join(MODELS_DIR, 'conversion'),
  join(FIXTURE_MODELS_DIR, 'conversion-gbdt'),
  join(FIXTURE_MODELS_DIR, 'conversion-mlp'),
];
const BATCHES = [1, 32] as const;

interface PythonSpeed {
  batch1?: { p50Ms: number; p99Ms: number };
  batch32?: { p50Ms: number; p99Ms: number };
}

interface Cell {
  version: ModelVersion;
  batch: number;
  /** Pre-built input buffers, cycled so consecutive runs see different rows. */
  inputs: Float32Array[];
  times: Float64Array;
  python: { p50Ms: number; p99Ms: number } | undefined;
}

const USAGE = `Usage: npm run bench:families -- [options] [version dir]...

ONNX Runtime latency of each model family's score(), at batch 1 and 32, beside
the pipeline's Python figures. Without version dirs: the newest version of
models/conversion (LR) and of the GBDT and MLP test fixtures.

  --runs N      timed calls per cell (default 2000)
  --warmup N    calls per cell before timing (default 200)
  --threads N   ONNX Runtime intra-op threads (default 1)
  -h, --help    this text`;

function parse(argv: readonly string[]) {
  const { values, positionals } = parseCommandLine(
    argv,
    { runs: { type: 'string' }, warmup: { type: 'string' }, threads: { type: 'string' } },
    true,
  );
  return {
    runs: intOption(values.runs, '--runs', 1, 1_000_000) ?? 2000,
    warmup: intOption(values.warmup, '--warmup', 1, 1_000_000) ?? 200,
    threads: intOption(values.threads, '--threads', 1, 64) ?? 1,
    dirs: positionals.map((p) => resolve(p)),
    help: values.help === true,
  };
}

function newestVersionDir(modelDir: string): string {
  return join(modelDir, newestVersion(modelDir));
}

/** Golden input rows, tiled into `count` buffers of `batch` rows each. */
async function inputsFor(v: ModelVersion, batch: number, count: number): Promise<Float32Array[]> {
  const golden = JSON.parse(await readFile(join(v.dir, 'golden.json'), 'utf8')) as {
    cases: { inputs: number[] }[];
  };
  const rows = golden.cases.map((c) => Float32Array.from(c.inputs));
  const width = v.preprocessor.width;
  const buffers: Float32Array[] = [];
  let next = 0;
  for (let b = 0; b < count; b++) {
    const buf = new Float32Array(batch * width);
    for (let i = 0; i < batch; i++) buf.set(rows[next++ % rows.length] as Float32Array, i * width);
    buffers.push(buf);
  }
  return buffers;
}

const fmt = (ms: number | undefined) => (ms === undefined ? 'n/a' : ms.toFixed(4));

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'bench:families', usage: USAGE, parse }, argv);
  if (typeof opts === 'number') return opts;
  const { runs, warmup, threads } = opts;
  const dirs = opts.dirs.length > 0 ? opts.dirs : DEFAULT_MODELS.map(newestVersionDir);

  const cells: Cell[] = [];
  const loaded: ModelVersion[] = [];
  try {
    for (const dir of dirs) {
      const v = await ModelVersion.load(
        dir,
        { name: basename(dirname(dir)), version: basename(dir) },
        { intraOpThreads: threads },
      );
      loaded.push(v);
      const manifest = JSON.parse(await readFile(join(dir, 'model.json'), 'utf8')) as {
        speed?: { python?: PythonSpeed };
      };
      for (const batch of BATCHES) {
        cells.push({
          version: v,
          batch,
          inputs: await inputsFor(v, batch, 64),
          times: new Float64Array(runs),
          python: batch === 1 ? manifest.speed?.python?.batch1 : manifest.speed?.python?.batch32,
        });
      }
    }

    const t0 = performance.now();
    for (let r = 0; r < warmup + runs; r++) {
      for (const c of cells) {
        const input = c.inputs[r % c.inputs.length] as Float32Array;
        const start = performance.now();
        await c.version.score(input, c.batch);
        const ms = performance.now() - start;
        if (r >= warmup) c.times[r - warmup] = ms;
      }
    }
    const wallS = (performance.now() - t0) / 1000;

    const load = loadavg().map((l) => l.toFixed(2));
    console.log(
      `onnxruntime-node ${ort.env.versions.node ?? '?'}, Node ${process.version}, ${cpus().length} CPUs ` +
        `(load average ${load.join(' ')}), intra-op threads ${threads}, graph optimisation all; ` +
        `${warmup} warm-up + ${runs} timed score() calls per cell, round-robin, ${wallS.toFixed(1)} s\n`,
    );
    console.log(
      '| family | model | version | batch | Node p50 ms | Node p99 ms | Node mean ms | Python p50 ms | Python p99 ms |',
    );
    console.log('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const c of cells) {
      const sorted = [...c.times].sort((a, b) => a - b);
      const mean = sorted.reduce((a, b) => a + b, 0) / sorted.length;
      const m = c.version.manifest;
      console.log(
        `| ${m.family} | ${m.name} | ${m.version} | ${c.batch} | ${fmt(percentile(sorted, 50))} | ` +
          `${fmt(percentile(sorted, 99))} | ${fmt(mean)} | ${fmt(c.python?.p50Ms)} | ${fmt(c.python?.p99Ms)} |`,
      );
    }
  } finally {
    await Promise.all(loaded.map((v) => v.retire()));
  }
  return 0;
}

runIfMain(import.meta.url, 'bench:families', main);
