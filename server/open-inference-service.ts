/**
 * `inference.GRPCInferenceService`, the Open Inference Protocol (KServe v2)
 * over gRPC, served beside `inference.v1` on the same port so tritonclient,
 * the KServe SDK, perf_analyzer and Seldon pipelines work unchanged. Every
 * call goes through the same adapter as Predict (request id, in-flight limit,
 * error mapping, metrics by method, one log line), and ModelInfer through the
 * same prediction path (prediction-pipeline.ts): same version policy and
 * labels, preprocessing, A/B assignment and prediction log record.
 *
 * Of Triton's superset of this service, RepositoryIndex is implemented; the
 * rest answer UNIMPLEMENTED saying what to use instead.
 */
import { readFileSync } from 'node:fs';
import {
  type Server,
  type ServerDuplexStream,
  type ServiceDefinition,
  status,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import type { Role } from './config.js';
import { notFound, ServingError, unimplemented } from './errors.js';
import {
  type GRPCInferenceServiceServer,
  GRPCInferenceServiceService,
  type ModelInferRequest,
  type ModelInferResponse,
  type ModelMetadataRequest,
  type ModelMetadataResponse,
  type ModelReadyRequest,
  type ModelReadyResponse,
  type RepositoryIndexRequest,
  type RepositoryIndexResponse,
  type ServerMetadataResponse,
} from './generated/inference/oip/open_inference_grpc.js';
import type { Health } from './health.js';
import type { ModelRepository } from './model-repository.js';
import {
  encodeOutputs,
  inputDatatype,
  OUTPUTS,
  recordsFromTensors,
  validateModelInfer,
} from './open-inference-tensors.js';
import type { PredictionPipeline } from './prediction-pipeline.js';
import { checkModelRef } from './request-validation.js';
import { type CallContext, type UnaryAdapter, withTolerantDecoding } from './unary-handler.js';

/** The protocol's platform name for ONNX models (the spec's "Platforms"). */
export const ONNX_PLATFORM = 'onnx_onnxv1';

/**
 * ServerMetadata's extensions: response `parameters` (the A/B `arm`) and
 * Triton's repository index. The A/B assignment travels as outputs.
 */
export const EXTENSIONS = ['parameters', 'model_repository(index)'] as const;

/**
 * Triton's RPCs beyond the protocol and RepositoryIndex, each with what to
 * use instead. Registered so a Triton client gets this sentence rather than
 * grpc-js's bare "does not implement the method".
 */
export const TRITON_UNIMPLEMENTED: Readonly<Record<string, string>> = {
  ModelConfig:
    'use ModelMetadata (inputs, outputs, versions) or inference.v1 GetModelMetadata (the manifest)',
  ModelStatistics: "read the server's Prometheus /metrics (inference_request_duration_seconds and friends)",
  RepositoryModelLoad:
    'versions are picked up by polling the model repository; publish one with `npm run publish-model`',
  RepositoryModelUnload:
    'remove the version directory from the model repository; the server unloads it within one poll',
  SystemSharedMemoryStatus: 'send tensors in the request (raw_input_contents)',
  SystemSharedMemoryRegister: 'send tensors in the request (raw_input_contents)',
  SystemSharedMemoryUnregister: 'send tensors in the request (raw_input_contents)',
  CudaSharedMemoryStatus: 'this server runs on CPU; send tensors in the request',
  CudaSharedMemoryRegister: 'this server runs on CPU; send tensors in the request',
  CudaSharedMemoryUnregister: 'this server runs on CPU; send tensors in the request',
  TraceSetting: 'tracing is not available; each call is logged with its request id',
  LogSettings: 'logging is configured at start-up (LOG_LEVEL and the other LOG_* variables)',
};

/** Triton's streaming RPC, answered UNIMPLEMENTED like the unary ones above. */
const STREAM_INFER = 'ModelStreamInfer';
const STREAM_INFER_HINT = 'call ModelInfer once per request';

function unimplementedMessage(method: string, hint: string): string {
  return `${method} is a Triton extension this server does not implement: ${hint}`;
}

const SERVICE_PREFIX = '/inference.GRPCInferenceService/';
const identity = (b: Buffer) => b;

/** grpc-js definitions for Triton's extra RPCs, bytes in and out: their messages are never read. */
function tritonExtrasDefinition(): ServiceDefinition {
  const def: Record<string, unknown> = {};
  for (const name of [...Object.keys(TRITON_UNIMPLEMENTED), STREAM_INFER]) {
    const stream = name === STREAM_INFER;
    def[name] = {
      path: `${SERVICE_PREFIX}${name}`,
      requestStream: stream,
      responseStream: stream,
      requestSerialize: identity,
      requestDeserialize: identity,
      responseSerialize: identity,
      responseDeserialize: identity,
    };
  }
  return def as ServiceDefinition;
}

/** This server's name and version (package.json; dist/server/ and server/ sit two levels below it). */
function serverIdentity(): { name: string; version: string } {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      name?: unknown;
      version?: unknown;
    };
    return {
      name: typeof pkg.name === 'string' ? pkg.name : 'onnx-grpc-serving',
      version: typeof pkg.version === 'string' ? pkg.version : '',
    };
  } catch {
    return { name: 'onnx-grpc-serving', version: '' };
  }
}

