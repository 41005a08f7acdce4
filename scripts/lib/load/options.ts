/**
 * `npm run loadtest` options: parsed once from argv into a typed, validated,
 * frozen object. A bad option fails with one sentence naming it.
 */
import { isAbsolute, resolve } from 'node:path';
import { durationOption, intOption, numberOption, parseCommandLine } from '../args.js';
import { UsageError } from '../cli.js';
import { VERSION_PATTERN } from '../versions.js';
import { DEFAULT_SLO, type Slo } from './slo.js';

/** The local stack's named targets (scripts/ops/stack.ts): gRPC address and metrics endpoints. */
const TARGETS = Object.freeze({
  envoy: { host: '127.0.0.1:8080', metrics: ['127.0.0.1:9464', '127.0.0.1:9465'] },
  stable: { host: '127.0.0.1:50051', metrics: ['127.0.0.1:9464'] },
  canary: { host: '127.0.0.1:50052', metrics: ['127.0.0.1:9465'] },
} as const);

type TargetName = keyof typeof TARGETS;

/** The seed notes' 10-million-daily-users tier ("QPS > 500"). */
const DEFAULT_RPS = 500;
const DEFAULT_WORKERS = 50;
const MAX_DURATION_MS = 60 * 60_000;

export type LoadMode =
  /** Open-ish loop: ghz paces calls at `rps`, served by `workers`. */
  | { readonly kind: 'rate'; readonly rps: number; readonly workers: number }
  /** Closed loop: `concurrency` workers, each sending its next call when the last returns. */
  | { readonly kind: 'closed'; readonly concurrency: number };

export type PayloadChoice =
  | { readonly kind: 'seed' }
  | { readonly kind: 'mixed' }
  | { readonly kind: 'file'; readonly path: string };

/** The API a load test drives: `inference.v1` Predict, or the Open Inference Protocol's ModelInfer. */
export type Protocol = 'predict' | 'oip';

/** Who sends the calls: ghz, or the project's own generator (h2-generator.ts), which sees each call's arm. */
export type Generator = 'ghz' | 'node';

export interface LoadtestOptions {
  readonly protocol: Protocol;
  readonly generator: Generator;
  /** `envoy`, `stable`, `canary`, or `host:port` as given. */
  readonly target: string;
  /** host:port ghz dials. */
  readonly host: string;
  /** A short name for report files: the target name, or host-port. */
  readonly slug: string;
  readonly mode: LoadMode;
  readonly durationMs: number;
  readonly timeoutMs: number;
  readonly connections: number;
  readonly model: string;
  /** Empty: the version the server's policy serves. */
  readonly modelVersion: string;
  readonly insecure: boolean;
  readonly cacert: string | undefined;
  /** Use server reflection instead of proto/inference/v1/inference.proto. */
  readonly reflection: boolean;
  readonly payload: PayloadChoice;
  /** host:port or URLs of the servers' /metrics; empty disables the split. */
  readonly metrics: readonly string[];
  readonly slo: Slo;
  readonly reportsDir: string;
  readonly help: boolean;
}

