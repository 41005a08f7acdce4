/**
 * A latency histogram with logarithmic buckets: each decade (0.1–1 ms,
 * 1–10 ms, …) split into the same number of buckets whose bounds grow by a
 * constant factor. Latencies of a healthy service sit well under a
 * millisecond with a tail tens of times longer; with linear buckets spanning
 * the slowest call, nearly every call falls into the first one (ghz's own
 * histogram put 95% there), so the shape of the body is lost.
 */

export interface LogBucket {
  /** Inclusive lower bound, ms. */
  readonly fromMs: number;
  /** Exclusive upper bound, ms. */
  readonly toMs: number;
  readonly count: number;
}

/**
 * Buckets of `perDecade` per power of ten, from the one holding the fastest
 * latency to the one holding the slowest; empty buckets in between are kept
 * (so the axis stays logarithmic). Latencies ≤ 0 go to the first bucket.
 */
export function logBuckets(latenciesMs: Iterable<number>, perDecade = 5): LogBucket[] {
  const index = (ms: number) => Math.floor(Math.log10(ms) * perDecade + 1e-9);
  const counts = new Map<number, number>();
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  const zeros: number[] = [];
  for (const ms of latenciesMs) {
    if (!(ms > 0)) {
      zeros.push(ms);
      continue;
    }
    const i = index(ms);
    counts.set(i, (counts.get(i) ?? 0) + 1);
    lo = Math.min(lo, i);
    hi = Math.max(hi, i);
  }
  if (zeros.length > 0) {
    if (!Number.isFinite(lo)) lo = hi = 0;
    counts.set(lo, (counts.get(lo) ?? 0) + zeros.length);
  }
  if (!Number.isFinite(lo)) return [];
  const bound = (i: number) => Number((10 ** (i / perDecade)).toPrecision(3));
  const out: LogBucket[] = [];
  for (let i = lo; i <= hi; i++)
    out.push({ fromMs: bound(i), toMs: bound(i + 1), count: counts.get(i) ?? 0 });
  return out;
}
