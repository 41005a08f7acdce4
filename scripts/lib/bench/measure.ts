/**
 * One load phase against one target, with progress: ghz for gRPC targets
 * (the project's typed wrapper, scripts/lib/load/ghz.ts), hey for the Flask baseline
 * (the same record as JSON). Each phase also records the CPU time the
 * target's processes and the load generator used, so a report can say where
 * the machine's cores went.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { USER_ID_HEADER } from '../../../server/headers.js';
import { spawnGhz } from '../load/ghz.js';
import { type GhzRun, ghzArgs } from '../load/ghz-args.js';
import { readGhzReport } from '../load/ghz-report.js';
import { modelInferInputs, modelInferRaw, SEED_RECORD, USER_ID_BASE } from '../load/payload.js';
import {
  MODEL_INFER_CALL,
  OIP_PROTO_FILE,
  PREDICT_CALL,
  PROTO_FILE,
  PROTO_IMPORT_PATH,
} from '../load/run.js';
import { summarize } from '../load/summary.js';
import { runTool, type ToolRunOptions } from '../tool-process.js';
import { H2LOAD_BIN, type H2loadRun, h2loadArgs, predictBody, readH2loadLog } from './h2load.js';
import { errorKinds, heyArgs, runHey } from './hey.js';
import { cpuTimesMs, threadCpuMs } from './process-stats.js';
import { grpcErrorsBetween } from './scrape.js';
import type { Measurement } from './verdicts.js';

/** How hard to push: closed loop (`rps` omitted) or paced. */
export interface Load {
  readonly concurrency: number;
  readonly rps?: number;
  readonly durationMs: number;
}

export type Progress = (line: string) => void;

/** A process whose CPU time a phase records. */
export interface Watched {
  readonly name: string;
  readonly pid: number;
  /** Also record its main thread's share, in the measurement's `mainThreadMs` (bench:compare). */
  readonly threads?: boolean;
}

/** The key under which a phase records its load generator's CPU time. */
export const GENERATOR = 'load generator';

const load1 = () => loadavg()[0] ?? 0;

export function describeLoad(load: Load): string {
  return load.rps === undefined
    ? `closed loop c=${load.concurrency}`
    : `${load.rps}/s (c=${load.concurrency})`;
}

function ticker(progress: Progress, label: string, durationMs: number) {
  return (elapsedMs: number) =>
    progress(
      `  ${label}: ${Math.floor(Math.min(elapsedMs, durationMs) / 1000)}s / ${durationMs / 1000}s (load ${load1().toFixed(2)})`,
    );
}

/**
 * CPU time used between `start()` and the returned function's call, per
 * watched process, plus the load generator: the children this process has
 * reaped meanwhile (cutime + cstime of /proc/self/stat), which is the ghz or
 * hey run that just exited. A process watched with `threads` is read as one
 * split snapshot (main thread and the rest) each time, and its main thread's
 * time is also given apart.
 */
function cpuMeter(
  watch: readonly Watched[],
): () => { cpuMs: Record<string, number>; mainThreadMs: Record<string, number> } {
  const self = () => cpuTimesMs(process.pid)?.children ?? 0;
  const read = (w: Watched) => {
    if (!w.threads) {
      const t = cpuTimesMs(w.pid);
      return t && { total: t.self, main: undefined };
    }
    const t = threadCpuMs(w.pid);
    return t && { total: t.main + t.other, main: t.main };
  };
  const before = new Map(watch.map((w) => [w.name, read(w)]));
  const generatorBefore = self();
  return () => {
    const cpuMs: Record<string, number> = {};
    const mainThreadMs: Record<string, number> = {};
    for (const w of watch) {
      const now = read(w);
      const then = before.get(w.name);
      if (!now) continue;
      cpuMs[w.name] = now.total - (then?.total ?? 0);
      if (now.main !== undefined) mainThreadMs[w.name] = now.main - (then?.main ?? 0);
    }
    cpuMs[GENERATOR] = self() - generatorBefore;
    return { cpuMs, mainThreadMs };
  };
}

