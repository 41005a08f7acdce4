/**
 * The numbers `npm run bench` reports, the ratios between them and the
 * verdicts against issue 4's targets, as pure functions of measurements (so
 * they are unit-tested on made-up figures, and no test ever depends on timing).
 */

/** One load phase against one target, as measured by ghz or hey. */
export interface Measurement {
  /** Short name of what was measured, e.g. `direct`, `envoy`, `flask`, `floor`. */
  readonly target: string;
  readonly tool: 'ghz' | 'hey' | 'h2load';
  /** `max`: closed loop; `rate`: paced at `requestedRps`. */
  readonly mode: 'max' | 'rate';
  readonly concurrency: number;
  readonly requestedRps?: number;
  readonly durationMs: number;
  /** The load generator's wall time for the run. */
  readonly elapsedMs: number;
  readonly count: number;
  readonly okCount: number;
  readonly errorCount: number;
  /** Successful calls per second over the run. */
  readonly okRps: number;
  /** Latencies of successful calls, client side, ms. */
  readonly p50Ms: number | undefined;
  readonly p90Ms: number | undefined;
  readonly p99Ms: number | undefined;
  readonly maxMs: number | undefined;
  /** What failed, e.g. `UNAVAILABLE ×3`. */
  readonly errors: readonly string[];
  /** 1-minute load average before and after the phase. */
  readonly load1: readonly [number, number];
  /** CPU time per process during the phase, ms (the target's processes and the load generator). */
  readonly cpuMs?: Readonly<Record<string, number>>;
  /** The main thread's part of `cpuMs`, ms, for the processes watched with `threads`. */
  readonly mainThreadMs?: Readonly<Record<string, number>>;
  /** Successful calls per second of each round, when this combines interleaved rounds. */
  readonly rounds?: readonly number[];
  /** Each round's successful calls and CPU times, when this combines interleaved rounds. */
  readonly roundCpu?: readonly RoundCpu[];
}

/** What one interleaved round of a target counted: its successful calls and each process's CPU ms. */
export interface RoundCpu {
  readonly okCount: number;
  readonly cpuMs: Readonly<Record<string, number>>;
}

function median(xs: readonly number[]): number | undefined {
  if (xs.length === 0) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid] : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/**
 * One measurement from rounds of the same load on the same target, run
 * interleaved with other targets so that a shared machine's changing load
 * falls on every target alike. Counts and CPU times add up; the rate is all
 * successful calls over all rounds' time; latency percentiles are the median
 * of the rounds' (exact merging would need every call), the max the max.
 */
