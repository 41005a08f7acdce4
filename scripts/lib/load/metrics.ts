/**
 * Reads the servers' Prometheus metrics around a load test, to observe what
 * ghz cannot: ghz's report has no response bodies, so the A/B split (the
 * response's `arm` and each prediction's `group`) is taken from the servers'
 * own counter `inference_ab_assignments_total{arm,group,label}`, scraped
 * before and after the run and diffed. Scrapes during the run give a live
 * count of served calls for the progress line.
 *
 * The counters count every client's traffic, so the diff includes anything
 * else that hit the servers during the run; the summary compares the total
 * with ghz's successful calls to make that visible.
 */
import { parseSamples, type Sample } from '../prometheus.js';

/** The metrics URL of an endpoint given as `host:port` or a full http(s) URL. */
export function metricsUrl(endpoint: string): string {
  return /^https?:\/\//.test(endpoint) ? endpoint : `http://${endpoint}/metrics`;
}

const AB_METRIC = 'inference_ab_assignments_total';
const REQUESTS_METRIC = 'inference_requests_total';
const WANTED = new Set([AB_METRIC, REQUESTS_METRIC]);

/** The samples of each endpoint that answered, at one moment. */
export interface Snapshot {
  /** endpoint → samples; endpoints that did not answer are absent. */
  readonly byEndpoint: ReadonlyMap<string, readonly Sample[]>;
  /** endpoint → why it could not be read. */
  readonly failures: ReadonlyMap<string, string>;
}

/** Scrapes every endpoint in parallel; never throws. */
export async function snapshot(endpoints: readonly string[], timeoutMs = 1000): Promise<Snapshot> {
  const byEndpoint = new Map<string, Sample[]>();
  const failures = new Map<string, string>();
  await Promise.all(
    endpoints.map(async (ep) => {
      try {
        const res = await fetch(metricsUrl(ep), { signal: AbortSignal.timeout(timeoutMs) });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        byEndpoint.set(ep, parseSamples(await res.text(), WANTED));
      } catch (err) {
        // fetch says only "fetch failed"; the reason (ECONNREFUSED, …) is in its cause.
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        failures.set(ep, cause?.code ?? cause?.message ?? (err as Error).message);
      }
    }),
  );
  return { byEndpoint, failures };
}

/** Calls of `method` (Predict by default) the servers have answered so far (any status), summed over endpoints. */
export function predictCalls(snap: Snapshot, method = 'Predict'): number {
  let n = 0;
  for (const samples of snap.byEndpoint.values()) {
    for (const s of samples) if (s.name === REQUESTS_METRIC && s.labels.method === method) n += s.value;
  }
  return n;
}

/** Predictions during a run, by arm, group, and arm/group/label. */
export interface AbSplit {
  readonly total: number;
  readonly byArm: Readonly<Record<string, number>>;
  readonly byGroup: Readonly<Record<string, number>>;
  /** Positive (label 1) predictions per arm. */
  readonly positivesByArm: Readonly<Record<string, number>>;
  /** Endpoints read both before and after. */
  readonly endpoints: readonly string[];
  /** Endpoints missing before or after, with the reason. */
  readonly unreachable: Readonly<Record<string, string>>;
}

/** A series is its full label set (model and version too: a version swap mid-run starts new series). */
function seriesKey(s: Sample): string {
  return JSON.stringify(Object.entries(s.labels).sort(([a], [b]) => a.localeCompare(b)));
}

/**
 * The A/B assignments made between two snapshots. A counter that went down
 * was reset (the server restarted), so its whole `after` value counts, as
 * Prometheus' `increase()` treats resets.
 */
export function abSplit(before: Snapshot, after: Snapshot): AbSplit {
  const byArm: Record<string, number> = {};
  const byGroup: Record<string, number> = {};
  const positivesByArm: Record<string, number> = {};
  const endpoints: string[] = [];
  const unreachable: Record<string, string> = {};
  for (const [ep, why] of [...before.failures, ...after.failures]) unreachable[ep] ??= why;
  let total = 0;
  for (const [ep, afterSamples] of after.byEndpoint) {
    const beforeSamples = before.byEndpoint.get(ep);
    if (!beforeSamples) continue;
    endpoints.push(ep);
    const prev = new Map<string, number>();
    for (const s of beforeSamples) if (s.name === AB_METRIC) prev.set(seriesKey(s), s.value);
    for (const s of afterSamples) {
      if (s.name !== AB_METRIC) continue;
      const p = prev.get(seriesKey(s)) ?? 0;
      const d = s.value >= p ? s.value - p : s.value;
      if (d === 0) continue;
      const arm = s.labels.arm ?? '';
      const group = s.labels.group ?? '';
      byArm[arm] = (byArm[arm] ?? 0) + d;
      byGroup[group] = (byGroup[group] ?? 0) + d;
      if (s.labels.label === '1') positivesByArm[arm] = (positivesByArm[arm] ?? 0) + d;
      total += d;
    }
  }
  return { total, byArm, byGroup, positivesByArm, endpoints, unreachable };
}
