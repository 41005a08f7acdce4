/**
 * What the benchmarks read from a server's `/metrics`: its resident memory
 * (prom-client's `process_resident_memory_bytes`, from /proc/self/status),
 * the model versions it holds, and the mean rows per ONNX Runtime run (the
 * `inference_batch_instances` histogram, which shows whether dynamic
 * batching formed batches).
 */
import { histogramSeries, parsePrometheus } from '../prometheus.js';

export interface ServerScrape {
  readonly rssBytes: number | undefined;
  /** `model@version (state)` per loaded version. */
  readonly versions: readonly string[];
  /** Mean of `inference_batch_instances` over all models; undefined before any run. */
  readonly meanBatchRows: number | undefined;
  /** ONNX Runtime runs (`inference_batch_instances_count`). */
  readonly runs: number;
}

export function readServerScrape(text: string): ServerScrape {
  const families = parsePrometheus(text);
  const rss = families.get('process_resident_memory_bytes')?.samples[0]?.value;
  const versions = (families.get('inference_model_version_info')?.samples ?? [])
    .filter((s) => s.value === 1)
    .map((s) => `${s.labels.model}@${s.labels.version} (${s.labels.state})`)
    .sort();
  const batches = families.get('inference_batch_instances');
  const series = batches ? histogramSeries(batches) : [];
  const sum = series.reduce((a, s) => a + s.sum, 0);
  const runs = series.reduce((a, s) => a + s.count, 0);
  return { rssBytes: rss, versions, meanBatchRows: runs > 0 ? sum / runs : undefined, runs };
}

/** Scrapes `http://127.0.0.1:<port>/metrics`. */
export async function scrapeServer(metricsPort: number): Promise<ServerScrape> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`/metrics on port ${metricsPort} answered HTTP ${res.status}`);
  return readServerScrape(await res.text());
}

/** `inference_requests_total` summed by gRPC code (`OK`, `UNAVAILABLE`, …) over every label set. */
export function requestsByCode(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of parsePrometheus(text).get('inference_requests_total')?.samples ?? []) {
    const code = s.labels.code ?? '';
    out[code] = (out[code] ?? 0) + s.value;
  }
  return out;
}

/** Calls answered with a status other than OK by the servers on `metricsPorts`, from two scrapes. */
export async function grpcErrorsBetween(
  metricsPorts: readonly number[],
  run: () => Promise<void>,
): Promise<Record<string, number>> {
  const scrape = async () => {
    const all: Record<string, number> = {};
    for (const port of metricsPorts) {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5000) });
      for (const [code, n] of Object.entries(requestsByCode(await res.text())))
        all[code] = (all[code] ?? 0) + n;
    }
    return all;
  };
  const before = await scrape();
  await run();
  const after = await scrape();
  const out: Record<string, number> = {};
  for (const [code, n] of Object.entries(after)) {
    const d = n - (before[code] ?? 0);
    if (code !== 'OK' && d > 0) out[code] = d;
  }
  return out;
}
