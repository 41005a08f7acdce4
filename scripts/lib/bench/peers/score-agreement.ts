/**
 * Before a peer is timed, it must give this server's answers: the same
 * records, one ModelInfer call each, to this server and to the peer, and every
 * score within `SCORE_TOLERANCE` and every label equal, or the peer is
 * reported and not timed (fail closed: a call that fails counts as a
 * disagreement too). The records are the version's golden cases that carry
 * every manifest field with integer numbers (what every peer's typed inputs
 * accept: Triton checks each input's datatype and needs every input).
 *
 * Both sides preprocess at their own clock, a few milliseconds apart; ages in
 * days or years move by far less than the tolerance in that time.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import {
  type GRPCInferenceServiceClient,
  ModelInferRequest,
  type ModelInferResponse,
} from '../../../../server/generated/inference/oip/open_inference_grpc.js';
import { oipClientFor, type PeerWire, requestJson } from './peer.js';

/** |score − this server's score| allowed: float32 scores of the same ONNX graph on the same inputs. */
export const SCORE_TOLERANCE = 1e-5;

export interface AgreementRecord {
  readonly id: string;
  readonly record: Readonly<Record<string, string | number>>;
}

/** This server's wire for the reference calls. */
export const REFERENCE_WIRE: PeerWire = { encoding: 'raw', shape: [1] };

/** The golden cases of `versionDir` usable by every peer (see the module doc). */
export function agreementRecords(versionDir: string): AgreementRecord[] {
  const manifest = JSON.parse(readFileSync(join(versionDir, 'model.json'), 'utf8')) as {
    fields: { name: string; type: string }[];
  };
  const golden = JSON.parse(readFileSync(join(versionDir, 'golden.json'), 'utf8')) as {
    cases: { id: string; record?: unknown }[];
  };
  const names = manifest.fields.map((f) => f.name).sort();
  const usable = (r: unknown): r is Record<string, string | number> => {
    if (typeof r !== 'object' || r === null) return false;
    const keys = Object.keys(r).sort();
    if (keys.join('\0') !== names.join('\0')) return false;
    return manifest.fields.every((f) => {
      const v = (r as Record<string, unknown>)[f.name];
      return f.type === 'number' ? Number.isInteger(v) : typeof v === 'string';
    });
  };
  return golden.cases
    .filter((c) => usable(c.record))
    .map((c) => ({ id: c.id, record: c.record as AgreementRecord['record'] }));
}

/** One record as a ModelInfer request on `wire`, exactly what ghz sends the peer for it. */
export function inferRequest(
  model: string,
  record: AgreementRecord['record'],
  wire: PeerWire,
): ModelInferRequest {
  return ModelInferRequest.fromJSON(requestJson(model, record, wire));
}

/** The first element of output `name`, from raw_output_contents or typed contents. */
export function firstOutput(res: ModelInferResponse, name: string): number {
  const i = res.outputs.findIndex((o) => o.name === name);
  const out = res.outputs[i];
  if (!out)
    throw new Error(
      `no output "${name}" in the response (outputs: ${res.outputs.map((o) => o.name).join(', ')})`,
    );
  const raw = res.rawOutputContents[i];
  if (raw !== undefined && raw.length > 0) {
    switch (out.datatype) {
      case 'FP32':
        return raw.readFloatLE(0);
      case 'FP64':
        return raw.readDoubleLE(0);
      case 'INT64':
        return Number(raw.readBigInt64LE(0));
      case 'INT32':
        return raw.readInt32LE(0);
      default:
        throw new Error(`output "${name}" has datatype ${out.datatype}, not a number`);
    }
  }
  const c = out.contents;
  const v = c?.fp32Contents[0] ?? c?.fp64Contents[0] ?? c?.int64Contents[0] ?? c?.intContents[0];
  if (v === undefined) throw new Error(`output "${name}" is empty`);
  return v;
}