export const USAGE = `Usage: npm run loadtest -- [options]

Drives inference.v1.InferenceService/Predict (or, with --protocol oip, the Open
Inference Protocol's inference.GRPCInferenceService/ModelInfer) and checks the
SLOs; reports latency and errors per A/B arm (Envoy's x-ab-arm header).

  --protocol P            predict (default) or oip: the same records and users either way
  --generator G           node (default for Predict): the project's own HTTP/2 gRPC client,
                          which reads each call's x-ab-arm, so latency and errors are split
                          by arm; or ghz (default for oip and --reflection), whose report
                          has no response headers, so no per-arm figures
  --target T              envoy (127.0.0.1:8080, default), stable (127.0.0.1:50051),
                          canary (127.0.0.1:50052), or HOST:PORT
  --rps N                 fixed rate, calls per second (default ${DEFAULT_RPS})
  --concurrency C         closed loop with C workers when given alone; with --rps,
                          the workers that serve the rate (default ${DEFAULT_WORKERS})
  --duration D            how long to send, e.g. 500ms, 30s, 2m (default 30s, at most 1h)
  --model NAME            model to call (default conversion)
  --model-version V       pin a version (YYYYMMDDTHHMMSSZ); default: the served one
  --payload P             seed (the seed's sample record), mixed (default: the seed record
                          plus the local models' positive golden cases, so the canary's
                          experiment/control split is exercised), or a JSON file holding
                          an array of records; userId and x-user-id vary per call either way
  --insecure              plaintext; the default for loopback targets (the local stack
                          has no TLS). Other hosts default to TLS
  --cacert FILE           TLS with this CA bundle
  --connections N         HTTP/2 connections the generator opens (default 1)
  --timeout D             per-call deadline (default 10s)
  --reflection            ghz: describe the service by server reflection instead of the proto
  --metrics LIST|none     comma-separated HOST:PORT of the servers' /metrics, read before
                          and after for the A/B split (default: from --target; none for
                          HOST:PORT targets)
  --slo-p99-ms MS         p99 must be below MS (default ${DEFAULT_SLO.p99Ms}, the seed notes' RT)
  --slo-max-error-rate R  largest acceptable share of failed calls, 0..1 (default ${DEFAULT_SLO.maxErrorRate})
  --slo-min-rps N         smallest acceptable achieved rate (default: not checked)
  --reports DIR           where <timestamp>-<target>.json and .html go (default reports)
  -h, --help              this text

Exit status: 0 SLOs met, 1 an SLO missed (named in the output), 2 bad options,
3 ghz could not run (not installed, target unreachable).`;

const HOST_PORT_RE = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})$/;

/** Splits and checks `host:port` (IPv6 in brackets). */
function parseHostPort(raw: string, option: string): { host: string; port: number } {
  const m = HOST_PORT_RE.exec(raw.trim());
  const port = Number(m?.[2]);
  if (!m?.[1] || port < 1 || port > 65535) {
    throw new UsageError(
      `${option} must be envoy, stable, canary or HOST:PORT (port 1-65535), got "${raw}".`,
    );
  }
  return { host: m[1], port };
}

/** Loopback hosts: plaintext is the safe default there, since nothing leaves the machine. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || /^127(\.\d{1,3}){3}$/.test(host) || host === '[::1]';
}

/** Resolves a target to the address ghz dials and its default metrics endpoints. */
export function resolveTarget(raw: string): { host: string; slug: string; metrics: readonly string[] } {
  if (Object.hasOwn(TARGETS, raw)) {
    const t = TARGETS[raw as TargetName];
    return { host: t.host, slug: raw, metrics: t.metrics };
  }
  const { host, port } = parseHostPort(raw, '--target');
  return { host: `${host}:${port}`, slug: `${host.replace(/[[\]:]/g, '_')}-${port}`, metrics: [] };
}

function parseMetrics(raw: string): string[] {
  if (raw.trim() === 'none') return [];
  return raw.split(',').map((ep) => {
    const e = ep.trim();
    if (/^https?:\/\/\S+$/.test(e)) return e;
    parseHostPort(e, '--metrics');
    return e;
  });
}

/**
 * Parses `npm run loadtest` arguments. Relative paths resolve against `cwd`
 * (npm runs scripts from the project root).
 */
