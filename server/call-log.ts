/**
 * The log records that cross a process boundary: written by the server (one
 * line per call, through the adapter in unary-handler.ts), redacted by the
 * logger (logger.ts), and read back by the A/B readout (scripts/lib/ab/) and
 * the tests. Defined once here, typed, and parsed by the same module that
 * defines them, so renaming a field fails to compile or fails a test instead
 * of silently breaking a report.
 *
 * Every line is pino JSON: `level`, `time` (ISO 8601), `pid`, `msg` (the
 * method), then the fields below.
 */
import { createHmac, hash } from 'node:crypto';
import type { Role } from './config.js';
import type { Group } from './experiment.js';

/** Fields of every call's line, whatever the method. */
export interface CallRecord {
  readonly requestId: string;
  /** The gRPC method: `Predict`, `RecordOutcomes`, `ListModels`, … (also pino's `msg`). */
  readonly method: string;
  /** The model and version the call resolved to; empty when it failed before that. */
  readonly model: string;
  readonly version: string;
  readonly arm: Role;
  /** The gRPC status name: `OK`, `INVALID_ARGUMENT`, … */
  readonly code: string;
  readonly latencyMs: number;
  /** The client-safe message of a failed call. */
  readonly message?: string;
}

/** One scored instance of a Predict call, in request order. */
export interface PredictionOutput {
  readonly score: number;
  readonly label: 0 | 1;
  readonly group: Group;
  readonly action: 0 | 1;
  /**
   * The A/B key of this instance when the request had no `x-user-id` (the
   * instance's own `userId`); absent when the request-level `user` applies.
   */
  readonly user?: string;
}

/** The fields the prediction service adds to a successful Predict's line. */
export interface PredictionFields {
  readonly event: 'prediction';
  /** The stage-2 experiment the canary assigned under (`EXPERIMENT_NAME`). */
  readonly experiment: string;
  /** The request's A/B key (`x-user-id`), pseudonymised unless `LOG_USER_IDS=raw`. */
  readonly user?: string;
  /**
   * The arm the caller forced with a valid `x-ab-group` (Envoy's QA listener
   * routes on it; the public one removes it): not a randomised call. Absent
   * otherwise, so an ordinary line is no longer.
   */
  readonly forced?: Role;
  /**
   * Present (`true`) when the request named its version (Predict `version`,
   * ModelInfer `model_version`) instead of being served the arm's label: not
   * a randomised call. `version` says which.
   */
  readonly pinned?: true;
  readonly outputs: readonly PredictionOutput[];
  /** The raw records, logged when `LOG_INPUTS` is on, with `LOG_REDACT_FIELDS` masked. */
  readonly inputs?: readonly Readonly<Record<string, unknown>>[];
}

/**
 * The methods whose successful calls write a prediction record (pino's `msg`
 * and the record's `method`): `inference.v1` Predict and the Open Inference
 * Protocol's ModelInfer, which share one prediction path.
 */
export const PREDICTION_METHODS: ReadonlySet<string> = new Set(['Predict', 'ModelInfer']);

/** A successful Predict's (or ModelInfer's) line, as the readout reads it. */
export type PredictionRecord = CallRecord & PredictionFields & { readonly time: string };

/** One business outcome as the server logged it (RecordOutcomes). */
export interface OutcomeEntry {
  /** The Predict `requestId` and instance index this outcome follows, when known. */
  readonly requestId?: string;
  readonly instance?: number;
  /** The user (pseudonymised like predictions' `user`), when the outcome names one. */
  readonly user?: string;
  readonly model: string;
  readonly metric: string;
  readonly value: number;
  /** When the outcome happened (ISO 8601), as the caller said. */
  readonly at: string;
}

/** The fields the outcome service adds to a successful RecordOutcomes line. */
export interface OutcomeFields {
  readonly event: 'outcome';
  readonly outcomes: readonly OutcomeEntry[];
}

/** A successful RecordOutcomes line, as the readout reads it. */
export type OutcomeRecord = CallRecord & OutcomeFields & { readonly time: string };

/** What a handler may add to its call's line. */
export type CallFields = PredictionFields | OutcomeFields;

/** The path of each logged instance's raw fields, for pino's redaction. */
export function inputRedactPaths(fields: readonly string[]): string[] {
  return fields.map((f) => `inputs[*].${f}`);
}

/** How user ids are written to logs. */
export type UserIdLogging = 'pseudonym' | 'raw';

/**
 * Keyed, non-reversible pseudonyms of user ids: the same user gives the same
 * token (so the readout still counts users and joins outcomes to predictions
 * across both arms, given both share the key), and a token reveals nothing
 * without the key. `p_` + 22 base64url characters of HMAC-SHA256(key, user):
 * 132 bits, far beyond any collision among the notes' 300 M daily users.
 */
export class UserIds {
  /** HMAC's inner block (key ⊕ ipad) followed by room for the user, and the outer block (key ⊕ opad, digest). */
  private readonly inner: Buffer | undefined;
  private readonly outer: Buffer | undefined;

