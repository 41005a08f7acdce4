/**
 * `RecordOutcomes`: what users did after predictions (a conversion, revenue),
 * recorded so the A/B readout can join outcomes to exposures. The server does
 * not join anything itself: through Envoy the outcome is routed like Predict
 * (by `x-user-id`), so it may reach another replica, or the other arm, than
 * the prediction did. It validates, logs one `event: "outcome"` line per call
 * (the durable record, rotated and archived with the predictions, same
 * pseudonyms) and counts `inference_outcomes_total`. Recording the same
 * outcome twice is harmless: the readout counts each (prediction or user,
 * metric) once.
 */
import type { OutcomeEntry, UserIds } from './call-log.js';
import type { Role } from './config.js';
import { invalidArgument, notFound } from './errors.js';
import type {
  Outcome,
  RecordOutcomesRequest,
  RecordOutcomesResponse,
} from './generated/inference/v1/inference.js';
import type { Labels, Metrics, OutcomeLabels } from './metrics.js';
import type { ModelRepository } from './model-repository.js';
import { checkBatch, isRequestId, isUserId, MODEL_NAME } from './request-validation.js';
import type { CallContext } from './unary-handler.js';

/** Metric names: short, safe as a Prometheus label value and a SQL column. */
export const METRIC_NAME = /^[a-z][a-z0-9_]{0,63}$/;

/** Outcomes older than this, or later than now plus the skew, are refused as mistakes. */
const MAX_AGE_MS = 400 * 86_400_000;
const MAX_CLOCK_SKEW_MS = 5 * 60_000;

export interface OutcomeRecorderDeps {
  readonly repository: ModelRepository;
  readonly metrics: Metrics;
  readonly userIds: UserIds;
  readonly arm: Role;
  readonly maxOutcomes: number;
  readonly clock: () => number;
}

export class OutcomeRecorder {
  constructor(private readonly deps: OutcomeRecorderDeps) {}

  /** Validates every outcome first: one bad outcome records none (the caller fixes and resends). */
  async record(req: RecordOutcomesRequest, ctx: CallContext): Promise<RecordOutcomesResponse> {
    const { metrics, userIds, arm } = this.deps;
    checkBatch(req.outcomes.length, this.deps.maxOutcomes, 'outcomes');
    const now = this.deps.clock();
    const entries = req.outcomes.map((o, i) => this.check(o, i, now));
    const tally = new Map<string, number>();
    for (const e of entries)
      tally.set(`${e.model}|${e.metric}`, (tally.get(`${e.model}|${e.metric}`) ?? 0) + 1);
    for (const [key, count] of tally) {
      const [model = '', metric = ''] = key.split('|');
      const labels: Labels<OutcomeLabels> = { arm, model, metric };
      metrics.outcomes.inc(labels, count);
    }
    ctx.model = entries[0]?.model ?? '';
    ctx.log = {
      event: 'outcome',
      outcomes: entries.map((e) => (e.user === undefined ? e : { ...e, user: userIds.forLog(e.user) })),
    };
    return { recorded: entries.length };
  }

  /** One outcome, checked; the error names `outcomes[i].<field>`. */
  private check(o: Outcome, i: number, now: number): OutcomeEntry {
    const bad = (field: string, what: string) => invalidArgument(`outcomes[${i}].${field} ${what}`);
    if (o.requestId === '' && o.userId === '') {
      throw bad('requestId', 'or userId is required: say which prediction or which user the outcome follows');
    }
    if (o.requestId !== '' && !isRequestId(o.requestId)) {
      throw bad(
        'requestId',
        'must be 1 to 128 printable ASCII characters without spaces (the Predict requestId)',
      );
    }
    if (o.requestId === '' && o.instance !== 0) throw bad('instance', 'needs the requestId it indexes');
    if (!Number.isInteger(o.instance) || o.instance < 0 || o.instance > 65535) {
      throw bad('instance', 'must be the index of the instance in its Predict request (0-65535)');
    }
    if (o.userId !== '' && !isUserId(o.userId))
      throw bad('userId', 'must be 1 to 128 printable ASCII characters');
    if (o.model === '' || !MODEL_NAME.test(o.model)) {
      throw bad('model', 'must name the model the outcome measures (see ListModels)');
    }
    if (!this.deps.repository.list().some((m) => m.name === o.model)) {
      throw notFound(`outcomes[${i}].model names no model this server knows (see ListModels)`);
    }
    if (!METRIC_NAME.test(o.metric)) {
      throw bad('metric', 'must be 1 to 64 of lower-case letters, digits and "_", starting with a letter');
    }
    if (!Number.isFinite(o.value)) throw bad('value', 'must be a finite number (1 or 0 for a conversion)');
    const at = o.occurredAt?.getTime();
    if (at === undefined || Number.isNaN(at))
      throw bad('occurredAt', 'is required: when the outcome happened');
    if (at > now + MAX_CLOCK_SKEW_MS) throw bad('occurredAt', 'is in the future');
    if (at < now - MAX_AGE_MS) throw bad('occurredAt', 'is more than 400 days ago');
    return {
      ...(o.requestId === '' ? {} : { requestId: o.requestId, instance: o.instance }),
      ...(o.userId === '' ? {} : { user: o.userId }),
      model: o.model,
      metric: o.metric,
      value: o.value,
      at: new Date(at).toISOString(),
    };
  }
}
