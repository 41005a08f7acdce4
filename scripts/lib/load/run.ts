/**
 * One load test as `npm run loadtest` runs it: ghz against Envoy, one server or
 * any HOST:PORT, with progress, the servers' own counters before and after (the
 * observed A/B split), and JSON and HTML reports. The command
 * (scripts/load/loadtest.ts) adds argv, signals and the exit code.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PredictRequest, PredictResponse } from '../../../server/generated/inference/v1/inference.js';
import { REQUEST_ID_HEADER, USER_ID_HEADER } from '../../../server/headers.js';
import { MODELS_DIR, PROTO_DIR } from '../paths.js';
import { versionStamp } from '../versions.js';
import { spawnGhz } from './ghz.js';
import { type GhzRun, ghzArgs } from './ghz-args.js';
import { type GhzReport, readGhzReport } from './ghz-report.js';
import { generate, grpcFrame, type H2Request, toGhzReport } from './h2-generator.js';
import { abSplit, predictCalls, type Snapshot, snapshot } from './metrics.js';
import type { LoadtestOptions } from './options.js';
import {
  mixedRecords,
  modelInferTemplate,
  type PayloadRecord,
  predictTemplate,
  recordsFromFile,
  SEED_RECORD,
  USER_ID_BASE,
} from './payload.js';
import { type LoadtestResult, passed, renderHtml } from './report.js';
import { checkSlo } from './slo.js';
import { summarize } from './summary.js';

/** The method a load test drives. */
export const PREDICT_CALL = 'inference.v1.InferenceService/Predict';
/** The contract, for ghz runs that do not use server reflection. */
export const PROTO_FILE = join(PROTO_DIR, 'inference', 'v1', 'inference.proto');
export const PROTO_IMPORT_PATH = PROTO_DIR;
/** The Open Inference Protocol's inference call and contract (`--protocol oip`). */
export const MODEL_INFER_CALL = 'inference.GRPCInferenceService/ModelInfer';
export const OIP_PROTO_FILE = join(PROTO_DIR, 'inference', 'oip', 'open_inference_grpc.proto');

/** What each protocol's load test calls, and the method label its calls are counted under. */
const PROTOCOLS = {
  predict: { call: PREDICT_CALL, proto: PROTO_FILE, method: 'Predict', template: predictTemplate },
  oip: { call: MODEL_INFER_CALL, proto: OIP_PROTO_FILE, method: 'ModelInfer', template: modelInferTemplate },
} as const;

export interface LoadtestDeps {
  /** The ghz binary (default .tools/bin/ghz). */
  readonly ghzBin?: string;
  /** Where `mixed` payloads look for golden cases (default the project's models/). */
  readonly modelRoot?: string;
  /** Progress lines (default: stderr). */
  readonly progress?: (line: string, final: boolean) => void;
  readonly signal?: AbortSignal;
  readonly now?: () => Date;
}

export interface LoadtestOutcome {
  readonly result: LoadtestResult;
  readonly ok: boolean;
  readonly files: { readonly json: string; readonly html: string; readonly request: string };
  /** The ghz argv, for the record (empty when the project's own generator ran). */
  readonly ghzArgs: readonly string[];
}

function payloadRecords(
  opts: LoadtestOptions,
  modelRoot: string,
): { records: PayloadRecord[]; text: string } {
  switch (opts.payload.kind) {
    case 'seed':
      return { records: [{ id: 'seed', record: SEED_RECORD }], text: 'the seed sample record' };
    case 'mixed': {
      const records = mixedRecords(modelRoot, opts.model);
      const extra = records.length - 1;
      return {
        records,
        text:
          extra === 0
            ? `the seed sample record (no positive golden cases found under ${join(modelRoot, opts.model)})`
            : `the seed sample record + ${extra} positive golden case${extra === 1 ? '' : 's'} (${records
                .slice(1)
                .map((r) => r.id)
                .join(', ')}), in turn`,
      };
    }
    case 'file': {
      const records = recordsFromFile(opts.payload.path);
      return { records, text: `${records.length} record(s) from ${opts.payload.path}, in turn` };
    }
  }
}

function loadText(opts: LoadtestOptions): string {
  return opts.mode.kind === 'rate'
    ? `rate ${opts.mode.rps}/s, ${opts.mode.workers} workers`
    : `closed loop, ${opts.mode.concurrency} workers`;
}