export interface OpenInferenceServiceDeps {
  readonly repository: ModelRepository;
  readonly pipeline: PredictionPipeline;
  readonly adapter: UnaryAdapter;
  /** grpc.health.v1's status: ServerReady says SERVING, nothing else. */
  readonly health: Health;
  /** True once shutdown began: no model is ready any more. */
  readonly isDraining: () => boolean;
  readonly arm: Role;
  readonly maxBatchInstances: number;
}

/** A lookup that failed because the model or version is not there (or not yet). */
function isAbsent(err: unknown): boolean {
  return err instanceof ServingError && (err.code === status.NOT_FOUND || err.code === status.UNAVAILABLE);
}

export class OpenInferenceService {
  private readonly identity = serverIdentity();

  constructor(private readonly deps: OpenInferenceServiceDeps) {}

  /** Registers the service and Triton's extras; typed by the generated interface. */
  addTo(server: Server): void {
    const { adapter } = this.deps;
    const impl: GRPCInferenceServiceServer = {
      serverLive: adapter.wrap('ServerLive', async () => ({ live: true }), 'debug'),
      serverReady: adapter.wrap(
        'ServerReady',
        async () => ({ ready: this.deps.health.status === 'SERVING' }),
        'debug',
      ),
      modelReady: adapter.wrap(
        'ModelReady',
        async (req: ModelReadyRequest, ctx) => this.modelReady(req, ctx),
        'debug',
      ),
      serverMetadata: adapter.wrap(
        'ServerMetadata',
        async (): Promise<ServerMetadataResponse> => ({ ...this.identity, extensions: [...EXTENSIONS] }),
        'debug',
      ),
      modelMetadata: adapter.wrap(
        'ModelMetadata',
        async (req: ModelMetadataRequest, ctx) => this.modelMetadata(req, ctx),
        'debug',
      ),
      modelInfer: adapter.wrap(
        'ModelInfer',
        (req: ModelInferRequest, ctx) => this.modelInfer(req, ctx),
        'info',
      ),
      repositoryIndex: adapter.wrap(
        'RepositoryIndex',
        async (req: RepositoryIndexRequest) => this.repositoryIndex(req),
        'debug',
      ),
    };
    server.addService(withTolerantDecoding(GRPCInferenceServiceService), impl);

    const extras: UntypedServiceImplementation = {};
    for (const [name, hint] of Object.entries(TRITON_UNIMPLEMENTED)) {
      extras[name] = adapter.wrap(
        name,
        async () => {
          throw unimplemented(unimplementedMessage(name, hint));
        },
        'debug',
      );
    }
    // A stream cannot go through the unary adapter; it ends at once with the status.
    extras[STREAM_INFER] = (call: ServerDuplexStream<Buffer, Buffer>) => {
      call.emit('error', {
        code: status.UNIMPLEMENTED,
        details: unimplementedMessage(STREAM_INFER, STREAM_INFER_HINT),
      });
    };
    server.addService(tritonExtrasDefinition(), extras);
  }

