/**
 * `npm run bench:breakdown`: where the server-side time of one Predict goes,
 * stage by stage, each measured in isolation with the real code on the seed's
 * sample record: protobuf decode, preprocessing, ONNX Runtime, A/B assignment,
 * response encode, the prediction log line (pino into an asynchronous
 * /dev/null destination) and the metrics updates. Compare the sum with
 * `npm run bench:server`, which measures the whole handler.
 *
 * Options: `npm run bench:breakdown -- --help`.
 */
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { ExperimentAssigner } from '../../server/experiment.js';
import { PredictRequest, PredictResponse } from '../../server/generated/inference/v1/inference.js';
import { Metrics } from '../../server/metrics.js';
import { ModelVersion } from '../../server/model-version.js';
import { intOption, parseCommandLine } from '../lib/args.js';
import { optionsOrExit, runIfMain } from '../lib/cli.js';
import { SEED_RECORD as SAMPLE } from '../lib/load/payload.js';
import { MODELS_DIR } from '../lib/paths.js';
import { percentile } from '../lib/stats.js';
import { newestVersion } from '../lib/versions.js';

const USAGE = `Usage: npm run bench:breakdown -- [--iterations N]

Times each server-side stage of one Predict alone, with the real code on the
seed's sample record, and prints p50/p99 per stage.

  --iterations N   timed calls per stage, after a warm-up (default 20000)
  -h, --help       this text`;

function parse(argv: readonly string[]): { iterations: number; help: boolean } {
  const { values } = parseCommandLine(argv, { iterations: { type: 'string' } });
  return {
    iterations: intOption(values.iterations, '--iterations', 1, 10_000_000) ?? 20_000,
    help: values.help === true,
  };
}

/** Times `fn` `iterations` times after a warm-up; returns per-call microseconds, sorted. */
async function time(fn: () => unknown | Promise<unknown>, iterations: number): Promise<number[]> {
  for (let i = 0; i < Math.min(2000, iterations); i++) await fn();
  const out = new Array<number>(iterations);
  for (let i = 0; i < iterations; i++) {
    const t0 = performance.now();
    await fn();
    out[i] = (performance.now() - t0) * 1000;
  }
  return out.sort((a, b) => a - b);
}

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'bench:breakdown', usage: USAGE, parse }, argv);
  if (typeof opts === 'number') return opts;
  const ITER = opts.iterations;
  const dir = join(MODELS_DIR, 'conversion');
  const version = newestVersion(dir);
  const model = await ModelVersion.load(
    join(dir, version),
    { name: 'conversion', version },
    { intraOpThreads: 1 },
  );
  const request = PredictRequest.encode({
    model: 'conversion',
    version: '',
    requestId: 'r-1',
    instances: [SAMPLE],
  }).finish();
  const decoded = PredictRequest.decode(request);
  const rows = new Float32Array(model.preprocessor.width);
  const now = Date.now();
  model.preprocessor.fill(SAMPLE, now, rows, 0);
  const [score] = await model.score(rows, 1);
  const prediction = { score: score ?? 0, label: 0, group: 'baseline', action: 0 };
  const response: PredictResponse = {
    model: 'conversion',
    version,
    requestId: 'r-1',
    arm: 'stable',
    predictions: [prediction],
  };
  const assigner = new ExperimentAssigner('canary', { name: 'positives-v1', salt: 's', share: 0.5 });
  const logger = pino(
    { base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: '/dev/null', sync: false }),
  ).child({ component: 'rpc' });
  const metrics = new Metrics(new Registry());
  const labels = { method: 'Predict', model: 'conversion', version, code: 'OK' };

  const stages: [string, () => unknown | Promise<unknown>][] = [
    ['decode request (protobuf + Struct unwrap)', () => PredictRequest.decode(request)],
    [
      'preprocess (manifest transforms)',
      () => model.preprocessor.fill(decoded.instances[0] ?? {}, now, rows, 0),
    ],
    ['ONNX Runtime run (inline)', () => model.score(rows, 1)],
    ['A/B assignment (sha256 bucket)', () => assigner.assign(1, '102079311', 'r-1#0')],
    ['encode response', () => PredictResponse.encode(response).finish()],
    [
      'prediction log line (pino, async)',
      () =>
        logger.info(
          {
            requestId: 'r-1',
            method: 'Predict',
            model: 'conversion',
            version,
            code: 'OK',
            latencyMs: 0.1,
            arm: 'stable',
            users: ['102079311'],
            inputs: decoded.instances,
            outputs: [prediction],
          },
          'Predict',
        ),
    ],
    [
      // The in-flight gauge is read at scrape time, so a call costs it nothing.
      'metrics (counter, histogram, assignment)',
      () => {
        metrics.requests.inc(labels);
        metrics.requestDuration.observe(labels, 0.0001);
        metrics.assignments.inc({ arm: 'stable', group: 'baseline', label: 0 });
      },
    ],
  ];
  console.log(
    `Server-side stages of one Predict (seed sample, conversion@${version}), ${ITER} iterations each\n`,
  );
  console.log('| stage | p50 µs | p99 µs |');
  console.log('| --- | --- | --- |');
  let sum50 = 0;
  for (const [name, fn] of stages) {
    const t = await time(fn, ITER);
    sum50 += percentile(t, 50);
    console.log(`| ${name} | ${percentile(t, 50).toFixed(1)} | ${percentile(t, 99).toFixed(1)} |`);
  }
  console.log(`| **sum of p50s** | **${sum50.toFixed(1)}** | |`);
  await model.retire();
  return 0;
}

runIfMain(import.meta.url, 'bench:breakdown', main);