/** Distinct users a ghz run cycles through (call n is user `USER_ID_BASE + n mod USERS`). */
export const USERS = 1000;

/**
 * The ghz request data for `model`: a JSON array of `USERS` Predict requests,
 * the seed's sample record with userId `USER_ID_BASE + i`, and the metadata
 * template giving call n the matching `x-user-id`. ghz sends element
 * `n mod USERS` on call n and, as the array holds no template actions,
 * converts each element to protobuf once and caches it. A body template (as
 * `npm run loadtest` uses) is executed and parsed from JSON on every call,
 * which costs ghz about a quarter more CPU on a machine where it shares two
 * cores with the servers it measures.
 */
export function predictArray(
  model: string,
  users = USERS,
): { data: string; metadata: Record<string, string> } {
  const requests = Array.from({ length: users }, (_, i) => ({
    model,
    version: '',
    instances: [{ ...SEED_RECORD, userId: USER_ID_BASE + i }],
  }));
  return {
    data: JSON.stringify(requests),
    metadata: { [USER_ID_HEADER]: `{{add ${USER_ID_BASE} (mod .RequestNumber ${users})}}` },
  };
}

/** How a ModelInfer request carries its tensors: tritonclient's raw bytes, or typed contents (KServe SDK lists). */
export type Encoding = 'raw' | 'typed';

/**
 * The same `USERS` requests as `predictArray`, as Open Inference Protocol
 * ModelInfer requests (scripts/lib/load/payload.ts), for the bench rows that
 * compare the protocols' cost per call.
 */
export function modelInferArray(
  model: string,
  encoding: Encoding,
  users = USERS,
): { data: string; metadata: Record<string, string> } {
  const requests = Array.from({ length: users }, (_, i) => {
    const record = { ...SEED_RECORD, userId: USER_ID_BASE + i };
    return {
      model_name: model,
      model_version: '',
      ...(encoding === 'raw' ? modelInferRaw(record) : { inputs: modelInferInputs(record) }),
    };
  });
  return {
    data: JSON.stringify(requests),
    metadata: { [USER_ID_HEADER]: `{{add ${USER_ID_BASE} (mod .RequestNumber ${users})}}` },
  };
}

/** What one phase puts load on, how hard, and what it watches meanwhile. */
interface PhaseOf {
  readonly target: string;
  readonly load: Load;
  readonly progress: Progress;
  readonly watch?: readonly Watched[];
  readonly signal?: AbortSignal;
}

/** The figures a load generator's own report gives. */
type Figures = Pick<
  Measurement,
  | 'elapsedMs'
  | 'count'
  | 'okCount'
  | 'errorCount'
  | 'okRps'
  | 'p50Ms'
  | 'p90Ms'
  | 'p99Ms'
  | 'maxMs'
  | 'errors'
>;

/**
 * One phase with `tool` against `dest`: `generate` runs the load generator
 * (with progress ticks and the phase's abort signal) while the load average
 * and CPU meters run; `read` then turns what it left into figures, outside
 * the measured window.
 */
async function measuredPhase<T>(
  o: PhaseOf,
  tool: Measurement['tool'],
  dest: string,
  generate: (options: ToolRunOptions) => Promise<T>,
  read: (result: T) => Figures | Promise<Figures>,
): Promise<Measurement> {
  const label = `${o.target} ${describeLoad(o.load)}`;
  o.progress(`  ${label}: ${tool} → ${dest}`);
  const before = load1();
  const cpu = cpuMeter(o.watch ?? []);
  const result = await generate({
    onTick: ticker(o.progress, label, o.load.durationMs),
    tickMs: 5000,
    ...(o.signal ? { signal: o.signal } : {}),
  });
  const { cpuMs, mainThreadMs } = cpu();
  const after = load1();
  const m: Measurement = {
    target: o.target,
    tool,
    mode: o.load.rps === undefined ? 'max' : 'rate',
    concurrency: o.load.concurrency,
    ...(o.load.rps !== undefined ? { requestedRps: o.load.rps } : {}),
    durationMs: o.load.durationMs,
    ...(await read(result)),
    load1: [before, after],
    cpuMs,
    ...(Object.keys(mainThreadMs).length > 0 ? { mainThreadMs } : {}),
  };
  o.progress(`  ${label}: ${summaryLine(m)}`);
  return m;
}

