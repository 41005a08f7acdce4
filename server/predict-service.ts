import type { Server } from '@grpc/grpc-js';
import type { Role } from './config.js';
import type {
  GetModelMetadataRequest,
  GetModelMetadataResponse,
  InferenceServiceServer,
  ListModelsResponse,
  PredictRequest,
  PredictResponse,
  RecordOutcomesRequest,
} from './generated/inference/v1/inference.js';
import { columnsOf } from './model-manifest.js';
import type { ModelRepository } from './model-repository.js';
import type { OutcomeRecorder } from './outcome-recorder.js';
import { InferenceServiceDefinition } from './predict-codec.js';
import type { PredictionPipeline } from './prediction-pipeline.js';
import { checkModelRef, validatePredict } from './request-validation.js';
import { type CallContext, type UnaryAdapter, withTolerantDecoding } from './unary-handler.js';

export interface PredictServiceDeps {
  readonly repository: ModelRepository;
  /** Validated requests go through the one prediction path (shared with ModelInfer). */
  readonly pipeline: PredictionPipeline;
  readonly adapter: UnaryAdapter;
  /** This server's A/B arm (reported by ListModels). */
  readonly arm: Role;
  readonly maxBatchInstances: number;
  /** RecordOutcomes (outcome-recorder.ts). */
  readonly outcomes: OutcomeRecorder;
  /** The version label this server follows (reported by ListModels). */
  readonly versionLabel: string;
}

/** `inference.v1.InferenceService`: Predict, ListModels, GetModelMetadata, RecordOutcomes. */
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
      recordOutcomes: adapter.wrap(
        'RecordOutcomes',
        (req: RecordOutcomesRequest, ctx) => this.deps.outcomes.record(req, ctx),
        'info',
      ),
    };
    server.addService(withTolerantDecoding(InferenceServiceDefinition), impl);
  }

  async predict(request: PredictRequest, ctx: CallContext): Promise<PredictResponse> {
    const req = validatePredict(request, ctx.metadata, this.deps.maxBatchInstances);
    if (req.requestId !== undefined) ctx.requestId = req.requestId;
    const batch = await this.deps.pipeline.run(
      req,
      ctx,
      () => req.instances,
      (i, field) => `instances[${i}].${field}`,
    );
    return {
      model: batch.model,
      version: batch.version,
      requestId: ctx.requestId,
      arm: batch.arm,
      predictions: batch.predictions,
    };
  }

  listModels(): ListModelsResponse {
    return {
      arm: this.deps.arm,
      label: this.deps.versionLabel,
      models: this.deps.repository.list().map((m) => ({
        name: m.name,
        servingVersion: m.serving?.version ?? '',
        versions: m.versions.map((v) => ({
          version: v.version,
          family: v.manifest.family,
          threshold: v.manifest.threshold,
          loadedAt: v.loadedAt,
        })),
        wantedVersion: m.wanted.version ?? '',
        wantedSource: m.wanted.source,
        state: !m.serving ? 'UNAVAILABLE' : m.wanted.problem === undefined ? 'SERVING' : 'MISMATCH',
        problem: m.wanted.problem ?? '',
        labels: { ...m.labels },
      })),
    };
  }

  getModelMetadata(req: GetModelMetadataRequest, ctx: CallContext): GetModelMetadataResponse {
    checkModelRef(req.model, req.version);
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
      serving: this.deps.repository.list().find((x) => x.name === v.name)?.serving === v,
    };
  }
}
