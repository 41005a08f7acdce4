import type { Server } from '@grpc/grpc-js';
import { FieldError, invalidArgument } from './errors.js';
import type { ExperimentAssigner } from './experiment.js';
import {
  type GetModelMetadataRequest,
  type GetModelMetadataResponse,
  type InferenceServiceServer,
  InferenceServiceService,
  type ListModelsResponse,
  type Prediction,
  type PredictRequest,
  type PredictResponse,
} from './generated/inference/v1/inference.js';
import { USER_ID_HEADER } from './headers.js';
import type { Metrics } from './metrics.js';
import { columnsOf } from './model-manifest.js';
import type { ModelRepository } from './model-repository.js';
import { type CallContext, isRequestId, type UnaryAdapter, withTolerantDecoding } from './unary-handler.js';

export interface PredictServiceDeps {
  readonly repository: ModelRepository;
  readonly assigner: ExperimentAssigner;
  readonly metrics: Metrics;
  readonly adapter: UnaryAdapter;
  /** Request time in epoch ms, for age transforms; injected so tests can fix it. */
  readonly clock: () => number;
  readonly maxBatchInstances: number;
}

/** `inference.v1.InferenceService`: Predict, ListModels, GetModelMetadata. */
export class PredictService {
  constructor(private readonly deps: PredictServiceDeps) {}

  /** Registers the service; typed by the generated interface, so a missing RPC fails to compile. */
  addTo(server: Server): void {
    const { adapter } = this.deps;
    const impl: InferenceServiceServer = {
      predict: adapter.wrap('Predict', (req: PredictRequest, ctx) => this.predict(req, ctx), 'info'),
      listModels: adapter.wrap('ListModels', async () => this.listModels(), 'debug'),
      getModelMetadata: adapter.wrap(
        'GetModelMetadata',
        async (req: GetModelMetadataRequest, ctx) => this.getModelMetadata(req, ctx),
        'debug',
      ),
    };
    server.addService(withTolerantDecoding(InferenceServiceService), impl);
  }

  async predict(req: PredictRequest, ctx: CallContext): Promise<PredictResponse> {
    if (req.requestId !== '') {
      if (!isRequestId(req.requestId)) {
        throw invalidArgument('requestId must be 1 to 128 printable ASCII characters without spaces');
      }
      ctx.requestId = req.requestId;
    }
    const { repository, assigner, metrics, maxBatchInstances } = this.deps;
    if (req.model === '') throw invalidArgument('model is required (see ListModels for what is loaded)');
    const model = repository.resolve(req.model, req.version);
    ctx.model = model.name;
    ctx.version = model.version;
    const n = req.instances.length;
    if (n === 0) throw invalidArgument('instances is empty; send between 1 and the batch limit of records');
    if (n > maxBatchInstances) {
      throw invalidArgument(`instances has ${n} records; the limit is ${maxBatchInstances} per request`);
    }

    const width = model.preprocessor.width;
    const rows = new Float32Array(n * width);
    const now = this.deps.clock();
    for (let i = 0; i < n; i++) {
      try {
        model.preprocessor.fill(req.instances[i], now, rows, i * width);
      } catch (err) {
        if (err instanceof FieldError) throw invalidArgument(`instances[${i}].${err.field} ${err.reason}`);
        throw err;
      }
    }

    model.acquire();
    let scores: Float32Array;
    try {
      scores = await model.score(rows, n);
    } finally {
      model.release();
    }

    const header = ctx.metadata.get(USER_ID_HEADER)[0];
    const headerUser = typeof header === 'string' && header !== '' ? header : undefined;
    const threshold = model.manifest.threshold;
    const predictions: Prediction[] = new Array(n);
    const users: (string | null)[] = new Array(n);
    // One counter update per (group, label) per request, not per instance.
    const tally = new Map<string, number>();
    for (let i = 0; i < n; i++) {
      const score = scores[i] as number;
      const label = score >= threshold ? 1 : 0;
      const user = headerUser ?? userOf(req.instances[i] ?? {});
      const { group, action } = assigner.assign(label, user, () => `${ctx.requestId}#${i}`);
      const key = `${group}|${label}`;
      tally.set(key, (tally.get(key) ?? 0) + 1);
      predictions[i] = { score, label, group, action };
      users[i] = user ?? null;
    }
    for (const [key, count] of tally) {
      const [group, label] = key.split('|');
      metrics.assignments.inc({ arm: assigner.role, group, label }, count);
    }
    ctx.log = { arm: assigner.role, users, inputs: req.instances, outputs: predictions };
    return {
      model: model.name,
      version: model.version,
      requestId: ctx.requestId,
      arm: assigner.role,
      predictions,
    };
  }

  listModels(): ListModelsResponse {
    return {
      models: this.deps.repository.list().map((m) => ({
        name: m.name,
        servingVersion: m.serving?.version ?? '',
        versions: m.versions.map((v) => ({
          version: v.version,
          family: v.manifest.family,
          threshold: v.manifest.threshold,
          loadedAt: v.loadedAt,
        })),
      })),
    };
  }

  getModelMetadata(req: GetModelMetadataRequest, ctx: CallContext): GetModelMetadataResponse {
    if (req.model === '') throw invalidArgument('model is required (see ListModels for what is loaded)');
    const v = this.deps.repository.resolve(req.model, req.version);
    ctx.model = v.name;
    ctx.version = v.version;
    const m = v.manifest;
    const trainedAt = Date.parse(m.trainedAt);
    return {
      model: m.name,
      version: m.version,
      family: m.family,
      threshold: m.threshold,
      loadedAt: v.loadedAt,
      trainedAt: Number.isNaN(trainedAt) ? undefined : new Date(trainedAt),
      sha256: m.sha256,
      inputs: m.fields.map((f) => ({
        name: f.name,
        type: f.type,
        required: f.required,
        defaultValue: f.default,
        transform: f.transform?.kind ?? '',
        columns: columnsOf(f.transform),
      })),
      featureNames: [...m.featureNames],
      metrics: { ...m.metrics },
    };
  }
}

/** The instance's own userId, as the A/B hash key, when it is a usable scalar. */
function userOf(instance: Readonly<Record<string, unknown>>): string | undefined {
  const u = instance.userId;
  if (typeof u === 'number' && Number.isFinite(u)) return Number.isInteger(u) ? u.toFixed(0) : String(u);
  if (typeof u === 'string' && u !== '') return u;
  return undefined;
}
