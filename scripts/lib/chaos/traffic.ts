/**
 * Continuous traffic for the chaos suite: Predict calls through Envoy at a
 * fixed concurrency, each with its own `x-user-id` (`chaos-<n>`), so a failed
 * call can be found in Envoy's access log. Bounded in count and in time.
 */
import { credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { InferenceServiceClient } from '../../../server/generated/inference/v1/inference.js';
import { USER_ID_HEADER } from '../../../server/headers.js';
import { SEED_RECORD } from '../load/payload.js';

export interface CallOutcome {
  readonly user: string;
  readonly startedAt: number;
  readonly endedAt: number;
  /** gRPC status code (0 = OK). */
  readonly code: number;
  readonly details: string;
}

export class Traffic {
  readonly outcomes: CallOutcome[] = [];
  private seq = 0;
  private stopped = false;
  private readonly client: InferenceServiceClient;
  private readonly done: Promise<void>;

  constructor(
    target: string,
    readonly limits: { concurrency: number; deadlineMs: number; maxCalls: number; maxMs: number },
  ) {
    this.client = new InferenceServiceClient(target, credentials.createInsecure());
    const until = Date.now() + limits.maxMs;
    this.done = Promise.all(
      Array.from({ length: limits.concurrency }, async () => {
        while (!this.stopped && this.seq < limits.maxCalls && Date.now() < until) {
          this.outcomes.push(await this.one(`chaos-${this.seq++}`));
        }
      }),
    ).then(() => undefined);
  }

  /** Calls sent so far. */
  get sent(): number {
    return this.seq;
  }

  private one(user: string): Promise<CallOutcome> {
    const md = new Metadata();
    md.set(USER_ID_HEADER, user);
    const startedAt = Date.now();
    return new Promise((resolve) => {
      this.client.predict(
        { model: 'conversion', version: '', requestId: '', instances: [{ ...SEED_RECORD }] },
        md,
        { deadline: startedAt + this.limits.deadlineMs },
        (err: ServiceError | null) =>
          resolve({
            user,
            startedAt,
            endedAt: Date.now(),
            code: err ? err.code : status.OK,
            details: err ? err.details : '',
          }),
      );
    });
  }

  /** Outcomes of calls started in [from, to). */
  between(from: number, to: number): CallOutcome[] {
    return this.outcomes.filter((o) => o.startedAt >= from && o.startedAt < to);
  }

  async stop(): Promise<CallOutcome[]> {
    this.stopped = true;
    await this.done;
    this.client.close();
    return this.outcomes;
  }
}
