import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { VERSION_PATTERN } from './model-manifest.js';
import { LABEL_NAME } from './version-labels.js';

/** The serving arm of this process: the old algorithm or the new model. */
export type Role = 'stable' | 'canary';

/** Log level names, as pino spells them. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

/** Dynamic micro-batching for one model (off unless `maxBatchSize` > 1). */
export interface BatchingConfig {
  readonly maxBatchSize: number;
  readonly maxQueueDelayMs: number;
}

/** The whole server configuration: parsed once, validated, frozen. */
export interface Config {
  readonly host: string;
  readonly port: number;
  readonly metricsHost: string;
  readonly metricsPort: number;
  readonly modelRoot: string;
  /** The version label this server serves from each model's labels.json (default: its role). */
  readonly versionLabel: string;
  /** `latest`, or pins: model name to version. Unpinned models serve their latest. */
  readonly versionPolicy: { readonly pins: Readonly<Record<string, string>> };
  /** How many of the newest valid versions of each model stay loaded. */
  readonly maxLoadedVersions: number;
  readonly modelPollMs: number;
  /** Largest model.json, golden.json and model.onnx a version may have; refused before reading. */
  readonly modelFileLimits: {
    readonly manifestBytes: number;
    readonly goldenBytes: number;
    readonly onnxBytes: number;
  };
  readonly maxBatchInstances: number;
  /** Outcomes per RecordOutcomes call. */
  readonly maxOutcomesPerRequest: number;
  readonly maxMessageBytes: number;
  readonly maxInFlight: number;
  /** HTTP/2 streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxConcurrentStreams: number;
  /** Open client connections; more are refused at accept. */
  readonly maxConnections: number;
  /** A connection that has not sent its HTTP/2 preface and SETTINGS by then is closed. */
  readonly handshakeTimeoutMs: number;
  /** A connection without streams for this long is closed (GOAWAY). */
  readonly maxConnectionIdleMs: number;
  /** Connections are asked to reconnect (GOAWAY) after this long, then given the grace below. */
  readonly maxConnectionAgeMs: number;
  readonly maxConnectionAgeGraceMs: number;
  /** A request (a unary body, or one streamed message) must arrive whole within this. */
  readonly requestBodyTimeoutMs: number;
  /** Bytes of requests still arriving, over all connections, before new bytes are refused. */
  readonly maxPendingRequestBytes: number;
  readonly drainMs: number;
  readonly shutdownGraceMs: number;
  readonly role: Role;
  readonly experiment: {
    readonly name: string;
    readonly salt: string;
    /** Share of the canary's positives assigned to `experiment` (0..1). */
    readonly share: number;
  };
  readonly log: {
    readonly level: LogLevel;
    /** Directory for rotated files; empty disables file logging. */
    readonly dir: string;
    readonly archiveDir: string;
    /** `daily`, `hourly`, or a period in milliseconds. */
    readonly rotate: 'daily' | 'hourly' | number;
    readonly retainDays: number;
    /** Days an archived file is kept; 0 keeps archives forever. */
    readonly archiveRetainDays: number;
    readonly archiveIntervalMs: number;
    readonly stdout: boolean;
    /** Instance fields replaced by "[redacted]" in logged inputs. */
    readonly redactFields: readonly string[];
    /** Log each Predict's raw records (`inputs`), with `redactFields` masked. */
    readonly inputs: boolean;
    /** User ids in logs: keyed pseudonyms (default) or raw. */
    readonly userIds: 'pseudonym' | 'raw';
    /** The HMAC key of the pseudonyms; every replica of both arms must share it for the readout to join. */
    readonly pseudonymKey: string;
    /** True when `pseudonymKey` is the built-in development key (a warning at start-up). */
    readonly pseudonymKeyIsDefault: boolean;
    /** A longer line is replaced by a short notice naming its request id and size. */
    readonly maxLineBytes: number;
    /** Logged string values of `inputs` are cut to this many characters. */
    readonly maxFieldChars: number;
    /** Bytes a destination may hold unwritten (a slow or stuck disk) before it drops lines. */
    readonly bufferBytes: number;
    /** The final flush before exit waits at most this long. */
    readonly flushTimeoutMs: number;
  };
  readonly batching: Readonly<Record<string, BatchingConfig>>;
  /** ONNX Runtime threads per inference. */
  readonly intraOpThreads: number;
  /** 0 runs inference on the event loop; N > 0 on N worker threads per loaded version. */
  readonly inferenceWorkers: number;
}