let runCounter = 0;

/** Another server's own contract (a peer, scripts/lib/bench/peers/): its protoset, method and requests. */
export interface GhzContract {
  readonly call: string;
  readonly protoset: string;
  readonly request: { readonly data: string; readonly metadata: Record<string, string> };
}

/**
 * A ghz phase against `host` for `model` (the version the server's policy
 * serves), through Predict or (`oip`) the Open Inference Protocol's
 * ModelInfer with its tensors encoded as `encoding`.
 */
export async function ghzPhase(
  o: PhaseOf & { host: string; model: string; workDir: string; oip?: Encoding; contract?: GhzContract },
): Promise<Measurement> {
  // An interrupted run starts nothing new (an already-aborted signal never fires 'abort').
  if (o.signal?.aborted) throw new Error('interrupted');
  const n = ++runCounter;
  const runId = `bench-${o.target.replace(/\W+/g, '-')}-${n}`;
  const oip = o.oip !== undefined;
  const request = o.contract?.request ?? (o.oip ? modelInferArray(o.model, o.oip) : predictArray(o.model));
  const dataFile = join(o.workDir, `ghz-${n}.data.json`);
  writeFileSync(dataFile, request.data);
  const run: GhzRun = {
    host: o.host,
    insecure: true,
    ...(o.contract
      ? { call: o.contract.call, protoset: o.contract.protoset }
      : {
          call: oip ? MODEL_INFER_CALL : PREDICT_CALL,
          proto: { file: oip ? OIP_PROTO_FILE : PROTO_FILE, importPaths: [PROTO_IMPORT_PATH] },
        }),
    dataFile,
    metadata: request.metadata,
    ...(o.load.rps !== undefined ? { rps: o.load.rps } : {}),
    concurrency: o.load.concurrency,
    connections: 1,
    durationMs: o.load.durationMs,
    timeoutMs: 10_000,
    connectTimeoutMs: 5000,
    outputFile: join(o.workDir, `ghz-${n}.json`),
    name: runId,
  };
  return measuredPhase(
    o,
    'ghz',
    o.host,
    (options) => spawnGhz(ghzArgs(run), options),
    async () => {
      const s = summarize(await readGhzReport(run.outputFile));
      // ghz's report lists every call; a long run's file is tens of MB.
      rmSync(run.outputFile, { force: true });
      rmSync(dataFile, { force: true });
      return {
        elapsedMs: s.totalMs,
        count: s.count,
        okCount: s.okCount,
        errorCount: s.errorCount,
        okRps: s.totalMs > 0 ? s.okCount / (s.totalMs / 1000) : 0,
        p50Ms: s.latencyMs.p50,
        p90Ms: s.latencyMs.p90,
        p99Ms: s.latencyMs.p99,
        maxMs: s.latencyMs.max,
        errors: s.statuses.filter((st) => st.status !== 'OK').map((st) => `${st.status} ×${st.count}`),
      };
    },
  );
}

/**
 * An h2load phase against `host`: the seed record's Predict, pre-encoded, on
 * `clients` connections of `streams` streams each (h2load.ts). The gRPC
 * statuses are the servers' own counts on `metricsPorts` over the phase.
 */