function infer(client: GRPCInferenceServiceClient, req: ModelInferRequest): Promise<ModelInferResponse> {
  return new Promise((resolve, reject) =>
    client.modelInfer(req, new Metadata(), { deadline: Date.now() + 10_000 }, (err, res) =>
      err ? reject(err) : resolve(res),
    ),
  );
}

/**
 * The version `host` (this server) answers `model` with, from a ModelInfer of
 * `record`: the peers must load that one. A pin in MODEL_VERSION_POLICY does not
 * decide it when the model has version labels (models/conversion/labels.json):
 * a server without a role serves its label.
 */
export async function servedVersion(
  host: string,
  model: string,
  record: AgreementRecord['record'],
): Promise<string> {
  const client = oipClientFor(host);
  try {
    const res = await infer(client, inferRequest(model, record, REFERENCE_WIRE));
    if (!res.modelVersion) throw new Error(`${host} answered ${model} without a model_version`);
    return res.modelVersion;
  } finally {
    client.close();
  }
}

export interface Agreement {
  readonly records: number;
  readonly agrees: boolean;
  /** Largest |score difference| over the records both answered. */
  readonly maxAbsDiff: number;
  readonly labelMismatches: number;
  /** Why it does not agree: the first record that differs or failed. */
  readonly firstProblem?: string;
}

/**
 * Sends every record to `reference` (this server) and to `peer` and compares
 * `score` and `label`. Never rejects: a failed call is a disagreement.
 */
export async function scoreAgreement(o: {
  readonly reference: string;
  readonly peer: string;
  readonly peerWire: PeerWire;
  readonly model: string;
  readonly records: readonly AgreementRecord[];
  readonly tolerance?: number;
}): Promise<Agreement> {
  const tolerance = o.tolerance ?? SCORE_TOLERANCE;
  const ours = oipClientFor(o.reference);
  const theirs = oipClientFor(o.peer);
  let maxAbsDiff = 0;
  let labelMismatches = 0;
  let firstProblem: string | undefined;
  const problem = (text: string) => {
    firstProblem ??= text;
  };
  try {
    if (o.records.length === 0) problem('no records to compare');
    for (const { id, record } of o.records) {
      let a: ModelInferResponse;
      let b: ModelInferResponse;
      try {
        a = await infer(ours, inferRequest(o.model, record, REFERENCE_WIRE));
      } catch (err) {
        problem(`${id}: this server failed: ${(err as Error).message}`);
        continue;
      }
      try {
        b = await infer(theirs, inferRequest(o.model, record, o.peerWire));
      } catch (err) {
        problem(`${id}: the peer failed: ${(err as Error).message}`);
        continue;
      }
      try {
        const [sa, sb] = [firstOutput(a, 'score'), firstOutput(b, 'score')];
        const [la, lb] = [firstOutput(a, 'label'), firstOutput(b, 'label')];
        const d = Math.abs(sa - sb);
        maxAbsDiff = Math.max(maxAbsDiff, Number.isNaN(d) ? Number.POSITIVE_INFINITY : d);
        if (!(d <= tolerance))
          problem(`${id}: score ${sb} vs this server's ${sa} (|Δ| ${d.toExponential(2)})`);
        if (la !== lb) {
          labelMismatches++;
          problem(`${id}: label ${lb} vs this server's ${la}`);
        }
      } catch (err) {
        problem(`${id}: ${(err as Error).message}`);
      }
    }
  } finally {
    ours.close();
    theirs.close();
  }
  return {
    records: o.records.length,
    agrees: firstProblem === undefined,
    maxAbsDiff,
    labelMismatches,
    ...(firstProblem !== undefined ? { firstProblem } : {}),
  };
}

/** One line for the report. */
export function agreementText(a: Agreement, tolerance = SCORE_TOLERANCE): string {
  return a.agrees
    ? `same scores on ${a.records} golden records (max |Δ| ${a.maxAbsDiff.toExponential(1)} ≤ ${tolerance}), same labels`
    : `DISAGREES (${a.firstProblem}); not timed`;
}
