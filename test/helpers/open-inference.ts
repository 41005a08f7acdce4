/**
 * Test helpers for the Open Inference Protocol: a typed client, records →
 * ModelInfer tensors (raw or typed contents, as the spec encodes them), and
 * raw outputs → plain arrays. The real clients (tritonclient, kserve) are
 * driven from Python in test/e2e/oip-clients.test.ts; these helpers let the
 * server tests break the wire format on purpose.
 */
import { join } from 'node:path';
import { credentials, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { VENV_PYTHON } from '../../scripts/lib/paths.js';
import {
  GRPCInferenceServiceClient,
  type InferTensorContents,
  type ModelInferRequest,
  type ModelInferRequest_InferInputTensor,
  type ModelInferResponse,
  type ModelMetadataResponse_TensorMetadata,
} from '../../server/generated/inference/oip/open_inference_grpc.js';
import { runCli } from './cli.js';
import { ROOT } from './server.js';

export function oipClient(port: number): GRPCInferenceServiceClient {
  return new GRPCInferenceServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
}

/** Calls a unary method of the client as a promise; rejects with the grpc-js ServiceError. */
export function call<Req, Res>(
  client: GRPCInferenceServiceClient,
  method:
    | 'serverLive'
    | 'serverReady'
    | 'modelReady'
    | 'serverMetadata'
    | 'modelMetadata'
    | 'modelInfer'
    | 'repositoryIndex',
  req: Req,
  metadata?: Metadata,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const cb = (err: ServiceError | null, res?: Res) => (err ? reject(err) : resolve(res as Res));
    const fn = (client[method] as (...a: unknown[]) => unknown).bind(client);
    const opts = { deadline: Date.now() + 10_000 };
    if (metadata) fn(req, metadata, opts, cb);
    else fn(req, opts, cb);
  });
}

/** ModelInfer with defaults for every field the test leaves out. */
export function modelInfer(
  client: GRPCInferenceServiceClient,
  req: Partial<ModelInferRequest>,
  metadata?: Metadata,
): Promise<ModelInferResponse> {
  const full: ModelInferRequest = {
    modelName: 'conversion',
    modelVersion: '',
    id: '',
    parameters: {},
    inputs: [],
    outputs: [],
    rawInputContents: [],
    ...req,
  };
  return call(client, 'modelInfer', full, metadata);
}

type Value = number | string;

/** One element in the spec's raw encoding (little-endian; BYTES with a 4-byte length prefix). */
function rawElement(datatype: string, v: Value): Buffer {
  switch (datatype) {
    case 'INT64': {
      const b = Buffer.alloc(8);
      b.writeBigInt64LE(BigInt(v as number));
      return b;
    }
    case 'INT32': {
      const b = Buffer.alloc(4);
      b.writeInt32LE(v as number);
      return b;
    }
    case 'FP64': {
      const b = Buffer.alloc(8);
      b.writeDoubleLE(v as number);
      return b;
    }
    case 'FP32': {
      const b = Buffer.alloc(4);
      b.writeFloatLE(v as number);
      return b;
    }
    default: {
      const s = Buffer.from(String(v), 'utf8');
      const len = Buffer.alloc(4);
      len.writeUInt32LE(s.length);
      return Buffer.concat([len, s]);
    }
  }
}

/** The raw content of a column. */
export function rawColumn(datatype: string, values: readonly Value[]): Buffer {
  return Buffer.concat(values.map((v) => rawElement(datatype, v)));
}

/** Empty typed contents (every repeated field empty). */
export function emptyContents(): InferTensorContents {
  return {
    boolContents: [],
    intContents: [],
    int64Contents: [],
    uintContents: [],
    uint64Contents: [],
    fp32Contents: [],
    fp64Contents: [],
    bytesContents: [],
  };
}

/** The typed contents of a column. */
export function typedColumn(datatype: string, values: readonly Value[]): InferTensorContents {
  const c = emptyContents();
  if (datatype === 'INT64') c.int64Contents = values as number[];
  else if (datatype === 'INT32') c.intContents = values as number[];
  else if (datatype === 'FP64') c.fp64Contents = values as number[];
  else if (datatype === 'FP32') c.fp32Contents = values as number[];
  else c.bytesContents = values.map((v) => Buffer.from(String(v), 'utf8'));
  return c;
}

/**
 * ModelInfer inputs for records, one input per metadata input that every
 * record has, in raw or typed contents; `datatypes` overrides one input's.
 */
