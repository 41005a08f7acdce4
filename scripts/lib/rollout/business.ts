/**
 * The business metric beside the SLOs: the experiment readout
 * (scripts/lib/ab/readout.ts) over the servers' logs, as a rollout check.
 *
 *   guard    (default) a step fails when the readout finds stable the winner or a
 *            sample-ratio mismatch (the assignment is broken); otherwise it passes,
 *            because outcomes lag predictions by hours or days and "no verdict yet"
 *            must not hold a rollout that the SLOs clear
 *   require  as guard, and `promote` needs the readout over the whole trial to name
 *            the canary the winner, or no difference (a non-inferiority rollout)
 *   off      no business check
 */
import { existsSync } from 'node:fs';
import { DEFAULT_READOUT_OPTIONS, type Readout, readout } from '../ab/readout.js';
import type { Check } from './analysis.js';

export type BusinessMode = 'off' | 'guard' | 'require';

export interface BusinessOptions {
  readonly mode: BusinessMode;
  /** The servers' log directories (both arms), as ab-report reads them. */
  readonly logs: readonly string[];
  readonly experimentShare: number;
  readonly pseudonymKey: string;
  readonly metric?: string;
}

/** The readout of predictions logged since `since`, with the canary's share in force then. */
export async function businessReadout(
  o: BusinessOptions,
  window: { since: number; canaryShare: number },
): Promise<Readout | string> {
  const logs = o.logs.filter((l) => existsSync(l));
  if (logs.length === 0) return `no server logs at ${o.logs.join(', ')}`;
  try {
    return await readout({
      ...DEFAULT_READOUT_OPTIONS,
      logs,
      experimentShare: o.experimentShare,
      canaryShare: window.canaryShare,
      pseudonymKey: o.pseudonymKey,
      exposure: { ...DEFAULT_READOUT_OPTIONS.exposure, since: window.since },
      ...(o.metric ? { metric: o.metric } : {}),
    });
  } catch (err) {
    return `the readout failed: ${(err as Error).message}`;
  }
}

/** The readout as one check of a step (guard rules above). */
export function businessCheck(r: Readout | string): Check {
  const base = {
    name: 'business',
    canary: undefined,
    stable: undefined,
    delta: undefined,
    limit: 'no stable winner, no SRM',
  };
  if (typeof r === 'string') return { ...base, verdict: 'pass', detail: `not judged: ${r}` };
  const bad = r.verdict === 'srm' || (r.verdict === 'winner' && r.winner === 'stable');
  return {
    ...base,
    verdict: bad ? 'fail' : 'pass',
    detail: `${r.verdict}${r.winner ? ` (${r.winner})` : ''}: ${r.reason}`,
  };
}

/** Whether `promote --business require` may go ahead, and why not. */
export function promoteAllowed(r: Readout | string): { ok: boolean; why: string } {
  if (typeof r === 'string') return { ok: false, why: r };
  if (r.verdict === 'winner' && r.winner === 'canary') return { ok: true, why: r.reason };
  if (r.verdict === 'no-difference') return { ok: true, why: `no difference: ${r.reason}` };
  return { ok: false, why: `${r.verdict}${r.winner ? ` (${r.winner})` : ''}: ${r.reason}` };
}
