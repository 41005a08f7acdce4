/**
 * A gRPC client for the deployment tests: Predict through Envoy with a user id
 * (and optionally the QA override), bounded by a deadline, and a bounded load
 * loop that counts failures by status code.
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import {
  InferenceServiceClient,
  type PredictResponse,
} from '../../server/generated/inference/v1/inference.js';
import { SAMPLE_RECORD } from '../helpers/server.js';

export { SAMPLE_RECORD };

export function client(port: number): InferenceServiceClient {
  return new InferenceServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
}

export function predict(
  c: InferenceServiceClient,
  user: number,
  o: { readonly override?: 'stable' | 'canary'; readonly deadlineMs?: number } = {},
): Promise<PredictResponse> {
  const md = new Metadata();
  md.set('x-user-id', String(user));
  if (o.override) md.set('x-ab-group', o.override);
  return new Promise((resolve, reject) => {
    c.predict(
      { model: 'conversion', version: '', requestId: '', instances: [{ ...SAMPLE_RECORD, userId: user }] },
      md,
      { deadline: Date.now() + (o.deadlineMs ?? 10_000) },
      (err: ServiceError | null, res?: PredictResponse) => (err || !res ? reject(err) : resolve(res)),
    );
  });
}

/** Calls per arm for `users` distinct users, `concurrency` at a time. */
export async function armsOf(
  c: InferenceServiceClient,
  users: readonly number[],
  concurrency = 16,
): Promise<Record<string, number>> {
  const counts: Record<string, number> = {};
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < users.length) {
        const user = users[next++] as number;
        const r = await predict(c, user);
        counts[r.arm] = (counts[r.arm] ?? 0) + 1;
      }
    }),
  );
  return counts;
}

export interface LoadResult {
  readonly ok: number;
  readonly failed: number;
  readonly codes: Record<string, number>;
}

/**
 * Sends Predicts with distinct users, `concurrency` at a time, until `until`
 * resolves (or `maxCalls` or `maxMs` is reached, whichever first), and counts
 * each outcome.
 */
export async function loadUntil(
  c: InferenceServiceClient,
  until: Promise<unknown>,
  o: {
    readonly firstUser: number;
    readonly concurrency?: number;
    readonly maxCalls?: number;
    readonly maxMs?: number;
  },
): Promise<LoadResult> {
  let done = false;
  void until.finally(() => {
    done = true;
  });
  const deadline = Date.now() + (o.maxMs ?? 60_000);
  const maxCalls = o.maxCalls ?? 50_000;
  let sent = 0;
  let ok = 0;
  let failed = 0;
  const codes: Record<string, number> = {};
  await Promise.all(
    Array.from({ length: o.concurrency ?? 8 }, async () => {
      while (!done && sent < maxCalls && Date.now() < deadline) {
        const user = o.firstUser + sent++;
        try {
          await predict(c, user);
          ok++;
        } catch (err) {
          failed++;
          const code = String((err as ServiceError).code ?? 'error');
          codes[code] = (codes[code] ?? 0) + 1;
        }
      }
    }),
  );
  await until;
  return { ok, failed, codes };
}