/** A start-up configuration error: one sentence naming the variable. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Source = Record<string, string | undefined>;

/** The variables, their defaults and meaning; the README's config table mirrors this. */
export const CONFIG_DEFAULTS = {
  GRPC_HOST: '127.0.0.1',
  GRPC_PORT: '50051',
  METRICS_HOST: '127.0.0.1',
  METRICS_PORT: '9464',
  MODEL_ROOT: 'models',
  MODEL_VERSION_POLICY: 'latest',
  MODEL_VERSION_LABEL: '',
  MODEL_MAX_LOADED_VERSIONS: '2',
  MODEL_POLL_MS: '2000',
  MODEL_MAX_MANIFEST_BYTES: String(1024 * 1024),
  MODEL_MAX_GOLDEN_BYTES: String(16 * 1024 * 1024),
  MODEL_MAX_ONNX_BYTES: String(1024 * 1024 * 1024),
  MAX_BATCH_INSTANCES: '256',
  MAX_OUTCOMES_PER_REQUEST: '1000',
  MAX_MESSAGE_BYTES: String(4 * 1024 * 1024),
  MAX_IN_FLIGHT: '1024',
  GRPC_MAX_CONCURRENT_STREAMS: '100',
  GRPC_MAX_CONNECTIONS: '1000',
  GRPC_HANDSHAKE_TIMEOUT_MS: '10000',
  GRPC_MAX_CONNECTION_IDLE_MS: String(5 * 60 * 1000),
  GRPC_MAX_CONNECTION_AGE_MS: String(30 * 60 * 1000),
  GRPC_MAX_CONNECTION_AGE_GRACE_MS: '30000',
  REQUEST_BODY_TIMEOUT_MS: '10000',
  MAX_PENDING_REQUEST_BYTES: String(32 * 1024 * 1024),
  DRAIN_MS: '5000',
  SHUTDOWN_GRACE_MS: '10000',
  ROLE: 'stable',
  EXPERIMENT_NAME: 'positives-v1',
  EXPERIMENT_SALT: 'ab-salt-1',
  EXPERIMENT_SHARE: '0.5',
  LOG_LEVEL: 'info',
  LOG_DIR: 'logs',
  LOG_ARCHIVE_DIR: '',
  LOG_ROTATE: 'daily',
  LOG_RETAIN_DAYS: '3',
  LOG_ARCHIVE_RETAIN_DAYS: '0',
  LOG_ARCHIVE_INTERVAL_MS: String(60 * 60 * 1000),
  LOG_STDOUT: 'true',
  LOG_REDACT_FIELDS: 'userId,birthday,deviceName',
  LOG_INPUTS: 'true',
  LOG_USER_IDS: 'pseudonym',
  LOG_PSEUDONYM_KEY: '',
  LOG_MAX_LINE_BYTES: String(256 * 1024),
  LOG_MAX_FIELD_CHARS: '256',
  LOG_BUFFER_BYTES: String(16 * 1024 * 1024),
  LOG_FLUSH_TIMEOUT_MS: '2000',
  // Zero-delay coalescing for every model (see batcher.ts): chosen by `npm run bench` (README, Benchmarks).
  MODEL_BATCHING: '*=64/0ms',
  ORT_INTRA_OP_THREADS: '1',
  INFERENCE_WORKERS: '0',
} as const;

/**
 * The pseudonym key when `LOG_PSEUDONYM_KEY` is unset: fine on a laptop,
 * public in production (anyone can recompute the tokens), hence the warning.
 */
export const DEV_PSEUDONYM_KEY = 'onnx-grpc-serving-development-key';

/** The variable names the server reads. */
export type ConfigKey = keyof typeof CONFIG_DEFAULTS;

