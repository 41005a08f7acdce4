/**
 * `npm run loadtest`: drives Predict with ghz against Envoy, one server or any
 * HOST:PORT, shows progress, prints QPS, latency percentiles, errors by gRPC
 * status and the observed A/B split, writes JSON and HTML reports, and exits
 * non-zero naming the SLO that was missed. Options: `npm run loadtest -- --help`.
 *
 * `runLoadtest` does the work and is what tests call; `main` (bottom) is the
 * only part that touches argv, signals and the exit code.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runIfMain } from './cli-main.js';
import {
  checkSlo,
  GhzError,
  type GhzRun,
  ghzArgs,
  PROJECT_ROOT,
  readGhzReport,
  spawnGhz,
  summarize,
} from './ghz.js';
import { abSplit, predictCalls, type Snapshot, snapshot } from './load-metrics.js';
import { type LoadtestOptions, parseLoadtestArgs, USAGE, UsageError } from './load-options.js';
import { formatSummary, type LoadtestResult, passed, renderHtml } from './load-report.js';
import {
  mixedRecords,
  type PayloadRecord,
  predictTemplate,
  recordsFromFile,
  SEED_RECORD,
} from './load-request.js';

export const PREDICT_CALL = 'inference.v1.InferenceService/Predict';
export const PROTO_FILE = join(PROJECT_ROOT, 'proto', 'inference', 'v1', 'inference.proto');
export const PROTO_IMPORT_PATH = join(PROJECT_ROOT, 'proto');

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
  /** The ghz argv, for the record. */
  readonly ghzArgs: readonly string[];
}

/** `20261124T042428Z`, the same shape as model versions. */
export function timestamp(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
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
  const stamp = timestamp(now());
  const runId = `loadtest-${stamp}`;
  const { records, text: payloadText } = payloadRecords(opts, deps.modelRoot ?? join(PROJECT_ROOT, 'models'));
  const template = predictTemplate(records, { model: opts.model, version: opts.modelVersion, runId });

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
    call: PREDICT_CALL,
    insecure: opts.insecure,
    ...(opts.cacert ? { cacert: opts.cacert } : {}),
    ...(opts.reflection ? {} : { proto: { file: PROTO_FILE, importPaths: [PROTO_IMPORT_PATH] } }),
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
    tags: { target: opts.target, model: opts.model, payload: opts.payload.kind, runId },
  };
  const args = ghzArgs(run);

  const before: Snapshot | undefined = opts.metrics.length > 0 ? await snapshot(opts.metrics) : undefined;
  const baseline = before ? predictCalls(before) : 0;
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
      const served = predictCalls(snap) - baseline;
      const rate = (1000 * Math.max(0, served - lastServed)) / Math.max(1, elapsedMs - lastElapsedMs);
      progress(`${head}  served ${served} (${rate.toFixed(0)}/s)`, false);
      lastServed = served;
      lastElapsedMs = elapsedMs;
    });
  };
  progress(
    `[loadtest] ghz → ${opts.host} (${opts.target}), ${loadText(opts)}, ${durationS}s; reports → ${files.json.replace(/\.json$/, '.{json,html}')}`,
    true,
  );
  await spawnGhz(args, {
    ...(deps.ghzBin ? { bin: deps.ghzBin } : {}),
    onTick,
    tickMs: process.stderr.isTTY || deps.progress ? 1000 : 5000,
    ...(deps.signal ? { signal: deps.signal } : {}),
  });
  progress('[loadtest] ghz done', true);

  const report = await readGhzReport(files.json);
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
    title: `Load test of ${opts.target}`,
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
  };
  writeFileSync(files.html, renderHtml(result));
  return { result, ok: passed(verdicts), files, ghzArgs: args };
}

/** The shell-quoted ghz command, so a run can be repeated by hand. */
function shellQuote(args: readonly string[]): string {
  return args.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  let opts: LoadtestOptions;
  try {
    opts = parseLoadtestArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`loadtest: ${err.message}\nSee: npm run loadtest -- --help\n`);
      return 2;
    }
    throw err;
  }
  // Ctrl-C reaches ghz too (same process group): it stops and still writes its
  // report, so wait for it and summarise what ran. A second Ctrl-C quits.
  const controller = new AbortController();
  let interrupts = 0;
  process.on('SIGINT', () => {
    if (++interrupts > 1) process.exit(130);
    process.stderr.write(
      '\n[loadtest] interrupted: stopping ghz, summarising what ran (Ctrl-C again to quit)\n',
    );
    controller.abort();
  });
  let outcome: LoadtestOutcome;
  try {
    outcome = await runLoadtest(opts, { signal: controller.signal });
  } catch (err) {
    if (err instanceof GhzError || (err as NodeJS.ErrnoException).code === 'ENOENT') {
      process.stderr.write(`loadtest: ${(err as Error).message}\n`);
      return 3;
    }
    throw err;
  }
  process.stdout.write(`\n${formatSummary(outcome.result)}\n\n`);
  process.stdout.write(`Reports: ${outcome.files.json}\n         ${outcome.files.html}\n`);
  process.stdout.write(`ghz:     ghz ${shellQuote(outcome.ghzArgs)}\n`);
  if (!outcome.ok) {
    const failed = outcome.result.verdicts.filter((v) => !v.ok);
    process.stdout.write(`\nSLO missed: ${failed.map((v) => `${v.name} (${v.detail})`).join('; ')}\n`);
    return 1;
  }
  process.stdout.write('\nSLOs met.\n');
  return 0;
}

runIfMain(import.meta.url, 'loadtest', main);
