/**
 * Runs chaos faults one after another against one stack under continuous
 * traffic, and judges each: calls sent and failed while it lasted, failures
 * the fault may cost (proved from Envoy's access log), time from the
 * injection until the stack routed around it and until it was back to
 * normal (and how much of that came after the remedy), and peak RSS.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { AccessLogEntry } from '../envoy/access-log-entry.js';
import { type Fault, whenTrue } from './faults.js';
import type { ChaosStack } from './stack.js';
import type { CallOutcome, Traffic } from './traffic.js';

export type Verdict = 'PASS' | 'FAIL' | 'NOT RUN';

export interface FaultResult {
  readonly fault: string;
  readonly what: string;
  readonly verdict: Verdict;
  /** Why it failed or did not run. */
  readonly reason?: string;
  readonly calls: number;
  readonly failed: number;
  /** Failures proved to be the documented unretryable case. */
  readonly documented: number;
  /** Injection → the stack stops sending traffic into the fault (when the fault has such a moment). */
  readonly absorbedMs?: number;
  /** Injection → the remedy applied (the hold, plus e.g. a restart). */
  readonly remedyMs?: number;
  /** Injection → back to normal (after the remedy). */
  readonly recoveredMs?: number;
  /** Peak resident memory during the fault, MB. */
  readonly peakRssMb: { readonly stable: number; readonly canary: number; readonly envoy: number };
  /** The failures, for the report: code and message, and Envoy's entry. */
  readonly failures: readonly { readonly call: CallOutcome; readonly entry: AccessLogEntry | undefined }[];
}

export interface RunOptions {
  readonly stack: ChaosStack;
  readonly traffic: Traffic;
  readonly say: (line: string) => void;
  /** Quiet traffic before each fault and after its recovery. */
  readonly settleMs: number;
  /** Longest wait for a recovery. */
  readonly recoverTimeoutMs: number;
}

/**
 * Judges one fault's calls: PASS when every failed call is one the fault may
 * cost (`allowed`, given Envoy's access log entry for it, and begun before the
 * fault was in: no later call can have been caught by it) and it recovered.
 */
export function judge(
  fault: Pick<Fault, 'allowed'>,
  calls: readonly CallOutcome[],
  entryOf: (user: string) => AccessLogEntry | undefined,
  recovered: boolean,
  injectedAt: number,
): { verdict: Verdict; reason?: string; failures: FaultResult['failures']; documented: number } {
  const failures = calls.filter((c) => c.code !== 0).map((call) => ({ call, entry: entryOf(call.user) }));
  const documented = failures.filter(
    (f) => f.call.startedAt <= injectedAt && fault.allowed?.(f.entry) === true,
  ).length;
  if (!recovered) return { verdict: 'FAIL', reason: 'did not recover in time', failures, documented };
  if (documented < failures.length) {
    return {
      verdict: 'FAIL',
      reason: `${failures.length - documented} failed call(s) not explained by the fault's documented case`,
      failures,
      documented,
    };
  }
  return { verdict: 'PASS', failures, documented };
}

export async function runFault(fault: Fault, o: RunOptions): Promise<FaultResult> {
  const { stack, traffic, say } = o;
  const ctx = { stack, say };
  const empty = { stable: 0, canary: 0, envoy: 0 };
  const notRun = fault.unavailable?.(stack);
  if (notRun) {
    return {
      fault: fault.name,
      what: fault.what,
      verdict: 'NOT RUN',
      reason: notRun,
      calls: 0,
      failed: 0,
      documented: 0,
      peakRssMb: empty,
      failures: [],
    };
  }
  await sleep(o.settleMs);
  const peak = { ...empty };
  const sample = () => {
    const r = stack.rss();
    peak.stable = Math.max(peak.stable, r.stable);
    peak.canary = Math.max(peak.canary, r.canary);
    peak.envoy = Math.max(peak.envoy, r.envoy);
  };
  const sampler = setInterval(sample, 100);
  const t0 = Date.now();
  say(`${fault.name}: ${fault.what}`);
  let absorbedAt: number | undefined;
  let recoveredAt: number | undefined;
  let remediedAt: number | undefined;
  let error: string | undefined;
  // When the fault was surely in: a call begun after it cannot be one it cut off.
  let injectedAt = t0;
  try {
    await fault.inject(ctx);
    injectedAt = Date.now();
    const absorbed = fault.absorbed;
    const watching = absorbed ? whenTrue(() => absorbed(ctx), fault.holdMs + o.recoverTimeoutMs) : undefined;
    await sleep(fault.holdMs);
    await fault.remedy(ctx);
    remediedAt = Date.now();
    absorbedAt = await watching;
    recoveredAt = await whenTrue(() => fault.recovered(ctx), o.recoverTimeoutMs);
  } catch (err) {
    error = (err as Error).message;
  }
  await sleep(o.settleMs);
  clearInterval(sampler);
  sample();
  const t1 = Date.now();
  // Let the calls in flight at the end settle, and Envoy flush its access log.
  await sleep(1000);
  const calls = traffic.between(t0, t1);
  const log = stack.accessLog();
  const byUser = new Map(log.map((e) => [e.user ?? '', e]));
  const judged = judge(
    fault,
    calls,
    (u) => byUser.get(u),
    recoveredAt !== undefined && error === undefined,
    injectedAt,
  );
  const result: FaultResult = {
    fault: fault.name,
    what: fault.what,
    verdict: judged.verdict,
    ...(error ? { reason: error } : judged.reason ? { reason: judged.reason } : {}),
    calls: calls.length,
    failed: judged.failures.length,
    documented: judged.documented,
    ...(absorbedAt !== undefined ? { absorbedMs: absorbedAt - t0 } : {}),
    ...(remediedAt !== undefined ? { remedyMs: remediedAt - t0 } : {}),
    ...(recoveredAt !== undefined ? { recoveredMs: recoveredAt - t0 } : {}),
    peakRssMb: { stable: round(peak.stable), canary: round(peak.canary), envoy: round(peak.envoy) },
    failures: judged.failures,
  };
  say(
    `${fault.name}: ${result.verdict} (${result.calls} calls, ${result.failed} failed${result.documented ? `, ${result.documented} documented` : ''})${result.reason ? `: ${result.reason}` : ''}`,
  );
  return result;
}

function round(n: number): number {
  return Math.round(n);
}

/** The results as a Markdown table. */
export function table(results: readonly FaultResult[]): string {
  const ms = (v: number | undefined) => (v === undefined ? '–' : `${(v / 1000).toFixed(2)} s`);
  const rows = results.map((r) =>
    [
      r.fault,
      r.verdict,
      String(r.calls),
      r.documented > 0 ? `${r.failed} (${r.documented} documented)` : String(r.failed),
      ms(r.absorbedMs),
      ms(r.recoveredMs),
      ms(r.recoveredMs !== undefined && r.remedyMs !== undefined ? r.recoveredMs - r.remedyMs : undefined),
      `${r.peakRssMb.stable} / ${r.peakRssMb.canary} / ${r.peakRssMb.envoy}`,
      r.reason ?? '',
    ].join(' | '),
  );
  return [
    '| fault | verdict | calls | failed | routed around | back to normal | of which after the remedy | peak RSS MB stable / canary / envoy | note |',
    '|---|---|---:|---:|---:|---:|---:|---|---|',
    ...rows.map((r) => `| ${r} |`),
  ].join('\n');
}