function int(src: Source, key: ConfigKey, min: number, max: number): number {
  const raw = src[key] ?? CONFIG_DEFAULTS[key];
  const n = Number(raw);
  if (!/^-?\d+$/.test(raw.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new ConfigError(`${key} must be an integer from ${min} to ${max}, got "${raw}".`);
  }
  return n;
}

function num(src: Source, key: ConfigKey, min: number, max: number): number {
  const raw = src[key] ?? CONFIG_DEFAULTS[key];
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max) {
    throw new ConfigError(`${key} must be a number from ${min} to ${max}, got "${raw}".`);
  }
  return n;
}

function str(src: Source, key: ConfigKey): string {
  return (src[key] ?? CONFIG_DEFAULTS[key]).trim();
}

function nonEmpty(src: Source, key: ConfigKey): string {
  const raw = str(src, key);
  if (raw === '') throw new ConfigError(`${key} must not be empty.`);
  return raw;
}

function bool(src: Source, key: ConfigKey): boolean {
  const raw = str(src, key).toLowerCase();
  if (['true', '1', 'yes'].includes(raw)) return true;
  if (['false', '0', 'no'].includes(raw)) return false;
  throw new ConfigError(`${key} must be true or false, got "${raw}".`);
}

function oneOf<T extends string>(src: Source, key: ConfigKey, allowed: readonly T[]): T {
  const raw = str(src, key);
  if (!(allowed as readonly string[]).includes(raw)) {
    throw new ConfigError(`${key} must be one of ${allowed.join(', ')}, got "${raw}".`);
  }
  return raw as T;
}

function label(src: Source, key: ConfigKey): string {
  const raw = str(src, key);
  if (raw !== '' && !LABEL_NAME.test(raw)) {
    throw new ConfigError(
      `${key} must be a label name (lower-case letters, digits, "_" or "-"), got "${raw}".`,
    );
  }
  return raw;
}

function host(src: Source, key: ConfigKey): string {
  const raw = str(src, key);
  if (!/^(?:[A-Za-z0-9._-]+|\[?[0-9A-Fa-f:.]+\]?)$/.test(raw)) {
    throw new ConfigError(`${key} must be a host name or an IPv4/IPv6 address, got "${raw}".`);
  }
  return raw.replace(/^\[(.*)\]$/, '$1');
}

function dir(src: Source, key: ConfigKey, base: string): string {
  const raw = str(src, key);
  return raw === '' ? '' : isAbsolute(raw) ? raw : resolve(base, raw);
}

function parsePolicy(raw: string): Record<string, string> {
  if (raw === 'latest') return {};
  const pins: Record<string, string> = {};
  for (const part of raw.split(',')) {
    const m = /^\s*([A-Za-z0-9_.-]+)=(\S+)\s*$/.exec(part);
    if (!m?.[1] || !m[2] || !VERSION_PATTERN.test(m[2])) {
      throw new ConfigError(
        `MODEL_VERSION_POLICY must be "latest" or comma-separated model=YYYYMMDDTHHMMSSZ pins, got "${raw}".`,
      );
    }
    if (m[1] in pins) throw new ConfigError(`MODEL_VERSION_POLICY pins model "${m[1]}" twice.`);
    pins[m[1]] = m[2];
  }
  return pins;
}

/** The MODEL_BATCHING entry that applies to every model without one of its own. */
export const EVERY_MODEL = '*';

/** The batching of model `name`: its own MODEL_BATCHING entry, else the `*` entry, else off. */
export function batchingFor(
  batching: Readonly<Record<string, BatchingConfig>>,
  name: string,
): BatchingConfig | undefined {
  return Object.hasOwn(batching, name) ? batching[name] : batching[EVERY_MODEL];
}

function parseBatching(raw: string): Record<string, BatchingConfig> {
  const out: Record<string, BatchingConfig> = {};
  if (raw.trim() === '' || raw.trim() === 'off') return out;
  for (const part of raw.split(',')) {
    const m = /^\s*([A-Za-z0-9_.-]+|\*)=(\d+)\/(\d+(?:\.\d+)?)ms\s*$/.exec(part);
    const size = Number(m?.[2]);
    const delay = Number(m?.[3]);
    if (!m?.[1] || size < 2 || size > 4096 || delay > 1000) {
      throw new ConfigError(
        `MODEL_BATCHING must be off or comma-separated model=<maxBatchSize>/<maxQueueDelay>ms entries (model * for every other model; size 2-4096, delay ≤ 1000 ms), got "${raw}".`,
      );
    }
    if (m[1] in out) throw new ConfigError(`MODEL_BATCHING configures model "${m[1]}" twice.`);
    out[m[1]] = { maxBatchSize: size, maxQueueDelayMs: delay };
  }
  return out;
}

