import { setTimeout as sleep } from 'node:timers/promises';
import { ServerCredentials } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { UserIds } from './call-log.js';
import type { Config } from './config.js';
import { ExperimentAssigner } from './experiment.js';
import { HardenedServer } from './grpc-server.js';
import { Health } from './health.js';
import { LogArchiver } from './log-archiver.js';
import { LOG_FILE_STEM, type LogOutput } from './logger.js';
import { Metrics, MetricsServer } from './metrics.js';
import { ModelRepository } from './model-repository.js';
import { OpenInferenceService } from './open-inference-service.js';
import { OutcomeRecorder } from './outcome-recorder.js';
import { PredictService } from './predict-service.js';
import { PredictionLine } from './prediction-line.js';
import { PredictionPipeline } from './prediction-pipeline.js';
import { addReflection } from './reflection.js';
import { UnaryAdapter } from './unary-handler.js';

/** What the app needs from outside; everything else it builds from `config`. */
export interface AppDeps {
  readonly logger: Logger;
  /** Metrics registry; a fresh one by default (never prom-client's global). */
  readonly registry?: Registry;
  /** Epoch ms, the request time for age transforms. */
  readonly clock?: () => number;
  /** The root logger's destination (createLogger): its dropped lines are counted in the metrics. */
  readonly logOutput?: LogOutput;
}

/** The bound ports, which differ from the config when it asked for port 0. */
export interface Ports {
  readonly grpc: number;
  readonly metrics: number;
}

export interface App {
  start(): Promise<Ports>;
  /** The documented shutdown order; safe to call more than once. */
  stop(): Promise<void>;
  readonly health: Health;
  readonly repository: ModelRepository;
  readonly metrics: Metrics;
}

/**
 * Builds the server: InferenceService, the Open Inference Protocol's
 * GRPCInferenceService, gRPC Health and reflection on one
 * grpc-js server, the model repository, metrics over HTTP, and log archiving.
 *
 * Shutdown order (`stop`):
 *   1. health → NOT_SERVING, so Envoy and load balancers stop routing here;
 *   2. wait `drainMs` for them to notice, still answering what arrives;
 *   3. refuse new calls (UNAVAILABLE), end open health Watch streams, and
 *      `tryShutdown` to let running calls finish, falling back to
 *      `forceShutdown` after `shutdownGraceMs`;
 *   4. release in reverse order of acquisition: model sessions, log archiver,
 *      metrics server.
 */
