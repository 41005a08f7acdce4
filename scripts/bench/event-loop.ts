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
 * Options: --seconds N per run (default 8).
 */
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import {
  InferenceServiceClient,
  type PredictRequest,
} from '../../server/generated/inference/v1/inference.js';
import { runIfMain } from '../lib/cli.js';
import { PROJECT_ROOT } from '../lib/paths.js';
import { spawnServer } from '../lib/server-process.js';
import { percentile } from '../lib/stats.js';

const sArg = process.argv.indexOf('--seconds');
const SECONDS = sArg >= 0 ? Number(process.argv[sArg + 1]) : 8;

function repository(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bench-el-'));
  cpSync(join(PROJECT_ROOT, 'models', 'conversion'), join(dir, 'conversion'), { recursive: true });
  for (const m of ['conversion-mlp-large', 'conversion-gbdt-large']) {
    cpSync(join(PROJECT_ROOT, 'test', 'fixtures', 'models', m), join(dir, m), { recursive: true });
  }
  return dir;
}

function records(model: string): Record<string, unknown>[] {
  const base = join(PROJECT_ROOT, 'test', 'fixtures', 'models', model);
  const version = readdirSync(base).sort().at(-1) as string;
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

async function scrapeLag(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = /^nodejs_eventloop_lag_p99_seconds (\S+)/m.exec(text);
  return m ? Number(m[1]) * 1000 : Number.NaN;
}

async function run(model: string, workers: number, root: string): Promise<string> {
  const server = await spawnServer(
    { MODEL_ROOT: root, INFERENCE_WORKERS: String(workers), LOG_DIR: '' },
    60_000,
    () => undefined,
  );
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
  const end = Date.now() + SECONDS * 1000;
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
    return `| ${model} | ${workers === 0 ? 'inline' : `${workers} worker threads`} | ${f(heavy.length / SECONDS)} | ${f(percentile(heavy, 50))} | ${f(percentile(probe, 50))} | ${f(percentile(probe, 99))} | ${f(lag)} |`;
  } finally {
    client.close();
    await server.stop();
  }
}

async function main(): Promise<void> {
  const root = repository();
  try {
    console.log(
      `Heavy: 2 loops of 256-row batches; probe: 1-row LR requests every 2 ms; ${SECONDS} s per row\n`,
    );
    console.log(
      '| heavy model | inference | heavy batches/s | heavy p50 ms | probe p50 ms | probe p99 ms | event-loop lag p99 ms |',
    );
    console.log('| --- | --- | --- | --- | --- | --- | --- |');
    for (const model of ['conversion-mlp-large', 'conversion-gbdt-large']) {
      for (const workers of [0, 2]) {
        process.stderr.write(`running ${model} with INFERENCE_WORKERS=${workers}…\n`);
        console.log(await run(model, workers, root));
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

runIfMain(import.meta.url, 'bench:event-loop', async () => {
  await main();
  return 0;
});
