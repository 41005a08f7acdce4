/**
 * What the benchmarks read from a server's `/metrics`: its resident memory
 * (prom-client's `process_resident_memory_bytes`, from /proc/self/status),
 * the model versions it holds, and the mean rows per ONNX Runtime run (which
 * shows whether dynamic batching formed batches).
 */
import { parsePrometheusText } from '../load/metrics.js';

export interface ServerScrape {
  readonly rssBytes: number | undefined;
  /** `model@version (state)` per loaded version. */
  readonly versions: readonly string[];
  /** Mean of `inference_batch_instances` over all models; undefined before any run. */
  readonly meanBatchRows: number | undefined;
  /** ONNX Runtime runs (`inference_batch_instances_count`). */
  readonly runs: number;
}

const WANTED = new Set([
  'process_resident_memory_bytes',
  'inference_model_version_info',
  'inference_batch_instances_sum',
  'inference_batch_instances_count',
]);

export function readServerScrape(text: string): ServerScrape {
  const samples = parsePrometheusText(text, WANTED);
  const rss = samples.find((s) => s.name === 'process_resident_memory_bytes')?.value;
  const versions = samples
    .filter((s) => s.name === 'inference_model_version_info' && s.value === 1)
    .map((s) => `${s.labels.model}@${s.labels.version} (${s.labels.state})`)
    .sort();
  const sum = samples
    .filter((s) => s.name === 'inference_batch_instances_sum')
    .reduce((a, s) => a + s.value, 0);
  const runs = samples
    .filter((s) => s.name === 'inference_batch_instances_count')
    .reduce((a, s) => a + s.value, 0);
  return { rssBytes: rss, versions, meanBatchRows: runs > 0 ? sum / runs : undefined, runs };
}

/** Scrapes `http://127.0.0.1:<port>/metrics`. */
export async function scrapeServer(metricsPort: number): Promise<ServerScrape> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`/metrics on port ${metricsPort} answered HTTP ${res.status}`);
  return readServerScrape(await res.text());
}

export const mib = (bytes: number | undefined) =>
  bytes === undefined ? 'n/a' : `${(bytes / 2 ** 20).toFixed(1)} MiB`;