export async function h2loadPhase(
  o: PhaseOf & {
    host: string;
    model: string;
    workDir: string;
    metricsPorts: readonly number[];
    clients: number;
    streams: number;
  },
): Promise<Measurement> {
  if (o.signal?.aborted) throw new Error('interrupted');
  const n = ++runCounter;
  const bodyFile = join(o.workDir, `h2load-${n}.body`);
  writeFileSync(bodyFile, predictBody(o.model));
  const run: H2loadRun = {
    host: o.host,
    bodyFile,
    clients: o.clients,
    streams: o.streams,
    ...(o.load.rps !== undefined ? { rps: o.load.rps } : {}),
    durationMs: o.load.durationMs,
    logFile: join(o.workDir, `h2load-${n}.log`),
  };
  let grpcErrors: Record<string, number> = {};
  return measuredPhase(
    o,
    'h2load',
    o.host,
    async (options) => {
      grpcErrors = await grpcErrorsBetween(o.metricsPorts, async () => {
        const exit = await runTool(H2LOAD_BIN, h2loadArgs(run), options);
        if (exit.code !== 0) throw new Error(`h2load failed: ${exit.stderr.trim() || exit.stdout.trim()}`);
      });
    },
    () => {
      const c = readH2loadLog(run.logFile);
      rmSync(run.logFile, { force: true });
      rmSync(bodyFile, { force: true });
      // h2load ends a timed run by resetting the streams still in flight, which
      // the servers count as CANCELLED: up to clients × streams of those are
      // the generator stopping, not failed calls.
      const cut = Math.min(grpcErrors.CANCELLED ?? 0, o.clients * o.streams);
      if (cut > 0) {
        const rest = (grpcErrors.CANCELLED ?? 0) - cut;
        const { CANCELLED: _cancelled, ...others } = grpcErrors;
        grpcErrors = rest > 0 ? { ...others, CANCELLED: rest } : others;
      }
      const grpcFailed = Object.values(grpcErrors).reduce((a, x) => a + x, 0);
      const failed = Object.values(c.failures).reduce((a, x) => a + x, 0) + grpcFailed;
      const okCount = c.okCount - grpcFailed;
      return {
        elapsedMs: c.spanMs,
        count: c.count,
        okCount,
        errorCount: failed,
        okRps: c.spanMs > 0 ? okCount / (c.spanMs / 1000) : 0,
        p50Ms: c.p50Ms,
        p90Ms: c.p90Ms,
        p99Ms: c.p99Ms,
        maxMs: c.maxMs,
        errors: [
          ...Object.entries(c.failures).map(([k, x]) => `${k} ×${x}`),
          ...Object.entries(grpcErrors).map(([k, x]) => `${k} ×${x}`),
          ...(cut > 0 ? [`(not counted: ${cut} in flight at the end, cancelled by h2load)`] : []),
        ],
      };
    },
  );
}

/** A hey phase: POST the seed record as JSON to `url`. */
export async function heyPhase(o: PhaseOf & { url: string }): Promise<Measurement> {
  if (o.signal?.aborted) throw new Error('interrupted');
  return measuredPhase(
    o,
    'hey',
    o.url,
    (options) =>
      runHey(
        heyArgs({
          url: o.url,
          method: 'POST',
          body: JSON.stringify(SEED_RECORD),
          contentType: 'application/json',
          concurrency: o.load.concurrency,
          ...(o.load.rps !== undefined ? { rps: o.load.rps } : {}),
          durationMs: o.load.durationMs,
          timeoutMs: 10_000,
        }),
        options,
      ),
    (s) => {
      const statusErrors = Object.entries(s.statusCodes)
        .filter(([code]) => Number(code) < 200 || Number(code) >= 300)
        .map(([code, n]) => `HTTP ${code} ×${n}`);
      return {
        elapsedMs: s.totalMs,
        count: s.count,
        okCount: s.okCount,
        errorCount: s.errorCount,
        okRps: s.okRps,
        p50Ms: s.latencyMs[50],
        p90Ms: s.latencyMs[90],
        p99Ms: s.latencyMs[99],
        maxMs: s.slowestMs,
        errors: [...statusErrors, ...errorKinds(s).map((e) => `${e.kind} ×${e.count}`)],
      };
    },
  );
}

export function summaryLine(m: Measurement): string {
  const f = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(2));
  return (
    `${Math.round(m.okRps)} ok/s, p50 ${f(m.p50Ms)} ms, p99 ${f(m.p99Ms)} ms, ` +
    `errors ${m.errorCount}/${m.count}${m.errors.length ? ` (${m.errors.slice(0, 3).join('; ')})` : ''}, ` +
    `load ${m.load1[0].toFixed(2)}→${m.load1[1].toFixed(2)}`
  );
}
