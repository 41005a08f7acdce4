/**
 * What the rollout reads from the running system: Envoy's per-arm gRPC stats
 * (admin API), each server's Prometheus metrics, and each server's own account
 * of what it serves (ListModels, asked of every host Envoy routes to).
 */
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import {
  InferenceServiceClient,
  type ListModelsResponse,
  type ModelSummary,
} from '../../../server/generated/inference/v1/inference.js';
import type { EnvoyAdmin } from '../envoy/admin.js';
import { CLUSTER } from '../envoy/config.js';
import { metricsUrl } from '../load/metrics.js';
import { parseSamples } from '../prometheus.js';
import { type Arm, type ArmCounters, DATA_PLANE_METHODS, type Snapshot } from './analysis.js';

/** Envoy clusters that carry each arm's traffic (the canary's weight goes to the aggregate). */
export const ARM_CLUSTERS: Readonly<Record<Arm, readonly string[]>> = {
  stable: [CLUSTER.stable],
  canary: [CLUSTER.canary, CLUSTER.canaryWithFallback],
};

const REQUESTS = 'inference_requests_total';
const DURATION_BUCKET = 'inference_request_duration_seconds_bucket';

/** Where the arms' servers publish metrics. */
export interface MetricsEndpoints {
  readonly stable: readonly string[];
  readonly canary: readonly string[];
}

async function envoyCounters(admin: EnvoyAdmin): Promise<Record<Arm, { total: number; failure: number }>> {
  const methods = DATA_PLANE_METHODS.join('|');
  const stats = await admin.stats(`^cluster\\.[^.]+\\.grpc\\..*\\.(${methods})\\.(total|failure)$`);
  const out: Record<Arm, { total: number; failure: number }> = {
    stable: { total: 0, failure: 0 },
    canary: { total: 0, failure: 0 },
  };
  for (const [name, value] of stats) {
    const m = /^cluster\.([^.]+)\.grpc\..*\.(total|failure)$/.exec(name);
    if (!m) continue;
    const arm = (Object.keys(ARM_CLUSTERS) as Arm[]).find((a) => ARM_CLUSTERS[a].includes(m[1] as string));
    if (arm) out[arm][m[2] as 'total' | 'failure'] += Number(value);
  }
  return out;
}

async function scrape(endpoint: string): Promise<string | undefined> {
  try {
    const res = await fetch(metricsUrl(endpoint), { signal: AbortSignal.timeout(2000) });
    return res.ok ? await res.text() : undefined;
  } catch {
    return undefined;
  }
}

/** The servers' counters of one arm, summed over its endpoints that answered. */
async function serverCounters(arm: Arm, endpoints: readonly string[]): Promise<Omit<ArmCounters, 'envoy'>> {
  const byCode: Record<string, number> = {};
  const buckets = new Map<number, number>();
  let answered = 0;
  const texts = await Promise.all(endpoints.map(scrape));
  for (const text of texts) {
    if (text === undefined) continue;
    answered++;
    for (const s of parseSamples(text, new Set([REQUESTS, DURATION_BUCKET]))) {
      if (!DATA_PLANE_METHODS.includes(s.labels.method ?? '') || s.labels.arm !== arm) continue;
      if (s.name === REQUESTS) {
        const code = s.labels.code ?? 'UNKNOWN';
        byCode[code] = (byCode[code] ?? 0) + s.value;
      } else {
        const le = s.labels.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(s.labels.le);
        if (!Number.isNaN(le)) buckets.set(le, (buckets.get(le) ?? 0) + s.value);
      }
    }
  }
  return { byCode, buckets, endpoints: answered };
}

/** One snapshot of both arms: Envoy's stats (when `admin` is given) and the servers' metrics. */
export async function snapshot(admin: EnvoyAdmin | undefined, metrics: MetricsEndpoints): Promise<Snapshot> {
  const [envoy, stable, canary] = await Promise.all([
    admin ? envoyCounters(admin) : Promise.resolve(undefined),
    serverCounters('stable', metrics.stable),
    serverCounters('canary', metrics.canary),
  ]);
  return {
    at: Date.now(),
    arms: {
      stable: { ...stable, envoy: envoy?.stable },
      canary: { ...canary, envoy: envoy?.canary },
    },
  };
}

/** One server as it describes itself. */
export interface ServerView {
  readonly address: string;
  readonly healthy: boolean;
  /** Undefined when the server did not answer ListModels. */
  readonly list: ListModelsResponse | undefined;
  readonly error: string | undefined;
}

/** The gRPC hosts Envoy routes each arm to (its `/clusters`), with their health. */
export async function armHosts(
  admin: EnvoyAdmin,
): Promise<Record<Arm, { address: string; healthy: boolean }[]>> {
  const clusters = await admin.clusters();
  return {
    stable: (clusters.get(CLUSTER.stable) ?? []).map((h) => ({ address: h.address, healthy: h.healthy })),
    canary: (clusters.get(CLUSTER.canary) ?? []).map((h) => ({ address: h.address, healthy: h.healthy })),
  };
}

/** Asks one server what it serves. */
export function listModels(address: string, timeoutMs = 2000): Promise<ListModelsResponse> {
  const client = new InferenceServiceClient(address, credentials.createInsecure());
  return new Promise<ListModelsResponse>((resolve, reject) =>
    client.listModels(
      {},
      new Metadata(),
      { deadline: Date.now() + timeoutMs },
      (err: ServiceError | null, res) => (err ? reject(err) : resolve(res as ListModelsResponse)),
    ),
  ).finally(() => client.close());
}

/** Every server of both arms, as it describes itself. */
export async function servers(admin: EnvoyAdmin): Promise<Record<Arm, ServerView[]>> {
  const hosts = await armHosts(admin);
  const view = async (h: { address: string; healthy: boolean }): Promise<ServerView> => {
    try {
      return { ...h, list: await listModels(h.address), error: undefined };
    } catch (err) {
      const e = err as ServiceError;
      return { ...h, list: undefined, error: e.details || e.message };
    }
  };
  const [stable, canary] = await Promise.all([
    Promise.all(hosts.stable.map(view)),
    Promise.all(hosts.canary.map(view)),
  ]);
  return { stable, canary };
}

/** The model's summary on one server, if it lists it. */
export function modelOn(view: ServerView, model: string): ModelSummary | undefined {
  return view.list?.models.find((m) => m.name === model);
}
