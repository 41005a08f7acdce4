/**
 * The one code path every prediction takes, whatever protocol carried it
 * (`inference.v1` Predict, the Open Inference Protocol's ModelInfer): lease
 * the version → build its records → preprocess into one Float32Array → score
 * → A/B stage 2 → assignment metrics → the call's prediction log record. The
 * protocols only validate their request shape before it and encode the result
 * after it, so a model, version policy, label, preprocessing rule, assignment
 * or log field cannot differ between them.
 */
import type { PredictionFields, PredictionOutput, UserIds } from './call-log.js';
import type { Role } from './config.js';
import { FieldError, invalidArgument } from './errors.js';
import type { ExperimentAssigner, Group } from './experiment.js';
import type { AssignmentLabels, Labels, Metrics } from './metrics.js';
import type { ModelRepository } from './model-repository.js';
import type { ModelVersion } from './model-version.js';
import { forcedArm, instanceUser } from './request-validation.js';
import type { CallContext } from './unary-handler.js';

export interface PredictionPipelineDeps {
  readonly repository: ModelRepository;
  readonly assigner: ExperimentAssigner;
  readonly metrics: Metrics;
  /** Request time in epoch ms, for age transforms; injected so tests can fix it. */
  readonly clock: () => number;
  /** How user ids appear in the log (pseudonyms by default). */
  readonly userIds: UserIds;
  /** Log each request's raw records (`LOG_INPUTS`), with `LOG_REDACT_FIELDS` masked. */
  readonly logInputs: boolean;
}

/** What a protocol's request names, once its shape checks passed (request-validation.ts). */
export interface PredictionCall {
  readonly model: string;
  /** Empty: the version the label or policy serves. */
  readonly version: string;
  /** The request-level A/B key (`x-user-id`). */
  readonly user: string | undefined;
}

/**
 * The raw records of a call, read against the leased version (ModelInfer's
 * tensors are typed by that version's manifest). Throws a ServingError
 * (INVALID_ARGUMENT) for a request the version cannot read.
 */
export type RecordSource = (version: ModelVersion) => readonly Readonly<Record<string, unknown>>[];

/**
 * Where a refused field sits, in the protocol's own words: Predict says
 * `instances[3].birthday`, ModelInfer `input birthday row 3`. The preprocessor's
 * reason follows it.
 */
export type FieldLocator = (row: number, field: string) => string;

/** One scored record: the model's answer and its A/B assignment. */
export interface ScoredInstance {
  readonly score: number;
  readonly label: 0 | 1;
  readonly group: Group;
  readonly action: 0 | 1;
}

/** A scored batch, in record order. */
export interface ScoredBatch {
  readonly model: string;
  /** The version that actually answered (the served one when the call named none). */
  readonly version: string;
  readonly arm: Role;
  readonly predictions: ScoredInstance[];
}

/** The `label` label's values, by label. */
const LABEL_VALUES = ['0', '1'] as const;
/** The labels, once (not an array per request). */
const LABELS = [0, 1] as const;

export class PredictionPipeline {
  constructor(private readonly deps: PredictionPipelineDeps) {}

  /**
   * Runs one call under a lease on its version. Sets `ctx.model`/`ctx.version`
   * as soon as the version is known (metrics and the log line of a failed call
   * name it too) and `ctx.log` to the prediction record once scored.
   */
  async run(
    call: PredictionCall,
    ctx: CallContext,
    recordsOf: RecordSource,
    locate: FieldLocator,
  ): Promise<ScoredBatch> {
    const { repository, assigner, metrics, userIds } = this.deps;
    const lease = repository.lease(call.model, call.version);
    try {
      const model = lease.version;
      ctx.model = model.name;
      ctx.version = model.version;
      const records = recordsOf(model);
      const n = records.length;
      const width = model.preprocessor.width;
      const rows = new Float32Array(n * width);
      const now = this.deps.clock();
      for (let i = 0; i < n; i++) {
        try {
          model.preprocessor.fill(records[i] as Readonly<Record<string, unknown>>, now, rows, i * width);
        } catch (err) {
          if (err instanceof FieldError) throw invalidArgument(`${locate(i, err.field)} ${err.reason}`);
          throw err;
        }
      }
      const scores = await model.score(rows, n);

      const threshold = model.manifest.threshold;
      const predictions: ScoredInstance[] = new Array(n);
      const outputs: PredictionOutput[] = new Array(n);
      // One counter update per (group, label) per request, not per instance: per group, [label 0, label 1].
      const tally = new Map<Group, [number, number]>();
      for (let i = 0; i < n; i++) {
        const score = scores[i] as number;
        const label = score >= threshold ? 1 : 0;
        const record = records[i] as Readonly<Record<string, unknown>>;
        const own = call.user === undefined ? instanceUser(record) : undefined;
        const { group, action } = assigner.assign(label, call.user ?? own, () => `${ctx.requestId}#${i}`);
        let counts = tally.get(group);
        if (counts === undefined) {
          counts = [0, 0];
          tally.set(group, counts);
        }
        counts[label]++;
        predictions[i] = { score, label, group, action };
        outputs[i] =
          own === undefined
            ? { score, label, group, action }
            : { score, label, group, action, user: userIds.forLog(own) };
      }
      for (const [group, counts] of tally) {
        for (const label of LABELS) {
          if (counts[label] === 0) continue;
          const labels: Labels<AssignmentLabels> = {
            arm: assigner.role,
            model: model.name,
            version: model.version,
            group,
            label: LABEL_VALUES[label],
          };
          metrics.assignments.inc(labels, counts[label]);
        }
      }
      // How the call was routed, for the readout: only randomised calls are
      // exposures. Both fields are left out of an ordinary call's line.
      const forced = forcedArm(ctx.metadata);
      // Built field by field, in the line's order (no spread of a throwaway object per optional field).
      const log: { -readonly [K in keyof PredictionFields]?: PredictionFields[K] } = {
        event: 'prediction',
        experiment: assigner.experimentName,
      };
      if (call.user !== undefined) log.user = userIds.forLog(call.user);
      if (forced !== undefined) log.forced = forced;
      if (call.version !== '') log.pinned = true;
      log.outputs = outputs;
      if (this.deps.logInputs) log.inputs = records;
      ctx.log = log as PredictionFields; // every required field is set by now
      return { model: model.name, version: model.version, arm: assigner.role, predictions };
    } finally {
      lease.release();
    }
  }
}
