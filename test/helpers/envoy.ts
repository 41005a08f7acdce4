/**
 * Test helpers for stage 1: a real Envoy in front of a real stable and a real
 * canary server, all on loopback ports the kernel picks, plus a bounded load
 * loop that records which arm answered each call.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { type AccessLogEntry, readAccessLog } from '../../scripts/lib/envoy/access-log-entry.js';
import type { EnvoyAdmin } from '../../scripts/lib/envoy/admin.js';
import { type BootstrapOptions, DEFAULT_WEIGHTS, type Weights } from '../../scripts/lib/envoy/config.js';
import { bootstrapText, routesText } from '../../scripts/lib/envoy/files.js';
import { waitClustersHealthy } from '../../scripts/lib/envoy/health.js';
import { type EnvoyProcess, envoyBinary, startEnvoy } from '../../scripts/lib/envoy/process.js';
import { freePort } from '../../scripts/lib/ports.js';
import { parseSamples, sampleValue } from '../../scripts/lib/prometheus.js';
import { olderAndNewer } from '../../scripts/lib/versions.js';
import {
  InferenceServiceClient,
  type PredictRequest,
  type PredictResponse,
} from '../../server/generated/inference/v1/inference.js';
import { AB_ARM_HEADER, AB_OVERRIDE_HEADER, USER_ID_HEADER } from '../../server/headers.js';
import {
  copyModels,
  DEMO_MODELS,
  ROOT,
  removeDir,
  type SpawnedServer,
  spawnServer,
  waitFor,
} from './server.js';

/** The demo versions the two arms serve (models/conversion/labels.json: stable the older, canary the newer). */
export function demoVersions(): { older: string; newer: string } {
  return olderAndNewer(DEMO_MODELS, 'conversion');
}

export interface AbStack {
  readonly dir: string;
  readonly routesPath: string;
  readonly stable: SpawnedServer;
  canary: SpawnedServer;
  readonly canaryPort: number;
  readonly envoy: EnvoyProcess;
  readonly admin: EnvoyAdmin;
  /** Envoy's gRPC listener. */
  readonly port: number;
  /** Envoy's QA listener: the one that honours x-ab-group. */
  readonly qaPort: number;
  /** The read-only admin view (admin GET endpoints through a listener). */
  readonly adminViewPort: number;
  readonly client: InferenceServiceClient;
  /** A client of the QA listener (arm overrides). */
  readonly qaClient: InferenceServiceClient;
  readonly env: { stable: Record<string, string>; canary: Record<string, string> };
  accessLog(): AccessLogEntry[];
  /** Starts a new canary on the same port (after a kill or drain) and waits until Envoy sees it healthy. */
  restartCanary(env?: Record<string, string>): Promise<SpawnedServer>;
  /** Stops everything this stack started, whatever state it is in. */
  stop(): Promise<void>;
}

export interface AbStackOptions {
  readonly stableEnv?: Record<string, string>;
  readonly canaryEnv?: Record<string, string>;
  readonly weights?: Weights;
  /** Active health check interval; short, so tests observe transitions quickly. */
  readonly healthCheckIntervalMs?: number;
  /** The model repository of both servers (default: the committed demo repository). */
  readonly modelRoot?: string;
  /** Envoy fault injection (see BootstrapOptions.fault). */
  readonly fault?: BootstrapOptions['fault'];
  /** Overrides of the rendered bootstrap (limits, TLS…). */
  readonly bootstrap?: Partial<BootstrapOptions>;
  /** As `npm start` renders it: the real admin on a Unix socket in the stack's dir, `admin` a read-only view. */
  readonly adminSocket?: boolean;
}

/**
 * Starts stable and canary servers on port 0 (each following its role's label in a
 * copy of the demo repository: stable the older demo version, canary the newer), then Envoy with a bootstrap rendered for
 * their ports into a temp dir (listener and admin on port 0 too), and waits
 * until Envoy reports both clusters healthy. On any failure it stops what it
 * had started before rethrowing.
 */