export function createApp(config: Config, deps: AppDeps): App {
  const logger = deps.logger;
  const metrics = new Metrics(deps.registry);
  deps.logOutput?.onDropped((destination, lines) => metrics.logWriteErrors.inc({ destination }, lines));
  const health = new Health();
  const repository = new ModelRepository(
    {
      root: config.modelRoot,
      label: config.versionLabel,
      arm: config.role,
      pins: config.versionPolicy.pins,
      maxLoadedVersions: config.maxLoadedVersions,
      pollMs: config.modelPollMs,
      tuning: {
        intraOpThreads: config.intraOpThreads,
        workers: config.inferenceWorkers,
        fileLimits: config.modelFileLimits,
      },
      batching: config.batching,
    },
    logger.child({ component: 'model-repository' }),
    metrics,
  );
  let accepting = true;
  let draining = false;
  const rpcLogger = logger.child({ component: 'rpc' });
  const adapter = new UnaryAdapter({
    logger: rpcLogger,
    metrics,
    arm: config.role,
    maxInFlight: config.maxInFlight,
    isAccepting: () => accepting,
    predictionLine: PredictionLine.for(rpcLogger, config.log.redactFields),
  });
  const grpcServer = new HardenedServer(config, logger.child({ component: 'grpc' }));
  const userIds = new UserIds(config.log.userIds, config.log.pseudonymKey);
  const clock = deps.clock ?? Date.now;
  // Predict and ModelInfer share one prediction path (prediction-pipeline.ts).
  const pipeline = new PredictionPipeline({
    repository,
    assigner: new ExperimentAssigner(config.role, config.experiment),
    metrics,
    clock,
    userIds,
    logInputs: config.log.inputs,
  });
  new PredictService({
    repository,
    pipeline,
    adapter,
    arm: config.role,
    maxBatchInstances: config.maxBatchInstances,
    versionLabel: config.versionLabel,
    outcomes: new OutcomeRecorder({
      repository,
      metrics,
      userIds,
      arm: config.role,
      maxOutcomes: config.maxOutcomesPerRequest,
      clock,
    }),
  }).addTo(grpcServer);
  new OpenInferenceService({
    repository,
    pipeline,
    adapter,
    health,
    isDraining: () => draining,
    arm: config.role,
    maxBatchInstances: config.maxBatchInstances,
  }).addTo(grpcServer);
  health.addTo(grpcServer);
  addReflection(grpcServer);

  const metricsServer = new MetricsServer(metrics.registry);
  const archiver =
    config.log.dir === ''
      ? undefined
      : new LogArchiver(
          {
            dir: config.log.dir,
            archiveDir: config.log.archiveDir,
            stem: LOG_FILE_STEM,
            retainDays: config.log.retainDays,
            archiveRetainDays: config.log.archiveRetainDays,
            intervalMs: config.log.archiveIntervalMs,
            now: Date.now,
          },
          logger.child({ component: 'log-archiver' }),
        );

  const updateHealth = () => {
    if (!draining) health.set(repository.ready ? 'SERVING' : 'NOT_SERVING');
  };
  let readinessTimer: NodeJS.Timeout | undefined;
  let stopping: Promise<void> | undefined;

  async function start(): Promise<Ports> {
    const metricsPort = await metricsServer.start(config.metricsHost, config.metricsPort);
    let grpcPort: number;
    try {
      // IPv6 literals need brackets in a gRPC target ("[::1]:50051").
      const host = config.host.includes(':') ? `[${config.host}]` : config.host;
      grpcPort = await new Promise<number>((resolve, reject) => {
        grpcServer.bindAsync(`${host}:${config.port}`, ServerCredentials.createInsecure(), (err, port) =>
          err ? reject(err) : resolve(port),
        );
      });
    } catch (err) {
      // Release what was acquired, so a failed start leaves nothing listening.
      await metricsServer.stop();
      throw err;
    }
    archiver?.start();
    if (config.log.userIds === 'pseudonym' && config.log.pseudonymKeyIsDefault) {
      logger.warn(
        'LOG_PSEUDONYM_KEY is unset: user ids are pseudonymised with the public development key; set a secret shared by every replica in production',
      );
    }
    // Bound first and NOT_SERVING until models are warm: probes see the truth.
    await repository.start();
    updateHealth();
    readinessTimer = setInterval(updateHealth, Math.min(config.modelPollMs, 1000));
    readinessTimer.unref();
    logger.info(
      {
        grpcPort,
        metricsPort,
        role: config.role,
        health: health.status,
        models: repository.list().map((m) => m.name),
      },
      'server started',
    );
    return { grpc: grpcPort, metrics: metricsPort };
  }

  async function shutdown(): Promise<void> {
    draining = true;
    clearInterval(readinessTimer);
    repository.stopPolling(); // no version loads while draining
    health.set('NOT_SERVING');
    logger.info({ drainMs: config.drainMs }, 'shutdown: health NOT_SERVING, draining');
    await sleep(config.drainMs);
    accepting = false;
    health.closeWatchers();
    // Requests still arriving will never be served; left open they would hold
    // tryShutdown until the grace period ran out with nothing in flight.
    const unfinished = grpcServer.closeUnfinished();
    logger.info(
      { inFlight: adapter.active, unfinished, graceMs: config.shutdownGraceMs },
      'shutdown: closing the gRPC server',
    );
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        logger.warn({ inFlight: adapter.active }, 'shutdown: grace period over; forcing');
        grpcServer.forceShutdown();
        resolve();
      }, config.shutdownGraceMs);
      grpcServer.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    adapter.close();
    grpcServer.stopReporting();
    await repository.stop();
    await archiver?.stop();
    await metricsServer.stop();
    logger.info('shutdown: complete');
  }

  let starting: Promise<Ports> | undefined;
  return {
    start: () => {
      starting ??= start();
      return starting;
    },
    // A stop during start-up waits for the start to settle, then releases
    // whatever it acquired; otherwise it could close a server not bound yet.
    stop: () => {
      stopping ??= (starting ?? Promise.resolve()).then(
        () => shutdown(),
        () => shutdown(),
      );
      return stopping;
    },
    health,
    repository,
    metrics,
  };
}