function parseRotate(raw: string): 'daily' | 'hourly' | number {
  if (raw === 'daily' || raw === 'hourly') return raw;
  const n = Number(raw);
  if (/^\d+$/.test(raw) && n >= 100) return n;
  throw new ConfigError(`LOG_ROTATE must be daily, hourly or a period in milliseconds ≥ 100, got "${raw}".`);
}

/**
 * Reads an optional JSON config file (`CONFIG_FILE`): an object of the same
 * variable names with string, number or boolean values. Environment variables
 * win over the file.
 */
function readFileSource(path: string | undefined, cwd: string): Source {
  if (!path) return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(resolve(cwd, path), 'utf8'));
  } catch (err) {
    throw new ConfigError(`CONFIG_FILE "${path}" could not be read as JSON: ${(err as Error).message}.`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`CONFIG_FILE "${path}" must hold a JSON object of variable names.`);
  }
  const out: Source = {};
  for (const [k, v] of Object.entries(parsed)) {
    if (!(k in CONFIG_DEFAULTS))
      throw new ConfigError(`CONFIG_FILE "${path}" names an unknown variable ${k}.`);
    if (!['string', 'number', 'boolean'].includes(typeof v)) {
      throw new ConfigError(`CONFIG_FILE "${path}": ${k} must be a string, number or boolean.`);
    }
    out[k] = String(v);
  }
  return out;
}

/**
 * Builds the configuration from environment variables, over an optional JSON
 * file named by `CONFIG_FILE`, over the defaults. Throws `ConfigError` with one
 * sentence naming the variable at the first bad value.
 */