export function combineRounds(rounds: readonly Measurement[]): Measurement {
  const first = rounds[0];
  const last = rounds.at(-1);
  if (!first || !last) throw new Error('combineRounds needs at least one round');
  const sum = (f: (m: Measurement) => number) => rounds.reduce((a, m) => a + f(m), 0);
  const med = (f: (m: Measurement) => number | undefined) =>
    median(rounds.map(f).filter((x): x is number => x !== undefined));
  const elapsedMs = sum((m) => m.elapsedMs);
  const okCount = sum((m) => m.okCount);
  const add = (pick: (m: Measurement) => Readonly<Record<string, number>> | undefined) => {
    const out: Record<string, number> = {};
    for (const m of rounds) for (const [k, v] of Object.entries(pick(m) ?? {})) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  const cpuMs = add((m) => m.cpuMs);
  const mainThreadMs = add((m) => m.mainThreadMs);
  const maxes = rounds.map((m) => m.maxMs).filter((x): x is number => x !== undefined);
  return {
    ...first,
    durationMs: sum((m) => m.durationMs),
    elapsedMs,
    count: sum((m) => m.count),
    okCount,
    errorCount: sum((m) => m.errorCount),
    okRps: elapsedMs > 0 ? okCount / (elapsedMs / 1000) : 0,
    p50Ms: med((m) => m.p50Ms),
    p90Ms: med((m) => m.p90Ms),
    p99Ms: med((m) => m.p99Ms),
    maxMs: maxes.length > 0 ? Math.max(...maxes) : undefined,
    errors: rounds.flatMap((m) => m.errors),
    load1: [first.load1[0], last.load1[1]],
    cpuMs,
    ...(Object.keys(mainThreadMs).length > 0 ? { mainThreadMs } : {}),
    rounds: rounds.map((m) => m.okRps),
    roundCpu: rounds.map((m) => ({ okCount: m.okCount, cpuMs: m.cpuMs ?? {} })),
  };
}

/**
 * CPU microseconds per successful call, per process, and the share of the
 * machine's cores they add up to over the run.
 */
export function cpuPerCall(
  m: Measurement,
  cores: number,
): { process: string; usPerCall: number; coreShare: number }[] {
  if (!m.cpuMs || m.okCount === 0 || m.elapsedMs <= 0) return [];
  return Object.entries(m.cpuMs).map(([process, ms]) => ({
    process,
    usPerCall: (ms * 1000) / m.okCount,
    coreShare: ms / m.elapsedMs / cores,
  }));
}

/** The names under which phases record the CPU of the processes the verdicts weigh. */
export const PROCESS = Object.freeze({
  server: 'server',
  floor: 'floor server',
  envoy: 'Envoy',
  stable: 'stable server',
  canary: 'canary server',
});

/** The issues' targets (4: throughput and the Envoy rate; 14: CPU per call). */
export interface Targets {
  /** Direct throughput ≥ this × the floor's. */
  readonly floorShare: number;
  /** Direct throughput ≥ this × Flask's (and a lower p99). */
  readonly flaskFactor: number;
  /** Through Envoy at `envoyRps`: p99 ≤ this, zero errors. */
  readonly envoyP99Ms: number;
  readonly envoyRps: number;
  /** A paced run counts as "at the rate" when it achieved at least this share of it. */
  readonly minRateShare: number;
  /** Direct server CPU per call ≤ this × the floor's (with the full prediction log line). */
  readonly serverCpuFactor: number;
  /** Through Envoy: Envoy + stable + canary CPU per call ≤ this × the floor's. */
  readonly envoyCpuFactor: number;
  /** Envoy's max throughput ≥ this × direct's. */
  readonly envoyThroughputShare: number;
}

export const DEFAULT_TARGETS: Targets = Object.freeze({
  floorShare: 0.85,
  flaskFactor: 10,
  envoyP99Ms: 10,
  envoyRps: 5000,
  minRateShare: 0.95,
  serverCpuFactor: 1.25,
  envoyCpuFactor: 2,
  envoyThroughputShare: 0.8,
});

/** The side-by-side runs; any may be missing when a target could not be run. */
export interface SideBySide {
  readonly direct?: { readonly max?: Measurement; readonly rate?: Measurement };
  readonly envoy?: {
    readonly max?: Measurement;
    readonly rate?: Measurement;
    /** At the high rate with ghz. */
    readonly high?: Measurement;
    /** The same rate with a leaner load generator (h2load), when installed. */
    readonly highLean?: Measurement;
  };
  readonly flask?: { readonly max?: Measurement; readonly rate?: Measurement };
  readonly floor?: { readonly max?: Measurement; readonly rate?: Measurement };
}

export interface Ratios {
  /** direct max / Flask max. */
  readonly oursOverFlask: number | undefined;
  /** direct max / floor max. */
  readonly oursOverFloor: number | undefined;
  /** Envoy's p99 − direct p99, both at the fixed rate, ms. */
  readonly envoyAddedP99Ms: number | undefined;
  /** Same at p50. */
  readonly envoyAddedP50Ms: number | undefined;
}

function ratio(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined && b > 0 ? a / b : undefined;
}

function diff(a: number | undefined, b: number | undefined): number | undefined {
  return a !== undefined && b !== undefined ? a - b : undefined;
}

export function ratios(s: SideBySide): Ratios {
  return {
    oursOverFlask: ratio(s.direct?.max?.okRps, s.flask?.max?.okRps),
    oursOverFloor: ratio(s.direct?.max?.okRps, s.floor?.max?.okRps),
    envoyAddedP99Ms: diff(s.envoy?.rate?.p99Ms, s.direct?.rate?.p99Ms),
    envoyAddedP50Ms: diff(s.envoy?.rate?.p50Ms, s.direct?.rate?.p50Ms),
  };
}

export type VerdictStatus = 'met' | 'missed' | 'not measured';

export interface Verdict {
  readonly target: string;
  readonly status: VerdictStatus;
  /** The measured values against the target, one line. */
  readonly detail: string;
}

const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const f0 = (n: number) => Math.round(n).toLocaleString('en-US');

/** Judges the side-by-side runs against `t`. */
export function verdicts(s: SideBySide, t: Targets = DEFAULT_TARGETS): Verdict[] {
  const out: Verdict[] = [];
  const r = ratios(s);

  const floorTarget = `direct throughput ≥ ${t.floorShare} × floor`;
  const direct = s.direct?.max;
  const floor = s.floor?.max;
  if (!direct || !floor || r.oursOverFloor === undefined) {
    out.push({ target: floorTarget, status: 'not measured', detail: 'direct or floor run missing' });
  } else {
    const need = t.floorShare * floor.okRps;
    out.push({
      target: floorTarget,
      status: r.oursOverFloor >= t.floorShare ? 'met' : 'missed',
      detail:
        `${f0(direct.okRps)}/s vs floor ${f0(floor.okRps)}/s = ${f2(r.oursOverFloor)}×` +
        (r.oursOverFloor >= t.floorShare ? '' : ` (short by ${f0(need - direct.okRps)}/s)`),
    });
  }

  const flaskTarget = `direct ≥ ${t.flaskFactor} × Flask throughput, at a lower p99`;
  const flask = s.flask?.max;
  const p99Ours = s.direct?.rate?.p99Ms;
  const p99Flask = s.flask?.rate?.p99Ms;
  if (!direct || !flask || r.oursOverFlask === undefined || p99Ours === undefined || p99Flask === undefined) {
    out.push({ target: flaskTarget, status: 'not measured', detail: 'direct or Flask run missing' });
  } else {
    const fast = r.oursOverFlask >= t.flaskFactor;
    const lower = p99Ours < p99Flask;
    const rate = s.direct?.rate?.requestedRps;
    out.push({
      target: flaskTarget,
      status: fast && lower ? 'met' : 'missed',
      detail:
        `${f0(direct.okRps)}/s vs Flask ${f0(flask.okRps)}/s = ${f1(r.oursOverFlask)}×; ` +
        `p99 at ${rate ?? '?'}/s ${f2(p99Ours)} ms vs Flask ${f2(p99Flask)} ms`,
    });
  }

  out.push(rateVerdict(s.envoy?.high, t));
  if (s.envoy?.highLean) out.push(rateVerdict(s.envoy.highLean, t));

  out.push(
    cpuVerdict(
      `server CPU per call ≤ ${t.serverCpuFactor} × floor's (full prediction log line)`,
      direct,
      [PROCESS.server],
      floor,
      t.serverCpuFactor,
      'server',
    ),
  );
  out.push(
    cpuVerdict(
      `through Envoy: Envoy + both servers' CPU per call ≤ ${t.envoyCpuFactor} × floor's`,
      s.envoy?.max,
      [PROCESS.envoy, PROCESS.stable, PROCESS.canary],
      floor,
      t.envoyCpuFactor,
      'Envoy + stable + canary',
    ),
  );
  const envoyShareTarget = `Envoy max throughput ≥ ${t.envoyThroughputShare} × direct`;
  const envoyMax = s.envoy?.max;
  if (!envoyMax || !direct || direct.okRps <= 0) {
    out.push({ target: envoyShareTarget, status: 'not measured', detail: 'Envoy or direct run missing' });
  } else {
    const share = envoyMax.okRps / direct.okRps;
    out.push({
      target: envoyShareTarget,
      status: share >= t.envoyThroughputShare ? 'met' : 'missed',
      detail: `${f0(envoyMax.okRps)}/s vs direct ${f0(direct.okRps)}/s = ${f2(share)}×`,
    });
  }
  return out;
}

/** CPU µs per successful call of `processes` together in `m`; undefined when any was not recorded. */
export function usPerCall(
  m: Pick<Measurement, 'okCount' | 'cpuMs'> | undefined,
  processes: readonly string[],
): number | undefined {
  if (!m?.cpuMs || m.okCount === 0) return undefined;
  let ms = 0;
  for (const p of processes) {
    const x = m.cpuMs[p];
    if (x === undefined) return undefined;
    ms += x;
  }
  return (ms * 1000) / m.okCount;
}

/**
 * The ratio of `ours` to the floor's CPU per call in each interleaved round
 * (round r of both ran in the same pass over the targets), or undefined when
 * the two were not measured in the same rounds. A reader sees from them how
 * far the shared machine moved the one-run ratio.
 */
export function roundRatios(
  ours: Measurement | undefined,
  processes: readonly string[],
  floor: Measurement | undefined,
): number[] | undefined {
  const a = ours?.roundCpu;
  const b = floor?.roundCpu;
  if (!a || !b || a.length !== b.length || a.length < 2) return undefined;
  const out: number[] = [];
  for (let i = 0; i < a.length; i++) {
    const x = usPerCall(a[i], processes);
    const y = usPerCall(b[i], [PROCESS.floor]);
    if (x === undefined || y === undefined || y <= 0) return undefined;
    out.push(x / y);
  }
  return out;
}

function cpuVerdict(
  target: string,
  ours: Measurement | undefined,
  processes: readonly string[],
  floorRun: Measurement | undefined,
  factor: number,
  what: string,
): Verdict {
  const us = usPerCall(ours, processes);
  const floor = usPerCall(floorRun, [PROCESS.floor]);
  if (us === undefined || floor === undefined || floor <= 0) {
    return { target, status: 'not measured', detail: `${what} or floor CPU time missing` };
  }
  const x = us / floor;
  const perRound = roundRatios(ours, processes, floorRun);
  const spread = perRound
    ? ` (rounds ${Math.min(...perRound).toFixed(2)}–${Math.max(...perRound).toFixed(2)}×)`
    : '';
  return {
    target,
    status: x <= factor ? 'met' : 'missed',
    detail: `${what} ${f0(us)} µs vs floor ${f0(floor)} µs per call = ${f2(x)}×${spread}`,
  };
}

/** The fixed-rate target through Envoy, judged on one run (`undefined`: not measured). */
function rateVerdict(high: Measurement | undefined, t: Targets): Verdict {
  const base = `through Envoy at ${f0(t.envoyRps)}/s: p99 ≤ ${t.envoyP99Ms} ms, zero errors`;
  if (!high) return { target: base, status: 'not measured', detail: 'Envoy fixed-rate run missing' };
  const target = `${base}, load generator ${high.tool}`;
  const requested = high.requestedRps ?? t.envoyRps;
  const p99ok = high.p99Ms !== undefined && high.p99Ms <= t.envoyP99Ms;
  const rateOk = high.okRps >= t.minRateShare * requested;
  const errOk = high.errorCount === 0;
  const misses: string[] = [];
  if (!p99ok) misses.push('p99');
  if (!errOk) misses.push('errors');
  if (!rateOk) misses.push(`rate below ${Math.round(t.minRateShare * 100)}% of ${f0(requested)}/s`);
  return {
    target,
    status: misses.length === 0 ? 'met' : 'missed',
    detail:
      `achieved ${f0(high.okRps)}/s, p99 ${high.p99Ms === undefined ? 'n/a' : f2(high.p99Ms)} ms, ` +
      `${high.errorCount} errors of ${high.count}` +
      (misses.length > 0 ? ` (missed: ${misses.join(', ')})` : ''),
  };
}

/** `met` / `MISSED` / `not measured` lines for the console and the report. */
export function verdictLines(vs: readonly Verdict[]): string[] {
  return vs.map(
    (v) =>
      `- ${v.status === 'met' ? 'met' : v.status === 'missed' ? '**MISSED**' : 'not measured'}: ${v.target} — ${v.detail}`,
  );
}

/** The change from `before` to `after` as a signed share: 0.1 is +10%. */
export function change(before: number, after: number): number {
  return before === 0 ? Number.NaN : (after - before) / before;
}

export const pct = (x: number | undefined, digits = 1) =>
  x === undefined || !Number.isFinite(x) ? 'n/a' : `${x >= 0 ? '+' : ''}${(x * 100).toFixed(digits)}%`;

/** Memory growth of one process over a soak, from RSS samples taken in order. */
export interface GrowthResult {
  /** Median RSS of the first third of the samples after warm-up, bytes. */
  readonly baseline: number;
  /** Median RSS of the last third. */
  readonly last: number;
  /** Largest sample after warm-up. */
  readonly peak: number;
  /** (last − baseline) / baseline: the trend, which the target is judged on. */
  readonly growth: number;
  /** (peak − baseline) / baseline: includes the garbage collector's sawtooth. */
  readonly peakGrowth: number;
  readonly samples: number;
}

/**
 * RSS growth after warm-up. Samples before `warmupMs` are ignored. The start
 * and the end of the rest are the medians of its first and last thirds: a
 * Node heap grows and drops by 10-20% between collections, so single samples
 * (or short means) at either end would judge the sawtooth rather than the
 * trend. The peak is reported beside it. Undefined when no sample is past
 * warm-up.
 */
export function rssGrowth(
  samples: readonly { atMs: number; rss: number }[],
  warmupMs: number,
): GrowthResult | undefined {
  const after = samples.filter((s) => s.atMs >= warmupMs).map((s) => s.rss);
  if (after.length === 0) return undefined;
  const k = Math.max(1, Math.floor(after.length / 3));
  const baseline = median(after.slice(0, k)) as number;
  const last = median(after.slice(-k)) as number;
  const peak = Math.max(...after);
  return {
    baseline,
    last,
    peak,
    growth: change(baseline, last),
    peakGrowth: change(baseline, peak),
    samples: after.length,
  };
}