function defaultProgress(line: string, final: boolean): void {
  if (process.stderr.isTTY) process.stderr.write(`\r\x1b[2K${line}${final ? '\n' : ''}`);
  else process.stderr.write(`${line}\n`);
}

/** Runs one load test as `opts` say; throws `GhzError` when ghz cannot run. */
export async function runLoadtest(opts: LoadtestOptions, deps: LoadtestDeps = {}): Promise<LoadtestOutcome> {
  const now = deps.now ?? (() => new Date());
  const progress = deps.progress ?? defaultProgress;
  const stamp = versionStamp(now());
  const runId = `loadtest-${stamp}`;
  const { records, text: payloadText } = payloadRecords(opts, deps.modelRoot ?? MODELS_DIR);
  const protocol = PROTOCOLS[opts.protocol];
  const template = protocol.template(records, { model: opts.model, version: opts.modelVersion, runId });

  mkdirSync(opts.reportsDir, { recursive: true });
  const base = join(opts.reportsDir, `${stamp}-${opts.slug}`);
  const files = {
    json: `${base}.json`,
    html: `${base}.html`,
    // Kept beside the reports: ghz's report omits data given by file, and the
    // printed ghz command refers to it, so the run can be repeated by hand.
    request: `${base}.request.tmpl`,
  };
  const dataFile = files.request;
  writeFileSync(dataFile, template.data);

  const run: GhzRun = {
    host: opts.host,
    call: protocol.call,
    insecure: opts.insecure,
    ...(opts.cacert ? { cacert: opts.cacert } : {}),
    ...(opts.reflection ? {} : { proto: { file: protocol.proto, importPaths: [PROTO_IMPORT_PATH] } }),
    dataFile,
    metadata: template.metadata,
    ...(opts.mode.kind === 'rate'
      ? { rps: opts.mode.rps, concurrency: opts.mode.workers }
      : { concurrency: opts.mode.concurrency }),
    connections: opts.connections,
    durationMs: opts.durationMs,
    timeoutMs: opts.timeoutMs,
    connectTimeoutMs: 5000,
    outputFile: files.json,
    name: `loadtest ${opts.target}`,
    tags: {
      target: opts.target,
      protocol: opts.protocol,
      model: opts.model,
      payload: opts.payload.kind,
      runId,
    },
  };
  const args = opts.generator === 'ghz' ? ghzArgs(run) : [];

  const before: Snapshot | undefined = opts.metrics.length > 0 ? await snapshot(opts.metrics) : undefined;
  const baseline = before ? predictCalls(before, protocol.method) : 0;
  const live = before !== undefined && before.byEndpoint.size > 0;
  let lastServed = 0;
  let lastElapsedMs = 0;
  let scraping = false;
  const durationS = opts.durationMs / 1000;
  const onTick = (elapsedMs: number) => {
    const head = `[loadtest] ${(elapsedMs / 1000).toFixed(0).padStart(String(Math.ceil(durationS)).length)}s / ${durationS}s`;
    if (!live || scraping) {
      progress(head, false);
      return;
    }
    // A live count of calls the servers answered, from their own counters.
    scraping = true;
    void snapshot([...before.byEndpoint.keys()], 500).then((snap) => {
      scraping = false;
      const served = predictCalls(snap, protocol.method) - baseline;
      const rate = (1000 * Math.max(0, served - lastServed)) / Math.max(1, elapsedMs - lastElapsedMs);
      progress(`${head}  served ${served} (${rate.toFixed(0)}/s)`, false);
      lastServed = served;
      lastElapsedMs = elapsedMs;
    });
  };
  progress(
    `[loadtest] ${opts.generator === 'ghz' ? 'ghz' : 'load generator'} → ${opts.host} (${opts.target}), ${loadText(opts)}, ${durationS}s; reports → ${files.json.replace(/\.json$/, '.{json,html}')}`,
    true,
  );
  const tickMs = process.stderr.isTTY || deps.progress ? 1000 : 5000;
  let report: GhzReport;
  if (opts.generator === 'ghz') {
    await spawnGhz(args, {
      ...(deps.ghzBin ? { bin: deps.ghzBin } : {}),
      onTick,
      tickMs,
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
    progress('[loadtest] ghz done', true);
    report = await readGhzReport(files.json);
  } else {
    report = await runNodeGenerator(opts, records, runId, now, { onTick, tickMs, signal: deps.signal });
    writeFileSync(files.json, JSON.stringify(report));
    progress('[loadtest] load generator done', true);
  }

  const summary = summarize(report);
  const verdicts = checkSlo(summary, opts.slo);
  let split: LoadtestResult['split'];
  if (!before) {
    split = {
      unavailable: 'not observed: no metrics endpoints (pass --metrics HOST:PORT[,HOST:PORT])',
    };
  } else {
    const after = await snapshot(opts.metrics);
    const s = abSplit(before, after);
    split =
      s.endpoints.length > 0
        ? s
        : {
            unavailable: `metrics not reachable (${Object.entries(s.unreachable)
              .map(([ep, why]) => `${ep}: ${why}`)
              .join('; ')})`,
          };
  }
  const result: LoadtestResult = {
    title: `Load test of ${opts.target}${opts.protocol === 'oip' ? ' (Open Inference Protocol, ModelInfer)' : ''}`,
    target: opts.target,
    host: opts.host,
    load: loadText(opts),
    durationMs: opts.durationMs,
    payload: `${payloadText}; model ${opts.model}${opts.modelVersion ? `@${opts.modelVersion}` : ''}; userId = x-user-id = ${SEED_RECORD.userId} + call number`,
    report,
    summary,
    verdicts,
    split,
    ...(opts.mode.kind === 'rate' ? { requestedRps: opts.mode.rps } : {}),
    generator: opts.generator,
  };
  writeFileSync(files.html, renderHtml(result));
  return { result, ok: passed(verdicts), files, ghzArgs: args };
}

/**
 * The project's own generator (h2-generator.ts) on the same calls ghz's
 * templates describe: call n sends `records[n mod records.length]` with
 * userId and `x-user-id` `USER_ID_BASE + n` and `x-request-id` `<runId>-<n>`.
 */
async function runNodeGenerator(
  opts: LoadtestOptions,
  records: readonly PayloadRecord[],
  runId: string,
  now: () => Date,
  o: { onTick: (elapsedMs: number) => void; tickMs: number; signal: AbortSignal | undefined },
): Promise<GhzReport> {
  const request = (n: number): H2Request => {
    const record = (records[n % records.length] as PayloadRecord).record;
    const user = USER_ID_BASE + n;
    const body = PredictRequest.encode({
      model: opts.model,
      version: opts.modelVersion,
      requestId: '',
      instances: [{ ...record, userId: user }],
    }).finish();
    return {
      body: grpcFrame(body),
      headers: { [USER_ID_HEADER]: String(user), [REQUEST_ID_HEADER]: `${runId}-${n}` },
    };
  };
  const workers = opts.mode.kind === 'rate' ? opts.mode.workers : opts.mode.concurrency;
  const options = {
    generator: 'node:http2 (scripts/lib/load/h2-generator.ts)',
    host: opts.host,
    call: PREDICT_CALL,
    tls: !opts.insecure,
    ...(opts.cacert ? { cacert: opts.cacert } : {}),
    concurrency: workers,
    ...(opts.mode.kind === 'rate' ? { rps: opts.mode.rps } : {}),
    connections: opts.connections,
    durationMs: opts.durationMs,
    timeoutMs: opts.timeoutMs,
    metadata: { [USER_ID_HEADER]: `${USER_ID_BASE} + n`, [REQUEST_ID_HEADER]: `${runId}-<n>` },
  };
  const date = now().toISOString();
  const { calls, totalMs, aborted, schedule } = await generate({
    origin: `${opts.insecure ? 'http' : 'https'}://${opts.host}`,
    ...(opts.cacert ? { ca: readFileSync(opts.cacert) } : {}),
    path: `/${PREDICT_CALL}`,
    request,
    armOf: (message) => PredictResponse.decode(message).arm,
    concurrency: workers,
    ...(opts.mode.kind === 'rate' ? { rps: opts.mode.rps } : {}),
    connections: opts.connections,
    durationMs: opts.durationMs,
    timeoutMs: opts.timeoutMs,
    ...(o.signal ? { signal: o.signal } : {}),
    onTick: o.onTick,
    tickMs: o.tickMs,
  });
  return toGhzReport(calls, totalMs, {
    date,
    name: `loadtest ${opts.target}`,
    options,
    endReason: aborted ? 'cancel' : 'timeout',
    ...(schedule ? { schedule } : {}),
  });
}
