/**
 * The markdown tables of a benchmark report: side by side, a measurement
 * per row, CPU per call, and the cells they are made of.
 */
import { cpuPerCall, type Measurement } from './verdicts.js';

const f0 = (n: number) => Math.round(n).toLocaleString('en-US');
const cell = (n: number | undefined, digits = 2) => (n === undefined ? 'n/a' : n.toFixed(digits));
const loadCell = (m: Measurement | undefined) =>
  m ? `${m.load1[0].toFixed(2)}→${m.load1[1].toFixed(2)}` : 'n/a';
const errCell = (m: Measurement | undefined) =>
  m ? (m.errorCount === 0 ? '0' : `${m.errorCount} (${m.errors.slice(0, 2).join('; ')})`) : 'n/a';

export interface TableRow {
  readonly name: string;
  readonly generator: string;
  readonly max?: Measurement;
  readonly rate?: Measurement;
}

/**
 * The side-by-side markdown table: one row per target with max throughput
 * (closed loop) and p50/p99 at the fixed rate, errors and load averages.
 */
export function sideBySideTable(rows: readonly TableRow[]): string {
  const c = rows.find((r) => r.max)?.max?.concurrency;
  const rate = rows.find((r) => r.rate)?.rate?.requestedRps;
  const lines = [
    `| target | load generator | max throughput, ok/s (c=${c ?? '?'}) | p50 ms @${rate ?? '?'}/s | p99 ms @${rate ?? '?'}/s | achieved @${rate ?? '?'}/s | errors (max; rate) | load avg 1m (max; rate) |`,
    '| --- | --- | ---: | ---: | ---: | ---: | --- | --- |',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.name} | ${r.generator} | ${r.max ? f0(r.max.okRps) : 'n/a'} | ${cell(r.rate?.p50Ms)} | ${cell(r.rate?.p99Ms)} | ` +
        `${r.rate ? f0(r.rate.okRps) : 'n/a'} | ${errCell(r.max)}; ${errCell(r.rate)} | ${loadCell(r.max)}; ${loadCell(r.rate)} |`,
    );
  }
  return lines.join('\n');
}

/** A generic table of measurements, one per row, for the extra sections. */
export function measurementTable(
  rows: readonly { readonly name: string; readonly m: Measurement }[],
): string {
  const lines = [
    '| run | load | ok/s | p50 ms | p90 ms | p99 ms | max ms | errors | load avg 1m |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |',
  ];
  for (const { name, m } of rows) {
    const load =
      m.mode === 'max'
        ? `closed loop c=${m.concurrency}`
        : `${f0(m.requestedRps ?? 0)}/s (c=${m.concurrency})`;
    lines.push(
      `| ${name} | ${load} | ${f0(m.okRps)} | ${cell(m.p50Ms)} | ${cell(m.p90Ms)} | ${cell(m.p99Ms)} | ${cell(m.maxMs)} | ${errCell(m)} | ${loadCell(m)} |`,
    );
  }
  return lines.join('\n');
}

/** Where the cores went during each run: CPU µs per successful call, per process. */
export function cpuTable(
  rows: readonly { name: string; m: Measurement | undefined }[],
  cores: number,
): string {
  const lines = [
    `| run | process | CPU µs per call | share of ${cores} cores |`,
    '| --- | --- | ---: | ---: |',
  ];
  for (const { name, m } of rows) {
    if (!m) continue;
    for (const c of cpuPerCall(m, cores)) {
      lines.push(
        `| ${name} | ${c.process} | ${c.usPerCall.toFixed(0)} | ${(c.coreShare * 100).toFixed(0)}% |`,
      );
    }
  }
  return lines.join('\n');
}

/** Successful calls per second of each interleaved round: `5012 / 4980 / 5101`. */
export function roundsCell(m: Measurement | undefined): string {
  return m?.rounds ? m.rounds.map((r) => Math.round(r)).join(' / ') : 'n/a';
}

/** A number with two decimals, `n/a` when unknown. */
export const f2 = (x: number | undefined) => (x === undefined ? 'n/a' : x.toFixed(2));