export function tensorsOf(
  records: readonly Readonly<Record<string, unknown>>[],
  inputs: readonly ModelMetadataResponse_TensorMetadata[],
  mode: 'raw' | 'typed',
  datatypes: Readonly<Record<string, string>> = {},
): Pick<ModelInferRequest, 'inputs' | 'rawInputContents'> {
  const present = inputs.filter((i) => records.every((r) => r[i.name] !== undefined));
  const tensors: ModelInferRequest_InferInputTensor[] = [];
  const raw: Buffer[] = [];
  for (const i of present) {
    const datatype = datatypes[i.name] ?? i.datatype;
    const values = records.map((r) => r[i.name] as Value);
    tensors.push({
      name: i.name,
      datatype,
      shape: [records.length],
      parameters: {},
      contents: mode === 'typed' ? typedColumn(datatype, values) : undefined,
    });
    if (mode === 'raw') raw.push(rawColumn(datatype, values));
  }
  return { inputs: tensors, rawInputContents: raw };
}

/** The decoded raw outputs of a response, by name. */
export function outputsOf(res: ModelInferResponse): Record<string, (number | string)[]> {
  const out: Record<string, (number | string)[]> = {};
  res.outputs.forEach((o, k) => {
    const raw = res.rawOutputContents[k] as Buffer;
    const n = o.shape[0] as number;
    const values: (number | string)[] = [];
    let at = 0;
    for (let i = 0; i < n; i++) {
      if (o.datatype === 'FP32') values.push(raw.readFloatLE(4 * i));
      else if (o.datatype === 'INT64') values.push(Number(raw.readBigInt64LE(8 * i)));
      else {
        const len = raw.readUInt32LE(at);
        values.push(raw.toString('utf8', at + 4, at + 4 + len));
        at += 4 + len;
      }
    }
    out[o.name] = values;
  });
  return out;
}

/** A step of a Python client plan (test/e2e/oip_clients.py). */
export interface ClientStep {
  readonly op: string;
  readonly [key: string]: unknown;
}

/** A step's result: its value, or the gRPC status the client raised. */
export type ClientResult =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly code: string; readonly details: string };

/** What the Python clients return for an `infer` step. */
export interface ClientInfer {
  readonly model_name: string;
  readonly model_version: string;
  readonly id: string;
  readonly parameters: Record<string, string>;
  readonly outputs: { score?: number[]; label?: number[]; group?: string[]; action?: number[] };
}

const CLIENTS_PY = join(ROOT, 'test', 'e2e', 'oip_clients.py');

/** Runs a plan with tritonclient or the KServe SDK (the project venv) against `target`. */
export async function runClient(
  client: 'triton' | 'kserve',
  target: string,
  steps: readonly ClientStep[],
): Promise<ClientResult[]> {
  const run = await runCli(VENV_PYTHON, [CLIENTS_PY, client, target], {
    input: JSON.stringify({ steps }),
    timeoutMs: 90_000,
    name: `oip_clients.py ${client}`,
  });
  if (run.code !== 0)
    throw new Error(`oip_clients.py ${client} exited ${run.code}: ${run.stderr.slice(-2000)}`);
  const { results } = JSON.parse(run.stdout) as { results: ClientResult[] };
  if (results.length !== steps.length)
    throw new Error(`expected ${steps.length} results, got ${results.length}`);
  return results;
}

/** A result's value; fails naming the status when the step failed. */
export function resultValue<T>(r: ClientResult | undefined): T {
  if (!r?.ok) throw new Error(`the client call failed: ${r ? `${r.code} ${r.details}` : 'no result'}`);
  return r.value as T;
}

/** The descriptors of our proto and of a client's generated code, normalised alike. */
export async function clientDescriptors(client: 'triton' | 'kserve'): Promise<{
  ours: DescribedFile[];
  theirs: DescribedFile;
}> {
  const run = await runCli(
    VENV_PYTHON,
    [CLIENTS_PY, 'descriptors', client, join(ROOT, 'server', 'generated', 'descriptors.binpb')],
    { timeoutMs: 60_000 },
  );
  if (run.code !== 0)
    throw new Error(`oip_clients.py descriptors exited ${run.code}: ${run.stderr.slice(-2000)}`);
  return JSON.parse(run.stdout);
}

export interface DescribedField {
  readonly name: string;
  readonly number: number;
  readonly label: string;
  readonly type: string;
  readonly type_name: string;
  readonly oneof: string | null;
  readonly proto3_optional: boolean;
  readonly default: string;
}

export interface DescribedMessage {
  readonly map_entry: boolean;
  readonly fields: DescribedField[];
  readonly nested: Record<string, DescribedMessage>;
  readonly enums: string[];
}

export interface DescribedMethod {
  readonly name: string;
  readonly input: string;
  readonly output: string;
  readonly client_streaming: boolean;
  readonly server_streaming: boolean;
}

export interface DescribedFile {
  readonly name: string;
  readonly package: string;
  readonly messages: Record<string, DescribedMessage>;
  readonly services: Record<string, DescribedMethod[]>;
}