export function parseLoadtestArgs(argv: readonly string[], cwd: string = process.cwd()): LoadtestOptions {
  const { values } = parseCommandLine(argv, {
    target: { type: 'string', default: 'envoy' },
    protocol: { type: 'string', default: 'predict' },
    generator: { type: 'string' },
    rps: { type: 'string' },
    concurrency: { type: 'string' },
    duration: { type: 'string', default: '30s' },
    model: { type: 'string', default: 'conversion' },
    'model-version': { type: 'string', default: '' },
    payload: { type: 'string', default: 'mixed' },
    insecure: { type: 'boolean', default: false },
    cacert: { type: 'string' },
    connections: { type: 'string', default: '1' },
    timeout: { type: 'string', default: '10s' },
    reflection: { type: 'boolean', default: false },
    metrics: { type: 'string' },
    'slo-p99-ms': { type: 'string' },
    'slo-max-error-rate': { type: 'string' },
    'slo-min-rps': { type: 'string' },
    reports: { type: 'string', default: 'reports' },
  });
  const str = (k: keyof typeof values) => values[k] as string;
  const protocol = str('protocol');
  if (protocol !== 'predict' && protocol !== 'oip') {
    throw new UsageError(`--protocol must be predict or oip, got "${protocol}".`);
  }
  const generatorRaw = values.generator as string | undefined;
  if (generatorRaw !== undefined && generatorRaw !== 'ghz' && generatorRaw !== 'node') {
    throw new UsageError(`--generator must be node or ghz, got "${generatorRaw}".`);
  }
  const reflection = values.reflection as boolean;
  if (generatorRaw === 'node' && (protocol === 'oip' || reflection)) {
    throw new UsageError(
      '--generator node drives Predict from the proto: use --generator ghz for --protocol oip or --reflection.',
    );
  }
  const generator: Generator = generatorRaw ?? (protocol === 'oip' || reflection ? 'ghz' : 'node');
  const target = str('target');
  const { host, slug, metrics: defaultMetrics } = resolveTarget(target);

  const rps = intOption(values.rps, '--rps', 1, 100_000);
  const concurrency = intOption(values.concurrency, '--concurrency', 1, 10_000);
  const mode: LoadMode =
    rps === undefined && concurrency !== undefined
      ? { kind: 'closed', concurrency }
      : { kind: 'rate', rps: rps ?? DEFAULT_RPS, workers: concurrency ?? DEFAULT_WORKERS };

  const durationMs = durationOption(str('duration'), '--duration', 100, MAX_DURATION_MS) as number;
  const timeoutMs = durationOption(str('timeout'), '--timeout', 1, 600_000) as number;

  const model = str('model');
  if (!/^[A-Za-z0-9_.-]+$/.test(model)) {
    throw new UsageError(`--model must be a model name (letters, digits, _ . -), got "${model}".`);
  }
  const modelVersion = str('model-version');
  if (modelVersion !== '' && !VERSION_PATTERN.test(modelVersion)) {
    throw new UsageError(`--model-version must look like 20261124T041754Z, got "${modelVersion}".`);
  }

  const payloadRaw = str('payload');
  const payload: PayloadChoice =
    payloadRaw === 'seed' || payloadRaw === 'mixed'
      ? { kind: payloadRaw }
      : { kind: 'file', path: resolvePath(cwd, payloadRaw) };

  const insecureFlag = values.insecure as boolean;
  const cacert = values.cacert as string | undefined;
  if (insecureFlag && cacert !== undefined) {
    throw new UsageError('--insecure and --cacert contradict each other: pick plaintext or TLS.');
  }
  const dialHost = parseHostPort(host, '--target').host;
  const insecure = insecureFlag || (cacert === undefined && isLoopback(dialHost));

  const slo: Slo = {
    p99Ms: numberOption(str('slo-p99-ms'), '--slo-p99-ms', 0, 600_000, true) ?? DEFAULT_SLO.p99Ms,
    maxErrorRate:
      numberOption(str('slo-max-error-rate'), '--slo-max-error-rate', 0, 1) ?? DEFAULT_SLO.maxErrorRate,
    ...(values['slo-min-rps'] === undefined
      ? {}
      : { minRps: numberOption(str('slo-min-rps'), '--slo-min-rps', 0, 1_000_000, true) as number }),
  };

  return deepFreeze({
    protocol,
    generator,
    target,
    host,
    slug,
    mode,
    durationMs,
    timeoutMs,
    connections: intOption(str('connections'), '--connections', 1, 1000) as number,
    model,
    modelVersion,
    insecure,
    cacert: cacert === undefined ? undefined : resolvePath(cwd, cacert),
    reflection,
    payload,
    metrics: values.metrics === undefined ? defaultMetrics : parseMetrics(str('metrics')),
    slo,
    reportsDir: resolvePath(cwd, str('reports')),
    help: values.help === true,
  });
}

function resolvePath(cwd: string, p: string): string {
  return isAbsolute(p) ? p : resolve(cwd, p);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
