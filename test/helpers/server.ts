/**
 * Test helpers: the real server, in process on port 0 (`startApp`) or as a
 * child process (`spawnServer`, for signals and SIGKILL), plus typed clients.
 */
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Writable } from 'node:stream';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { MODELS_DIR, PROJECT_ROOT } from '../../scripts/lib/paths.js';
import { type LogRecord, type ServerProcess, startServer } from '../../scripts/lib/server-process.js';
import { versionsIn } from '../../scripts/lib/versions.js';
import { waitUntil } from '../../scripts/lib/wait-for.js';
import { type App, createApp, type Ports } from '../../server/app.js';
import { CONFIG_DEFAULTS, type Config, loadConfig } from '../../server/config.js';
import {
  InferenceServiceClient,
  type PredictRequest,
  type PredictResponse,
} from '../../server/generated/inference/v1/inference.js';
import { createStreamLogger } from '../../server/logger.js';
import { LABELS_FILE } from '../../server/version-labels.js';

/** The project root, with a trailing slash. */
export const ROOT = PROJECT_ROOT;
export const DEMO_MODELS = MODELS_DIR;
/** Recorded reports, model versions and other test data. */
export const FIXTURES = join(ROOT, 'test', 'fixtures');

/** The demo model's committed versions, oldest first (stable serves the older, canary the newer). */
export const DEMO_VERSIONS: readonly string[] = Object.freeze(versionsIn(join(DEMO_MODELS, 'conversion')));
export const OLDER = DEMO_VERSIONS[0] as string;
export const NEWER = DEMO_VERSIONS[DEMO_VERSIONS.length - 1] as string;

/** The seed's sample record, exactly as written in the engineering notes. */
export { SEED_RECORD as SAMPLE_RECORD } from '../../scripts/lib/load/payload.js';

/**
 * Copies the demo model repository to a fresh temp dir. Without `labels` the
 * copy has no labels.json, so its servers follow the pin or `latest` policy.
 */
export function copyModels(prefix = 'models-', o: { labels?: boolean } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cpSync(join(DEMO_MODELS, 'conversion'), join(dir, 'conversion'), {
    recursive: true,
    filter: (src) => o.labels === true || basename(src) !== LABELS_FILE,
  });
  return dir;
}

let unlabelled: string | undefined;
/**
 * The demo repository without its labels.json (one copy per test process,
 * removed at exit): what `startApp` serves by default, so a server test sees
 * the pin and `latest` policies; tests of labels use DEMO_MODELS or
 * `copyModels(…, { labels: true })`.
 */
export function unlabelledModels(): string {
  if (unlabelled === undefined) {
    const dir = copyModels('models-unlabelled-');
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    unlabelled = dir;
  }
  return unlabelled;
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** Collects the JSON log lines the app writes. */
export class LogSink extends Writable {
  readonly lines: Record<string, unknown>[] = [];

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim() !== '') this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
    cb();
  }

  /** Log lines whose `msg` equals `msg`. */
  withMsg(msg: string): Record<string, unknown>[] {
    return this.lines.filter((l) => l.msg === msg);
  }
}

export interface TestApp {
  app: App;
  ports: Ports;
  config: Config;
  logs: LogSink;
  registry: Registry;
  client: InferenceServiceClient;
  stop(): Promise<void>;
}

/**
 * Starts the real app in process on 127.0.0.1:0 (gRPC and metrics), with logs
 * captured. `env` overrides config variables; the model root defaults to the
 * demo repository without its labels (`unlabelledModels`) and file logging is
 * off unless LOG_DIR is given.
 */
export async function startApp(env: Record<string, string> = {}, clock?: () => number): Promise<TestApp> {
  const unknown = Object.keys(env).filter((k) => !(k in CONFIG_DEFAULTS));
  if (unknown.length > 0) throw new Error(`startApp: not config variables: ${unknown.join(', ')}`);
  const config = loadConfig({
    GRPC_PORT: '0',
    METRICS_PORT: '0',
    MODEL_ROOT: unlabelledModels(),
    LOG_DIR: '',
    DRAIN_MS: '0',
    SHUTDOWN_GRACE_MS: '2000',
    MODEL_POLL_MS: '100',
    ...env,
  });
  const logs = new LogSink();
  const registry = new Registry();
  const app = createApp(config, {
    logger: createStreamLogger(config.log, logs),
    registry,
    ...(clock ? { clock } : {}),
  });
  const ports = await app.start();
  const client = new InferenceServiceClient(`127.0.0.1:${ports.grpc}`, credentials.createInsecure());
  return {
    app,
    ports,
    config,
    logs,
    registry,
    client,
    async stop() {
      client.close();
      await app.stop();
    },
  };
}

/** Predict as a promise; rejects with the grpc-js ServiceError. */
export function predict(
  client: InferenceServiceClient,
  req: Partial<PredictRequest>,
  metadata?: Metadata,
  deadlineMs = 10_000,
): Promise<PredictResponse> {
  const full: PredictRequest = { model: 'conversion', version: '', requestId: '', instances: [], ...req };
  return new Promise((resolve, reject) => {
    const cb = (err: ServiceError | null, res?: PredictResponse) =>
      err ? reject(err) : resolve(res as PredictResponse);
    const opts = { deadline: Date.now() + deadlineMs };
    if (metadata) client.predict(full, metadata, opts, cb);
    else client.predict(full, opts as never, cb as never);
  });
}

/** Resolves with the error a call failed with; throws if it succeeded. */
export async function expectGrpcError(p: Promise<unknown>): Promise<ServiceError> {
  try {
    await p;
  } catch (err) {
    return err as ServiceError;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

/** Polls `cond` every `intervalMs` until it holds, or fails after `timeoutMs`. */
export function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  intervalMs = 20,
): Promise<void> {
  // A condition that throws fails the test at once, with its own error.
  return waitUntil(what, cond, { timeoutMs, intervalMs, onError: 'throw' });
}

/** A server child process (scripts/lib/server-process.ts). */
export type SpawnedServer = ServerProcess;

/**
 * Runs `node dist/server/main.js` as a child process on loopback with the given
 * env (GRPC_PORT and METRICS_PORT default to 0) and resolves once it logged
 * "server started". Use it where a test needs signals or a real process death.
 * Its JSON log lines land in `lines`, unless `onLine` takes them.
 */
export function spawnServer(
  env: Record<string, string>,
  timeoutMs = 20_000,
  onLine?: (line: LogRecord) => void,
): Promise<SpawnedServer> {
  return startServer({ env, timeoutMs, ...(onLine ? { onLog: onLine } : {}) });
}

/** A record as the prediction log shows it with the default LOG_REDACT_FIELDS masked. */
export function asLogged(record: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...record };
  for (const f of CONFIG_DEFAULTS.LOG_REDACT_FIELDS.split(',')) if (f in out) out[f] = '[redacted]';
  return out;
}

/** gRPC metadata from a plain object. */
export function metadataOf(entries: Readonly<Record<string, string>>): Metadata {
  const md = new Metadata();
  for (const [k, v] of Object.entries(entries)) md.set(k, v);
  return md;
}