  constructor(
    private readonly mode: UserIdLogging,
    private readonly key: string,
  ) {
    const k = Buffer.from(key, 'utf8');
    // RFC 2104 with SHA-256 (64-byte blocks): a key longer than a block is hashed first; keep
    // createHmac for that rare case rather than a second code path.
    if (k.length <= HMAC_BLOCK) {
      this.inner = Buffer.alloc(HMAC_BLOCK + MAX_FAST_USER);
      this.outer = Buffer.alloc(HMAC_BLOCK + 32);
      for (let i = 0; i < HMAC_BLOCK; i++) {
        const b = k[i] ?? 0;
        this.inner[i] = b ^ 0x36;
        this.outer[i] = b ^ 0x5c;
      }
    }
  }

  /** The token to log for `user`. */
  forLog(user: string): string {
    if (this.mode === 'raw') return user;
    return `p_${this.mac(user).slice(0, 22)}`;
  }

  /**
   * HMAC-SHA256(key, user) in base64url. Per call, createHmac imports the key
   * and builds two hash contexts; two one-shot hashes over precomputed pads
   * give the same bytes in half the time. User ids are printable ASCII
   * (isUserId), so latin1 is their UTF-8; anything else takes createHmac.
   */
  private mac(user: string): string {
    const inner = this.inner;
    const outer = this.outer;
    if (inner === undefined || outer === undefined || user.length > MAX_FAST_USER || !ASCII.test(user)) {
      return createHmac('sha256', this.key).update(user).digest('base64url');
    }
    const n = inner.write(user, HMAC_BLOCK, 'latin1');
    hash('sha256', inner.subarray(0, HMAC_BLOCK + n), 'buffer').copy(outer, HMAC_BLOCK);
    return hash('sha256', outer, 'base64url');
  }
}

const HMAC_BLOCK = 64;
const MAX_FAST_USER = 256;
const ASCII = /^[\x20-\x7e]*$/;

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;
const isStr = (v: unknown): v is string => typeof v === 'string';
const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
const GROUPS: ReadonlySet<string> = new Set<Group>(['baseline', 'experiment', 'control', 'canary_negative']);

function callFields(o: Record<string, unknown>): boolean {
  return (
    isStr(o.requestId) &&
    isStr(o.method) &&
    isStr(o.model) &&
    isStr(o.version) &&
    (o.arm === 'stable' || o.arm === 'canary') &&
    isStr(o.code) &&
    isNum(o.latencyMs) &&
    isStr(o.time)
  );
}

function isOutput(v: unknown): v is PredictionOutput {
  return (
    isObj(v) &&
    isNum(v.score) &&
    (v.label === 0 || v.label === 1) &&
    isStr(v.group) &&
    GROUPS.has(v.group) &&
    (v.action === 0 || v.action === 1) &&
    (v.user === undefined || isStr(v.user))
  );
}

/**
 * A parsed log line when it is a successful Predict's record with every field
 * the readout relies on, else undefined (other methods, failed calls, lines
 * of other programs, or a record missing a field).
 */
export function asPredictionRecord(line: unknown): PredictionRecord | undefined {
  if (!isObj(line) || line.event !== 'prediction' || line.code !== 'OK' || !callFields(line))
    return undefined;
  if (!isStr(line.experiment) || (line.user !== undefined && !isStr(line.user))) return undefined;
  if (line.forced !== undefined && line.forced !== 'stable' && line.forced !== 'canary') return undefined;
  if (line.pinned !== undefined && line.pinned !== true) return undefined;
  if (!Array.isArray(line.outputs) || line.outputs.length === 0 || !line.outputs.every(isOutput))
    return undefined;
  return line as unknown as PredictionRecord;
}

function isOutcome(v: unknown): v is OutcomeEntry {
  return (
    isObj(v) &&
    isStr(v.model) &&
    isStr(v.metric) &&
    isNum(v.value) &&
    isStr(v.at) &&
    (v.requestId === undefined || isStr(v.requestId)) &&
    (v.instance === undefined || (isNum(v.instance) && Number.isInteger(v.instance))) &&
    (v.user === undefined || isStr(v.user)) &&
    (v.requestId !== undefined || v.user !== undefined)
  );
}

/** A parsed log line when it is a successful RecordOutcomes record, else undefined. */
export function asOutcomeRecord(line: unknown): OutcomeRecord | undefined {
  if (!isObj(line) || line.event !== 'outcome' || line.code !== 'OK' || !callFields(line)) return undefined;
  if (!Array.isArray(line.outcomes) || !line.outcomes.every(isOutcome)) return undefined;
  return line as unknown as OutcomeRecord;
}

/** The A/B key of output `i` of a prediction record: its own, else the request's. */
export function userOfOutput(record: PredictionRecord, i: number): string | undefined {
  return record.outputs[i]?.user ?? record.user;
}