export async function startAbStack(o: AbStackOptions = {}): Promise<AbStack> {
  const dir = mkdtempSync(join(tmpdir(), 'ab-stack-'));
  const { older, newer } = demoVersions();
  // A private copy of the demo repository with its labels, so no test depends on (or moves) the
  // labels of the checkout's own models/ (which `npm run rollout` on `npm start` changes).
  const modelRoot = o.modelRoot ?? copyModels('ab-stack-models-', { labels: true });
  const env = {
    stable: {
      ROLE: 'stable',
      MODEL_VERSION_POLICY: `conversion=${older}`,
      DRAIN_MS: '500',
      MODEL_ROOT: modelRoot,
      ...o.stableEnv,
    },
    canary: {
      ROLE: 'canary',
      MODEL_VERSION_POLICY: `conversion=${newer}`,
      DRAIN_MS: '500',
      MODEL_ROOT: modelRoot,
      ...o.canaryEnv,
    },
  };
  const started: { stop(): Promise<unknown> }[] = [];
  const stopAll = async () => {
    // Reverse order of start; each step is independent of the others' failures.
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
    removeDir(dir);
    if (o.modelRoot === undefined) removeDir(modelRoot);
  };
  try {
    const [stable, canary] = await Promise.all([spawnServer(env.stable), spawnServer(env.canary)]);
    started.push(stable, canary);
    const routesPath = join(dir, 'routes', 'routes.yaml');
    mkdirSync(join(dir, 'routes'));
    writeFileSync(routesPath, routesText(o.weights ?? DEFAULT_WEIGHTS, 'test-initial'));
    const options: BootstrapOptions = {
      listener: { host: '127.0.0.1', port: 0 },
      // A fixed port, because the admin view's cluster must name it (port 0 would not do).
      admin: { host: '127.0.0.1', port: await freePort() },
      stable: { host: '127.0.0.1', port: stable.grpcPort },
      canary: { host: '127.0.0.1', port: canary.grpcPort },
      discovery: 'static',
      routesPath,
      accessLog: join(dir, 'access.log'),
      healthCheckIntervalMs: o.healthCheckIntervalMs ?? 250,
      // As in the container bootstrap: admin GETs only, on a listener of its own.
      adminView: { host: '127.0.0.1', port: 0 },
      qaListener: { host: '127.0.0.1', port: 0 },
      ...(o.fault ? { fault: o.fault } : {}),
      ...(o.adminSocket ? { adminSocket: join(dir, 'admin.sock'), adminView: undefined } : {}),
      ...o.bootstrap,
    };
    const configPath = join(dir, 'envoy.yaml');
    writeFileSync(configPath, bootstrapText(options, 'test stack'));
    const envoy = await startEnvoy({
      binary: envoyBinary(ROOT),
      configPath,
      cwd: dir,
      adminAddressPath: join(dir, 'admin-address'),
      logLevel: 'info',
      fileFlushIntervalMs: 100,
    });
    started.push(envoy);
    const admin = envoy.admin;
    await waitClustersHealthy(envoy, { stable: 1, canary: 1 }, { timeoutMs: 15_000, intervalMs: 50 });
    const port = await admin.listenerPort('grpc_ingress');
    const adminViewPort = await admin.listenerPort('admin_view');
    const qaPort = await admin.listenerPort('grpc_qa');
    const client = new InferenceServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    const qaClient = new InferenceServiceClient(`127.0.0.1:${qaPort}`, credentials.createInsecure());
    started.push({ stop: async () => client.close() }, { stop: async () => qaClient.close() });
    const stack: AbStack = {
      dir,
      routesPath,
      stable,
      canary,
      canaryPort: canary.grpcPort,
      envoy,
      admin,
      port,
      qaPort,
      adminViewPort,
      client,
      qaClient,
      env,
      accessLog: () => readAccessLog(join(dir, 'access.log')),
      async restartCanary(extra = {}) {
        const next = await spawnServer({ ...env.canary, ...extra, GRPC_PORT: String(stack.canaryPort) });
        started.push(next);
        stack.canary = next;
        await waitClustersHealthy(envoy, { canary: 1 }, { timeoutMs: 15_000, intervalMs: 50 });
        return next;
      },
      stop: stopAll,
    };
    return stack;
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/**
 * Envoy's access log entries of `results` (one call per user), written after entry
 * `since`; waits until the log holds every one of them (Envoy flushes it every 100 ms).
 */
export async function loggedCalls(
  stack: AbStack,
  results: readonly CallResult[],
  since = 0,
): Promise<AccessLogEntry[]> {
  const users = new Set(results.map((r) => r.user));
  let entries: AccessLogEntry[] = [];
  await waitFor(`access log entries for ${users.size} calls`, () => {
    entries = stack
      .accessLog()
      .slice(since)
      .filter((e) => users.has(e.user ?? ''));
    return entries.length >= users.size;
  });
  return entries;
}

/** A port free right now (bound and released); used where a config must name a port. */
export { freePort };

/**
 * A positive and a negative record for a model version, taken from its QA
 * cases (models/<name>/<version>/qa.json), so they follow a rebuilt model.
 * The instance's userId is an id, not a feature: changing it keeps the label.
 */
export function qaRecords(version: string): {
  positive: Record<string, unknown>;
  negative: Record<string, unknown>;
} {
  const qa = JSON.parse(readFileSync(join(DEMO_MODELS, 'conversion', version, 'qa.json'), 'utf8')) as {
    cases: {
      request: { instances: Record<string, unknown>[] };
      expect: { code: string; predictions?: { label: number }[] };
    }[];
  };
  const single = (label: number) =>
    qa.cases.find(
      (c) =>
        c.expect.code === 'OK' &&
        c.request.instances.length === 1 &&
        c.expect.predictions?.[0]?.label === label,
    )?.request.instances[0];
  const positive = single(1);
  const negative = single(0);
  if (!positive || !negative)
    throw new Error(`qa.json of ${version} lacks a single positive and negative case`);
  return { positive, negative };
}

/** One call through Envoy and what came back. */
export interface CallResult {
  readonly user: string | undefined;
  readonly startedAt: number;
  readonly endedAt: number;
  /** Envoy's `x-ab-arm` response metadata. */
  readonly armHeader: string | undefined;
  readonly response?: PredictResponse;
  readonly error?: ServiceError;
}

export interface CallOptions {
  readonly user?: string;
  readonly override?: 'stable' | 'canary' | string;
  readonly instances?: Record<string, unknown>[];
  readonly deadlineMs?: number;
}

let cachedRecord: Record<string, unknown> | undefined;
/** The canary's positive QA record: both arms answer it, and the canary says 1. */
function defaultRecord(): Record<string, unknown> {
  cachedRecord ??= qaRecords(demoVersions().newer).positive;
  return cachedRecord;
}

/** Predict through Envoy, keeping the response metadata; never rejects. */
export function call(client: InferenceServiceClient, o: CallOptions = {}): Promise<CallResult> {
  const md = new Metadata();
  if (o.user !== undefined) md.set(USER_ID_HEADER, o.user);
  if (o.override !== undefined) md.set(AB_OVERRIDE_HEADER, o.override);
  const req: PredictRequest = {
    model: 'conversion',
    version: '',
    requestId: '',
    instances: o.instances ?? [{ ...defaultRecord() }],
  };
  const startedAt = Date.now();
  return new Promise((resolve) => {
    let armHeader: string | undefined;
    const c = client.predict(req, md, { deadline: Date.now() + (o.deadlineMs ?? 10_000) }, (err, res) => {
      const base = { user: o.user, startedAt, endedAt: Date.now(), armHeader };
      resolve(err ? { ...base, error: err } : { ...base, response: res });
    });
    c.on('metadata', (m: Metadata) => {
      const v = m.get(AB_ARM_HEADER)[0];
      armHeader = typeof v === 'string' ? v : undefined;
    });
  });
}

/** Runs `total` calls with at most `concurrency` in flight; `options(i)` shapes call i. */
export async function runCalls(
  client: InferenceServiceClient,
  total: number,
  options: (i: number) => CallOptions,
  concurrency = 50,
): Promise<CallResult[]> {
  const results: CallResult[] = new Array(total);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, total) }, async () => {
      while (next < total) {
        const i = next++;
        results[i] = await call(client, options(i));
      }
    }),
  );
  return results;
}

