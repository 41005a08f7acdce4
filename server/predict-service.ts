import type { Server } from '@grpc/grpc-js';
import type { PredictionOutput, UserIds } from './call-log.js';
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
  type RecordOutcomesRequest,
} from './generated/inference/v1/inference.js';
import type { AssignmentLabels, Labels, Metrics } from './metrics.js';
import { columnsOf } from './model-manifest.js';
import type { ModelRepository } from './model-repository.js';
import type { OutcomeRecorder } from './outcome-recorder.js';
import { checkModelRef, instanceUser, validatePredict } from './request-validation.js';
import { type CallContext, type UnaryAdapter, withTolerantDecoding } from './unary-handler.js';

export interface PredictServiceDeps {
  readonly repository: ModelRepository;
  readonly assigner: ExperimentAssigner;
  readonly metrics: Metrics;
  readonly adapter: UnaryAdapter;
  /** Request time in epoch ms, for age transforms; injected so tests can fix it. */
  readonly clock: () => number;
  readonly maxBatchInstances: number;
  /** How user ids appear in the log (pseudonyms by default). */
  readonly userIds: UserIds;
  /** Log each request's raw records (`LOG_INPUTS`), with `LOG_REDACT_FIELDS` masked. */
  readonly logInputs: boolean;
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
    server.addService(withTolerantDecoding(InferenceServiceService), impl);
  }

  async predict(request: PredictRequest, ctx: CallContext): Promise<PredictResponse> {
    const { repository, assigner, metrics, maxBatchInstances, userIds } = this.deps;
    const req = validatePredict(request, ctx.metadata, maxBatchInstances);
    if (req.requestId !== undefined) ctx.requestId = req.requestId;
    const lease = repository.lease(req.model, req.version);
    try {
      const model = lease.version;
      ctx.model = model.name;
      ctx.version = model.version;
      const n = req.instances.length;
      const width = model.preprocessor.width;
      const rows = new Float32Array(n * width);
      const now = this.deps.clock();
      for (let i = 0; i < n; i++) {
        try {
          model.preprocessor.fill(
            req.instances[i] as Readonly<Record<string, unknown>>,
            now,
            rows,
            i * width,
          );
        } catch (err) {
          if (err instanceof FieldError) throw invalidArgument(`instances[${i}].${err.field} ${err.reason}`);
          throw err;
        }
      }
      const scores = await model.score(rows, n);

      const threshold = model.manifest.threshold;
      const predictions: Prediction[] = new Array(n);
      const outputs: PredictionOutput[] = new Array(n);
      // One counter update per (group, label) per request, not per instance.
      const tally = new Map<string, number>();
      for (let i = 0; i < n; i++) {
        const score = scores[i] as number;
        const label = score >= threshold ? 1 : 0;
        const own =
          req.user === undefined
            ? instanceUser(req.instances[i] as Readonly<Record<string, unknown>>)
            : undefined;
        const { group, action } = assigner.assign(label, req.user ?? own, () => `${ctx.requestId}#${i}`);
        const key = `${group}|${label}`;
        tally.set(key, (tally.get(key) ?? 0) + 1);
        predictions[i] = { score, label, group, action };
        outputs[i] =
          own === undefined
            ? { score, label, group, action }
            : { score, label, group, action, user: userIds.forLog(own) };
      }
      for (const [key, count] of tally) {
        const [group = '', label = ''] = key.split('|');
        const labels: Labels<AssignmentLabels> = {
          arm: assigner.role,
          model: model.name,
          version: model.version,
          group,
          label,
        };
        metrics.assignments.inc(labels, count);
      }
      ctx.log = {
        event: 'prediction',
        experiment: assigner.experimentName,
        ...(req.user === undefined ? {} : { user: userIds.forLog(req.user) }),
        outputs,
        ...(this.deps.logInputs ? { inputs: req.instances } : {}),
      };
      return {
        model: model.name,
        version: model.version,
        requestId: ctx.requestId,
        arm: assigner.role,
        predictions,
      };
    } finally {
      lease.release();
    }
  }

  listModels(): ListModelsResponse {
    return {
      arm: this.deps.assigner.role,
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
