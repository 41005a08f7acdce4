/**
 * `npm run bench:event-loop`: does a heavy model stall everyone else?
 *
 * onnxruntime-node runs inference synchronously on the event loop (onnxruntime
 * issue 19611). With a large model, every other call then waits behind each
 * inference. This runs the server with the large GBDT and MLP fixtures plus
 * the demo LR model, sends 256-row batches to the large model from two
 * concurrent loops, and meanwhile probes with single-row LR requests; once
 * with inference inline (INFERENCE_WORKERS=0), once on worker threads.
 * It prints the probe's latency and the server's event-loop delay.
 *
 * Options: `npm run bench:event-loop -- --help`.
 */
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import {
  InferenceServiceClient,
  type PredictRequest,
} from '../../server/generated/inference/v1/inference.js';
import { intOption, parseCommandLine } from '../lib/args.js';
import { optionsOrExit, runIfMain } from '../lib/cli.js';
import { FIXTURE_MODELS_DIR, MODELS_DIR } from '../lib/paths.js';
import { parseSamples, sampleValue } from '../lib/prometheus.js';
import { startServer } from '../lib/server-process.js';
import { percentile } from '../lib/stats.js';
import { newestVersion } from '../lib/versions.js';

const USAGE = `Usage: npm run bench:event-loop -- [--seconds N]

Runs the server with the large GBDT and MLP fixtures, sends 256-row batches to
a large model from two loops while probing with 1-row LR requests, once with
inference inline and once on worker threads, and prints the probe's latency
and the event-loop delay.

  --seconds N   length of each run (default 8)
  -h, --help    this text`;

function parse(argv: readonly string[]): { seconds: number; help: boolean } {
  const { values } = parseCommandLine(argv, { seconds: { type: 'string' } });
  return { seconds: intOption(values.seconds, '--seconds', 1, 3600) ?? 8, help: values.help === true };
}

function repository(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bench-el-'));
  cpSync(join(MODELS_DIR, 'conversion'), join(dir, 'conversion'), { recursive: true });
  for (const m of ['conversion-mlp-large', 'conversion-gbdt-large']) {
    cpSync(join(FIXTURE_MODELS_DIR, m), join(dir, m), { recursive: true });
  }
  return dir;
}

function records(model: string): Record<string, unknown>[] {
  const base = join(FIXTURE_MODELS_DIR, model);
  const version = newestVersion(base);
  const golden = JSON.parse(readFileSync(join(base, version, 'golden.json'), 'utf8')) as {
    cases: { record: Record<string, unknown> }[];
  };
  return Array.from({ length: 256 }, (_, i) => golden.cases[i % golden.cases.length]?.record ?? {});
}

function call(client: InferenceServiceClient, req: PredictRequest): Promise<number> {
  const t0 = performance.now();
  return new Promise((resolve, reject) =>
    client.predict(req, (err: ServiceError | null) => (err ? reject(err) : resolve(performance.now() - t0))),
  );
}

/** prom-client's p99 event-loop delay of the server, in ms. */
async function scrapeLag(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const p99 = sampleValue(parseSamples(text), 'nodejs_eventloop_lag_p99_seconds');
  return p99 === undefined ? Number.NaN : p99 * 1000;
}

async function run(model: string, workers: number, root: string, seconds: number): Promise<string> {
  const server = await startServer({
    env: { MODEL_ROOT: root, INFERENCE_WORKERS: String(workers) },
    timeoutMs: 60_000,
    // The Predict log lines are not needed here.
    onLog: () => undefined,
  });
  const client = new InferenceServiceClient(`127.0.0.1:${server.grpcPort}`, credentials.createInsecure());
  const heavyReq: PredictRequest = { model, version: '', requestId: '', instances: records(model) };
  const probeReq: PredictRequest = {
    model: 'conversion',
    version: '',
    requestId: '',
    instances: [records('conversion-mlp-large')[0] ?? {}],
  };
  const heavy: number[] = [];
  const probe: number[] = [];
  const end = Date.now() + seconds * 1000;
  try {
    // Warm up both paths.
    for (let i = 0; i < 20; i++) await Promise.all([call(client, heavyReq), call(client, probeReq)]);
    const heavyLoop = async () => {
      for (let i = 0; i < 1_000_000 && Date.now() < end; i++) heavy.push(await call(client, heavyReq));
    };
    const probeLoop = async () => {
      for (let i = 0; i < 1_000_000 && Date.now() < end; i++) {
        probe.push(await call(client, probeReq));
        await new Promise((r) => setTimeout(r, 2));
      }
    };
    await Promise.all([heavyLoop(), heavyLoop(), probeLoop()]);
    const lag = await scrapeLag(server.metricsPort);
    heavy.sort((a, b) => a - b);
    probe.sort((a, b) => a - b);
    const f = (x: number) => x.toFixed(2);
    return `| ${model} | ${workers === 0 ? 'inline' : `${workers} worker threads`} | ${f(heavy.length / seconds)} | ${f(percentile(heavy, 50))} | ${f(percentile(probe, 50))} | ${f(percentile(probe, 99))} | ${f(lag)} |`;
  } finally {
    client.close();
    await server.stop();
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'bench:event-loop', usage: USAGE, parse }, argv);
  if (typeof opts === 'number') return opts;
  const { seconds } = opts;
  const root = repository();
  try {
    console.log(
      `Heavy: 2 loops of 256-row batches; probe: 1-row LR requests every 2 ms; ${seconds} s per row\n`,
    );
    console.log(
      '| heavy model | inference | heavy batches/s | heavy p50 ms | probe p50 ms | probe p99 ms | event-loop lag p99 ms |',
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- |');
    for (const model of ['conversion-mlp-large', 'conversion-gbdt-large']) {
      for (const workers of [0, 2]) {
        process.stderr.write(`running ${model} with INFERENCE_WORKERS=${workers}…\n`);
        console.log(await run(model, workers, root, seconds));
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return 0;
}

runIfMain(import.meta.url, 'bench:event-loop', main);
