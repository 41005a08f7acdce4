/**
 * The shape checks every request passes before anything looks it up: names,
 * ids, batch bounds and the A/B key header. Pure functions of the request and
 * its metadata; each failure is INVALID_ARGUMENT with a message that names
 * what was expected and never echoes the value (it may be huge or hostile).
 * What only a model's manifest can decide (each instance's fields) is the
 * preprocessor's (preprocess.ts).
 */
import type { Metadata } from '@grpc/grpc-js';
import type { Role } from './config.js';
import { invalidArgument } from './errors.js';
import { AB_OVERRIDE_HEADER, USER_ID_HEADER } from './headers.js';
import { VERSION_PATTERN } from './model-manifest.js';

/** Model names: directory names under the repository root, 1–128 characters. */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/**
 * Request ids travel back in the `x-request-id` trailer and into logs, so they
 * must be valid ASCII metadata and short: 1–128 printable ASCII characters.
 */
export function isRequestId(s: string): boolean {
  return /^[\x21-\x7e]{1,128}$/.test(s);
}

/**
 * A/B keys (`x-user-id`, or an instance's `userId` when used as one): 1–128
 * printable ASCII characters, spaces allowed. Envoy hashes the header's bytes
 * and the server hashes the string it decoded; outside ASCII the two could
 * differ (grpc-js drops metadata values it cannot decode), so anything else is
 * refused rather than split on a key the proxy never saw.
 */
export function isUserId(s: string): boolean {
  return /^[\x20-\x7e]{1,128}$/.test(s);
}

/** How a protocol names the model reference's fields (`model`/`version`, or OIP's `model_name`/`model_version`). */
export interface ModelRefNames {
  readonly model: string;
  readonly version: string;
}

const MODEL_REF_NAMES: ModelRefNames = { model: 'model', version: 'version' };

/** Checks a model reference: a model name, and a version name or empty (the served version). */
export function checkModelRef(model: string, version: string, names: ModelRefNames = MODEL_REF_NAMES): void {
  if (model === '') throw invalidArgument(`${names.model} is required (see ListModels for what is loaded)`);
  if (!MODEL_NAME.test(model)) {
    throw invalidArgument(`${names.model} must be a model name of 1 to 128 letters, digits, ".", "_" or "-"`);
  }
  if (version !== '' && !VERSION_PATTERN.test(version)) {
    throw invalidArgument(
      `${names.version} must be empty (the served version) or look like 20261120T101500Z`,
    );
  }
}

/** Checks a request id from a request body (`requestId`, or OIP's `id`); empty means "none given". */
export function checkRequestId(requestId: string, name = 'requestId'): string | undefined {
  if (requestId === '') return undefined;
  if (!isRequestId(requestId)) {
    throw invalidArgument(`${name} must be 1 to 128 printable ASCII characters without spaces`);
  }
  return requestId;
}

/** The request's A/B key from `x-user-id`, when present. */
export function headerUser(metadata: Metadata): string | undefined {
  const values = metadata.get(USER_ID_HEADER);
  if (values.length === 0) return undefined;
  const v = values[0];
  if (values.length > 1 || typeof v !== 'string' || !isUserId(v)) {
    throw invalidArgument(`${USER_ID_HEADER} must be one value of 1 to 128 printable ASCII characters`);
  }
  return v;
}

/**
 * The arm a call's `x-ab-group` forces: exactly one value, `stable` or
 * `canary`, the exact matches of Envoy's QA routes (scripts/lib/envoy/config.ts;
 * Envoy joins repeated values with commas before matching, so two values match
 * neither). Any other value is no override there (the call takes the split),
 * so it is not refused here either, only not recorded as forced.
 */
export function forcedArm(metadata: Metadata): Role | undefined {
  const values = metadata.get(AB_OVERRIDE_HEADER);
  const v = values[0];
  return values.length === 1 && (v === 'stable' || v === 'canary') ? v : undefined;
}

/** Checks the number of instances against the per-request limit. */
export function checkBatch(n: number, maxBatchInstances: number, what = 'instances'): void {
  if (n === 0) throw invalidArgument(`${what} is empty; send between 1 and the batch limit of records`);
  if (n > maxBatchInstances) {
    throw invalidArgument(`${what} has ${n} records; the limit is ${maxBatchInstances} per request`);
  }
}

/** A Predict request that passed the shape checks. */
export interface ValidPredict {
  readonly model: string;
  readonly version: string;
  readonly requestId: string | undefined;
  readonly instances: readonly Readonly<Record<string, unknown>>[];
  /** The request-level A/B key (`x-user-id`). */
  readonly user: string | undefined;
}

/** The one validation step of a Predict request, before any lookup. */
export function validatePredict(
  req: {
    readonly model: string;
    readonly version: string;
    readonly requestId: string;
    readonly instances: readonly Readonly<Record<string, unknown>>[];
  },
  metadata: Metadata,
  maxBatchInstances: number,
): ValidPredict {
  const requestId = checkRequestId(req.requestId);
  checkModelRef(req.model, req.version);
  checkBatch(req.instances.length, maxBatchInstances);
  return {
    model: req.model,
    version: req.version,
    requestId,
    instances: req.instances,
    user: headerUser(metadata),
  };
}

/** The instance's own userId, as the A/B key, when it is a usable scalar; else undefined. */
export function instanceUser(instance: Readonly<Record<string, unknown>>): string | undefined {
  const u = instance.userId;
  let s: string | undefined;
  if (typeof u === 'number' && Number.isFinite(u)) s = Number.isInteger(u) ? u.toFixed(0) : String(u);
  else if (typeof u === 'string' && u !== '') s = u;
  return s !== undefined && isUserId(s) ? s : undefined;
}
