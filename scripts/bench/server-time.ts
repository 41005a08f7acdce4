/**
 * `npm run bench:server`: the server-side time of Predict for the seed's sample
 * record, from request decoded to response written, as the server itself
 * measures it (the `latencyMs` of each Predict log line: handler entry to the
 * callback that serialises and writes the response, logging and metrics
 * included). The server runs as its own process with its production logger
 * (stdout, asynchronous); requests are sent one at a time so queueing does not
 * mix in.
 *
 * Options: `npm run bench:server -- --help`.
 */
import { credentials, type ServiceError } from '@grpc/grpc-js';
import {
  InferenceServiceClient,
  type PredictResponse,
} from '../../server/generated/inference/v1/inference.js';
import { intOption, numberOption, parseCommandLine } from '../lib/args.js';
import { optionsOrExit, runIfMain } from '../lib/cli.js';
import { SEED_RECORD as SAMPLE } from '../lib/load/payload.js';
import { startServer } from '../lib/server-process.js';
import { percentile } from '../lib/stats.js';

const USAGE = `Usage: npm run bench:server -- [options]

Server-side Predict time of the seed's sample record (request decoded to
response written, as the server logs it) over sequential requests to one
server process, beside the client's round trip.

  --requests N        measured requests (default 5000)
  --warmup N          requests before measuring (default 500)
  --target-p99-ms X   the server-side p99 goal (default 1)
  -h, --help          this text`;

function parse(argv: readonly string[]) {
  const { values } = parseCommandLine(argv, {
    requests: { type: 'string' },
    warmup: { type: 'string' },
    'target-p99-ms': { type: 'string' },
  });
  return {
    requests: intOption(values.requests, '--requests', 1, 10_000_000) ?? 5000,
    warmup: intOption(values.warmup, '--warmup', 0, 10_000_000) ?? 500,
    targetP99: numberOption(values['target-p99-ms'], '--target-p99-ms', 0, 60_000, true) ?? 1,
    help: values.help === true,
  };
}

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'bench:server', usage: USAGE, parse }, argv);
  if (typeof opts === 'number') return opts;
  const { requests, warmup, targetP99 } = opts;
  const serverMs = new Map<string, number>();
  const server = await startServer({
    timeoutMs: 20_000,
    onLog: (line) => {
      if (line.msg === 'Predict' && typeof line.requestId === 'string') {
        serverMs.set(line.requestId, line.latencyMs as number);
      }
    },
  });
  const client = new InferenceServiceClient(`127.0.0.1:${server.grpcPort}`, credentials.createInsecure());
  const call = (requestId: string) =>
    new Promise<PredictResponse>((resolve, reject) =>
      client.predict(
        { model: 'conversion', version: '', requestId, instances: [SAMPLE] },
        (err: ServiceError | null, r) => (err ? reject(err) : resolve(r)),
      ),
    );
  const rtt: number[] = [];
  let version = '';
  try {
    process.stderr.write(`warming up (${warmup} requests)…\n`);
    for (let i = 0; i < warmup; i++) await call(`warm-${i}`);
    const t0 = performance.now();
    for (let i = 0; i < requests; i++) {
      const s = performance.now();
      version = (await call(`m-${i}`)).version;
      rtt.push(performance.now() - s);
      if ((i + 1) % 1000 === 0) process.stderr.write(`  ${i + 1}/${requests} requests\n`);
    }
    const elapsed = (performance.now() - t0) / 1000;
    // The last log lines may still be in flight from the child's stdout.
    const deadline = Date.now() + 5000;
    while ([...Array(requests).keys()].some((i) => !serverMs.has(`m-${i}`)) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const server_ = [...Array(requests).keys()]
      .map((i) => serverMs.get(`m-${i}`))
      .filter((v): v is number => v !== undefined)
      .sort((a, b) => a - b);
    rtt.sort((a, b) => a - b);
    const f = (x: number) => x.toFixed(3);
    const p99 = percentile(server_, 99);
    console.log(
      `\nPredict, seed sample, model conversion@${version}, ${requests} sequential requests (${f(elapsed)} s)`,
    );
    console.log('');
    console.log('| measure | p50 ms | p90 ms | p99 ms | max ms |');
    console.log('| --- | --- | --- | --- | --- |');
    console.log(
      `| server-side (decoded → written) | ${f(percentile(server_, 50))} | ${f(percentile(server_, 90))} | ${f(p99)} | ${f(server_.at(-1) ?? Number.NaN)} |`,
    );
    console.log(
      `| client round trip (loopback) | ${f(percentile(rtt, 50))} | ${f(percentile(rtt, 90))} | ${f(percentile(rtt, 99))} | ${f(rtt.at(-1) ?? Number.NaN)} |`,
    );
    console.log('');
    console.log(
      `${p99 <= targetP99 ? 'PASS' : 'MISS'}: server-side p99 ${f(p99)} ms vs target ≤ ${targetP99} ms (${server_.length} samples)`,
    );
    if (server_.length < requests)
      console.log(`note: ${requests - server_.length} log lines were not received`);
  } finally {
    client.close();
    await server.stop();
  }
  return 0;
}

runIfMain(import.meta.url, 'bench:server', main);