/**
 * Traffic in the background until `stop()`, bounded in count and in time:
 * each call i uses `options(i)`; `sent` and `results` can be read while it runs.
 */
export class LoadLoop {
  readonly results: CallResult[] = [];
  sent = 0;
  private stopped = false;
  private readonly done: Promise<void>;

  constructor(
    client: InferenceServiceClient,
    options: (i: number) => CallOptions,
    readonly limits: { maxCalls: number; maxMs: number; concurrency?: number } = {
      maxCalls: 20_000,
      maxMs: 30_000,
    },
  ) {
    const deadline = Date.now() + limits.maxMs;
    this.done = Promise.all(
      Array.from({ length: limits.concurrency ?? 20 }, async () => {
        while (!this.stopped && this.sent < limits.maxCalls && Date.now() < deadline) {
          const i = this.sent++;
          this.results.push(await call(client, options(i)));
        }
      }),
    ).then(() => undefined);
  }

  /** Resolves once at least `n` calls have completed (bounded by `timeoutMs`). */
  async waitForResults(n: number, timeoutMs = 15_000): Promise<void> {
    await waitFor(
      `${n} calls through Envoy`,
      () => this.results.length >= n || this.finishedEarly(),
      timeoutMs,
    );
    if (this.results.length < n)
      throw new Error(`the load loop hit its bounds after ${this.results.length} calls`);
  }

  private finishedEarly(): boolean {
    return this.sent >= this.limits.maxCalls;
  }

  /** Stops sending, waits for calls in flight, and returns every result. */
  async stop(): Promise<CallResult[]> {
    this.stopped = true;
    await this.done;
    return this.results;
  }
}

/** Calls that failed, summarised by code and message for an assertion message. */
export function failures(results: readonly CallResult[]): string[] {
  return results.filter((r) => r.error).map((r) => `${r.error?.code} ${r.error?.details} (user ${r.user})`);
}

/** How many results each arm answered, by Envoy's x-ab-arm. */
export function countArms(results: readonly CallResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of results) {
    const k = r.armHeader ?? '(none)';
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Asserts `observed` is within `k` binomial standard deviations of n·p. */
export function withinSigma(observed: number, n: number, p: number, k = 4): { ok: boolean; text: string } {
  const sigma = Math.sqrt(n * p * (1 - p));
  const expected = n * p;
  const ok = Math.abs(observed - expected) <= k * sigma;
  return {
    ok,
    text: `${observed} of ${n} (expected ${expected.toFixed(1)} ± ${(k * sigma).toFixed(1)} at ${k}σ)`,
  };
}

/** Prometheus text → value of the sample with exactly these labels (0 when absent). */
export function metricValue(text: string, name: string, labels: Record<string, string>): number {
  return sampleValue(parseSamples(text), name, labels) ?? 0;
}