export function loadConfig(env: Source, cwd: string = process.cwd()): Config {
  const src: Source = { ...readFileSource(env.CONFIG_FILE, cwd) };
  for (const key of Object.keys(CONFIG_DEFAULTS)) {
    if (env[key] !== undefined) src[key] = env[key];
  }
  const logDir = dir(src, 'LOG_DIR', cwd);
  const archiveDir = dir(src, 'LOG_ARCHIVE_DIR', cwd) || (logDir ? resolve(logDir, 'archive') : '');
  const config: Config = {
    host: host(src, 'GRPC_HOST'),
    port: int(src, 'GRPC_PORT', 0, 65535),
    metricsHost: host(src, 'METRICS_HOST'),
    metricsPort: int(src, 'METRICS_PORT', 0, 65535),
    modelRoot: dir(src, 'MODEL_ROOT', cwd),
    versionLabel: label(src, 'MODEL_VERSION_LABEL') || oneOf(src, 'ROLE', ['stable', 'canary'] as const),
    versionPolicy: { pins: Object.freeze(parsePolicy(str(src, 'MODEL_VERSION_POLICY'))) },
    maxLoadedVersions: int(src, 'MODEL_MAX_LOADED_VERSIONS', 1, 100),
    modelPollMs: int(src, 'MODEL_POLL_MS', 50, 3_600_000),
    modelFileLimits: {
      manifestBytes: int(src, 'MODEL_MAX_MANIFEST_BYTES', 1024, 256 * 1024 * 1024),
      goldenBytes: int(src, 'MODEL_MAX_GOLDEN_BYTES', 1024, 1024 * 1024 * 1024),
      // A Buffer holds at most 2^31 − 1 bytes here, and ONNX's protobuf format tops out at 2 GB.
      onnxBytes: int(src, 'MODEL_MAX_ONNX_BYTES', 1024, 2 ** 31 - 1),
    },
    maxBatchInstances: int(src, 'MAX_BATCH_INSTANCES', 1, 65536),
    maxOutcomesPerRequest: int(src, 'MAX_OUTCOMES_PER_REQUEST', 1, 100_000),
    maxMessageBytes: int(src, 'MAX_MESSAGE_BYTES', 1024, 1024 * 1024 * 1024),
    maxInFlight: int(src, 'MAX_IN_FLIGHT', 1, 1_000_000),
    maxConcurrentStreams: int(src, 'GRPC_MAX_CONCURRENT_STREAMS', 1, 1_000_000),
    maxConnections: int(src, 'GRPC_MAX_CONNECTIONS', 1, 1_000_000),
    handshakeTimeoutMs: int(src, 'GRPC_HANDSHAKE_TIMEOUT_MS', 100, 600_000),
    maxConnectionIdleMs: int(src, 'GRPC_MAX_CONNECTION_IDLE_MS', 100, 86_400_000),
    maxConnectionAgeMs: int(src, 'GRPC_MAX_CONNECTION_AGE_MS', 1000, 2_147_483_647),
    maxConnectionAgeGraceMs: int(src, 'GRPC_MAX_CONNECTION_AGE_GRACE_MS', 0, 2_147_483_647),
    requestBodyTimeoutMs: int(src, 'REQUEST_BODY_TIMEOUT_MS', 100, 600_000),
    maxPendingRequestBytes: int(src, 'MAX_PENDING_REQUEST_BYTES', 1024 * 1024, 64 * 1024 * 1024 * 1024),
    drainMs: int(src, 'DRAIN_MS', 0, 600_000),
    shutdownGraceMs: int(src, 'SHUTDOWN_GRACE_MS', 0, 600_000),
    role: oneOf(src, 'ROLE', ['stable', 'canary'] as const),
    experiment: {
      name: nonEmpty(src, 'EXPERIMENT_NAME'),
      salt: str(src, 'EXPERIMENT_SALT'),
      share: num(src, 'EXPERIMENT_SHARE', 0, 1),
    },
    log: {
      level: oneOf(src, 'LOG_LEVEL', ['debug', 'info', 'warn', 'error'] as const),
      dir: logDir,
      archiveDir,
      rotate: parseRotate(str(src, 'LOG_ROTATE')),
      retainDays: num(src, 'LOG_RETAIN_DAYS', 0.0001, 3650),
      archiveRetainDays: num(src, 'LOG_ARCHIVE_RETAIN_DAYS', 0, 36500),
      archiveIntervalMs: int(src, 'LOG_ARCHIVE_INTERVAL_MS', 10, 86_400_000),
      stdout: bool(src, 'LOG_STDOUT'),
      redactFields: Object.freeze(
        str(src, 'LOG_REDACT_FIELDS')
          .split(',')
          .map((s) => s.trim())
          .filter((s) => s !== ''),
      ),
      inputs: bool(src, 'LOG_INPUTS'),
      userIds: oneOf(src, 'LOG_USER_IDS', ['pseudonym', 'raw'] as const),
      pseudonymKey: str(src, 'LOG_PSEUDONYM_KEY') || DEV_PSEUDONYM_KEY,
      pseudonymKeyIsDefault: str(src, 'LOG_PSEUDONYM_KEY') === '',
      maxLineBytes: int(src, 'LOG_MAX_LINE_BYTES', 4096, 64 * 1024 * 1024),
      maxFieldChars: int(src, 'LOG_MAX_FIELD_CHARS', 16, 1024 * 1024),
      bufferBytes: int(src, 'LOG_BUFFER_BYTES', 64 * 1024, 1024 * 1024 * 1024),
      flushTimeoutMs: int(src, 'LOG_FLUSH_TIMEOUT_MS', 0, 60_000),
    },
    batching: Object.freeze(parseBatching(str(src, 'MODEL_BATCHING'))),
    intraOpThreads: int(src, 'ORT_INTRA_OP_THREADS', 1, 64),
    inferenceWorkers: int(src, 'INFERENCE_WORKERS', 0, 64),
  };
  if (config.modelRoot === '') throw new ConfigError('MODEL_ROOT must name the model repository directory.');
  for (const f of config.log.redactFields) {
    if (!/^[A-Za-z_$][\w$]*$/.test(f)) {
      throw new ConfigError(`LOG_REDACT_FIELDS must be comma-separated field names, got "${f}".`);
    }
  }
  return deepFreeze(config);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
