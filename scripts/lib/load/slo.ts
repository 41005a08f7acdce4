/**
 * Service level objectives for a load test and the verdicts of one run
 * against them.
 */
import type { RunSummary } from './summary.js';

/** Service level objectives for one run. */
export interface Slo {
  /** p99 must be strictly below this (the seed notes: RT < 100 ms). */
  readonly p99Ms: number;
  /** Largest acceptable share of failed calls, 0..1 (0: none may fail). */
  readonly maxErrorRate: number;
  /** Smallest acceptable achieved rate, if any. */
  readonly minRps?: number;
}

/** The seed notes' numbers: RT under 100 ms, and no request may fail. */
export const DEFAULT_SLO: Slo = Object.freeze({ p99Ms: 100, maxErrorRate: 0 });

export interface SloVerdict {
  readonly name: 'p99' | 'error-rate' | 'min-rps' | 'requests';
  readonly ok: boolean;
  /** One line a person can read: measured value, comparison, limit. */
  readonly detail: string;
}

function fmt(n: number, digits = 2): string {
  return n.toFixed(digits);
}

/**
 * Judges a run against `slo`. A run with no calls at all fails ("requests"),
 * and so does a p99 SLO when no call succeeded: there is nothing to measure.
 */
export function checkSlo(summary: RunSummary, slo: Slo): SloVerdict[] {
  const verdicts: SloVerdict[] = [];
  verdicts.push(
    summary.count > 0
      ? { name: 'requests', ok: true, detail: `${summary.count} calls completed` }
      : { name: 'requests', ok: false, detail: 'no call completed' },
  );
  const p99 = summary.latencyMs.p99;
  verdicts.push(
    p99 === undefined
      ? { name: 'p99', ok: false, detail: `p99 unknown (no successful call) — limit < ${slo.p99Ms} ms` }
      : {
          name: 'p99',
          ok: p99 < slo.p99Ms,
          detail: `p99 ${fmt(p99)} ms ${p99 < slo.p99Ms ? '<' : '≥'} ${slo.p99Ms} ms`,
        },
  );
  const rate = summary.errorRate;
  const rateOk = rate <= slo.maxErrorRate;
  verdicts.push({
    name: 'error-rate',
    ok: rateOk,
    detail: `errors ${summary.errorCount}/${summary.count} (${fmt(rate * 100, 3)}%) ${rateOk ? '≤' : '>'} ${fmt(slo.maxErrorRate * 100, 3)}%`,
  });
  if (slo.minRps !== undefined) {
    const ok = summary.rps >= slo.minRps;
    verdicts.push({
      name: 'min-rps',
      ok,
      detail: `rps ${fmt(summary.rps, 1)} ${ok ? '≥' : '<'} ${slo.minRps}`,
    });
  }
  return verdicts;
}