  /**
   * Ready: the server is not draining and the version is loaded (empty: the
   * model has a serving version). An unknown model or version is not ready
   * rather than an error, as Triton answers; a malformed name is INVALID_ARGUMENT.
   */
  modelReady(req: ModelReadyRequest, ctx: CallContext): ModelReadyResponse {
    checkModelRef(req.name, req.version, { model: 'name', version: 'version' });
    if (this.deps.isDraining()) return { ready: false };
    try {
      const v = this.deps.repository.resolve(req.name, req.version);
      ctx.model = v.name;
      ctx.version = v.version;
      return { ready: true };
    } catch (err) {
      if (isAbsent(err)) return { ready: false };
      throw err;
    }
  }

  /**
   * One input per manifest field (datatype by its type and transform, shape
   * [-1]: a client can build a request from this alone), the four outputs,
   * the loaded versions (newest first), and the manifest facts as properties.
   */
  modelMetadata(req: ModelMetadataRequest, ctx: CallContext): ModelMetadataResponse {
    checkModelRef(req.name, req.version, { model: 'name', version: 'version' });
    const { repository } = this.deps;
    const v = repository.resolve(req.name, req.version);
    ctx.model = v.name;
    ctx.version = v.version;
    const status = repository.list().find((m) => m.name === v.name);
    const m = v.manifest;
    return {
      name: v.name,
      versions: status ? status.versions.map((x) => x.version) : [v.version],
      platform: ONNX_PLATFORM,
      inputs: m.fields.map((f) => ({ name: f.name, datatype: inputDatatype(f), shape: [-1] })),
      outputs: OUTPUTS.map((o) => ({ name: o.name, datatype: o.datatype, shape: [-1] })),
      properties: {
        version: v.version,
        serving_version: status?.serving?.version ?? '',
        arm: this.deps.arm,
        family: m.family,
        threshold: String(m.threshold),
        sha256: m.sha256,
        trained_at: m.trainedAt,
        required_inputs: m.fields
          .filter((f) => f.required)
          .map((f) => f.name)
          .join(','),
        date_inputs: m.fields
          .filter((f) => f.transform?.kind === 'age')
          .map((f) => f.name)
          .join(','),
      },
    };
  }

  async modelInfer(request: ModelInferRequest, ctx: CallContext): Promise<ModelInferResponse> {
    const req = validateModelInfer(request, ctx.metadata, this.deps.maxBatchInstances);
    if (req.requestId !== undefined) ctx.requestId = req.requestId;
    const batch = await this.deps.pipeline.run(
      req,
      ctx,
      (v) => recordsFromTensors(req, v.manifest.fields, `${v.name}@${v.version}`),
      (i, field) => `input ${field} row ${i}`,
    );
    const { outputs, raw } = encodeOutputs(batch.predictions, req.outputs);
    return {
      modelName: batch.model,
      modelVersion: batch.version,
      id: ctx.requestId,
      parameters: { arm: { stringParam: batch.arm } },
      outputs,
      rawOutputContents: raw,
    };
  }

  /**
   * Every loaded version READY; a model with nothing to serve UNAVAILABLE with
   * the reason. There is one repository, named "" (any other name is NOT_FOUND).
   */
  repositoryIndex(req: RepositoryIndexRequest): RepositoryIndexResponse {
    if (req.repositoryName !== '') {
      throw notFound('this server has one model repository; leave repository_name empty');
    }
    const models: RepositoryIndexResponse['models'] = [];
    for (const m of this.deps.repository.list()) {
      if (m.versions.length === 0 && !req.ready) {
        models.push({
          name: m.name,
          version: '',
          state: 'UNAVAILABLE',
          reason: m.wanted.problem ?? 'no version loaded yet',
        });
      }
      for (const v of m.versions)
        models.push({ name: m.name, version: v.version, state: 'READY', reason: '' });
    }
    return { models };
  }
}
