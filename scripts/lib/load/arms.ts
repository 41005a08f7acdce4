/**
 * Latency and errors per A/B arm, from a report whose calls carry the arm
 * that answered them (the project's generator reads it from Envoy's
 * `x-ab-arm` response header; h2-generator.ts). ghz's report has no
 * response headers, so its calls carry no arm and there is nothing to split.
 */
import type { GhzDetail, GhzReport } from './ghz-report.js';
import { canonicalStatus } from './summary.js';

/** One arm's calls: latencies of the successful ones (ms), failures by canonical status. */
export interface ArmFigures {
  /** `stable`, `canary`, or `(no arm)` for calls no arm answered (refused before routing, say). */
  readonly arm: string;
  readonly count: number;
  readonly okCount: number;
  readonly errorCount: number;
  readonly errors: Readonly<Record<string, number>>;
  readonly p50Ms: number | undefined;
  readonly p90Ms: number | undefined;
  readonly p99Ms: number | undefined;
  readonly maxMs: number | undefined;
}

/** The name under which calls without an arm are counted. */
export const NO_ARM = '(no arm)';

const ARM_ORDER = ['stable', 'canary'];

type ArmDetail = GhzDetail & { readonly arm?: string };

/** True when the report's calls say which arm answered them. */
export function hasArms(report: GhzReport): boolean {
  return report.details.some((d) => typeof (d as ArmDetail).arm === 'string');
}

/** Nearest-rank percentile, as ghz computes its own. */
function rank(sorted: Float64Array, q: number): number | undefined {
  return sorted.length === 0 ? undefined : sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)];
}

/** Per-arm figures, stable then canary then any other arm, `(no arm)` last; undefined without arms. */
export function perArm(report: GhzReport): ArmFigures[] | undefined {
  if (!hasArms(report)) return undefined;
  const by = new Map<string, { lat: number[]; count: number; errors: Record<string, number> }>();
  for (const d of report.details as readonly ArmDetail[]) {
    const arm = d.arm || NO_ARM;
    const a = by.get(arm) ?? { lat: [], count: 0, errors: {} };
    a.count++;
    if (d.error === '') a.lat.push(d.latency / 1e6);
    else {
      const s = canonicalStatus(d.status).name;
      a.errors[s] = (a.errors[s] ?? 0) + 1;
    }
    by.set(arm, a);
  }
  const order = (x: string) => (x === NO_ARM ? 1e9 : ARM_ORDER.indexOf(x) >= 0 ? ARM_ORDER.indexOf(x) : 100);
  return [...by]
    .sort((x, y) => order(x[0]) - order(y[0]) || x[0].localeCompare(y[0]))
    .map(([arm, a]) => {
      const sorted = Float64Array.from(a.lat).sort();
      return {
        arm,
        count: a.count,
        okCount: a.lat.length,
        errorCount: a.count - a.lat.length,
        errors: a.errors,
        p50Ms: rank(sorted, 0.5),
        p90Ms: rank(sorted, 0.9),
        p99Ms: rank(sorted, 0.99),
        maxMs: sorted.length === 0 ? undefined : sorted[sorted.length - 1],
      };
    });
}
