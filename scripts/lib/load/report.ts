/**
 * What a load test prints and the HTML report it writes.
 *
 * Why a self-made HTML page rather than ghz's own: ghz writes one format per
 * run and has no command to convert a saved JSON report, so getting its HTML
 * too would mean a second, different run (or a Go helper built against ghz's
 * printer package). Its page also loads d3, britecharts, bulma and fontawesome
 * from CDNs, so it renders blank offline, and it cannot show what this project
 * needs next to the latencies: the A/B split and the SLO verdicts. So ghz
 * writes the JSON (kept verbatim, readable by ghz-web and other ghz tooling)
 * and this module renders the HTML from that same JSON: one run, one source of
 * truth, no external assets.
 */

import { type ArmFigures, perArm } from './arms.js';
import { type GhzReport, LATE_SEND_MS } from './ghz-report.js';
import { logBuckets } from './histogram.js';
import type { AbSplit } from './metrics.js';
import type { SloVerdict } from './slo.js';
import type { RunSummary } from './summary.js';

/** Everything one load test produced. */
export interface LoadtestResult {
  readonly title: string;
  /** Target as given and the address dialled. */
  readonly target: string;
  readonly host: string;
  /** "rate 500/s, 50 workers" or "closed loop, 20 workers". */
  readonly load: string;
  readonly durationMs: number;
  readonly payload: string;
  readonly report: GhzReport;
  readonly summary: RunSummary;
  readonly verdicts: readonly SloVerdict[];
  /** The split, or why there is none. */
  readonly split: AbSplit | { readonly unavailable: string };
  /** Requested rate, when there was one, to flag a shortfall. */
  readonly requestedRps?: number;
  /** The load generator: ghz, or the project's own (h2-generator.ts), which sees each call's arm. */
  readonly generator: 'ghz' | 'node';
}

function ms(v: number | undefined): string {
  return v === undefined ? 'n/a' : `${v.toFixed(2)} ms`;
}

function pct(n: number, total: number): string {
  return total === 0 ? '-' : `${((100 * n) / total).toFixed(1)}%`;
}

/** Achieved rate below 90% of the requested one: the load generator or server could not keep up. */
function rateShortfall(r: LoadtestResult): string | undefined {
  if (r.requestedRps === undefined || r.summary.rps >= 0.9 * r.requestedRps) return undefined;
  return `achieved ${r.summary.rps.toFixed(1)}/s of the requested ${r.requestedRps}/s: the load generator's workers or the server could not keep up (try more --concurrency)`;
}

/**
 * What the latencies count from. At a fixed rate the project's generator
 * counts from each call's due time, so a generator that fell behind still
 * shows the wait a user arriving then would have had; ghz counts from its
 * send, so its figures leave that wait out (coordinated omission).
 */
function latencyBasis(r: LoadtestResult): string {
  if (r.requestedRps === undefined) return 'successful calls, client side';
  return r.report.schedule
    ? "successful calls, client side, from each call's due time"
    : "successful calls, client side, from each call's send: a wait for a free ghz worker is not counted";
}

/** Calls sent late, or not at all, at a fixed rate: the generator's workers were all busy. */
function lateSends(r: LoadtestResult): string | undefined {
  const s = r.report.schedule;
  if (!s || (s.late === 0 && s.sent >= s.due)) return undefined;
  const unsent = s.due - s.sent;
  return `${s.late} of ${s.sent} calls sent over ${LATE_SEND_MS} ms after they were due (worst ${s.maxLagMs.toFixed(1)} ms)${unsent > 0 ? `, ${unsent} due calls never sent` : ''}: every worker was waiting on the server; the latencies include that wait (more --concurrency sends on time)`;
}

/** Rows of [name, share, count] for the split, groups in a fixed order. */
function splitRows(counts: Readonly<Record<string, number>>, total: number, order: readonly string[]) {
  const names = [
    ...order.filter((n) => n in counts),
    ...Object.keys(counts).filter((n) => !order.includes(n)),
  ];
  return names.map((n) => [n, pct(counts[n] ?? 0, total), String(counts[n] ?? 0)] as const);
}

const ARM_ORDER = ['stable', 'canary'];
const GROUP_ORDER = ['baseline', 'experiment', 'control', 'canary_negative'];

function table(rows: readonly (readonly string[])[], indent = '  '): string[] {
  const widths: number[] = [];
  for (const row of rows) {
    for (const [i, c] of row.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  }
  return rows.map(
    (row) =>
      indent +
      row
        .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
  );
}

function targetText(r: LoadtestResult): string {
  return r.target === r.host ? r.host : `${r.target} (${r.host})`;
}

/** The summary printed at the end of a run. */
export function formatSummary(r: LoadtestResult): string {
  const s = r.summary;
  const l = s.latencyMs;
  const lines: string[] = [];
  lines.push(`${r.title}`);
  lines.push(`  target   ${targetText(r)}; ${r.load}; ${(r.durationMs / 1000).toFixed(1)} s`);
  lines.push(`  payload  ${r.payload}`);
  lines.push('');
  lines.push(
    `Throughput  ${s.rps.toFixed(1)} calls/s (${s.count} calls in ${(s.totalMs / 1000).toFixed(2)} s, ended: ${s.endReason || 'n/a'})`,
  );
  const short = rateShortfall(r);
  if (short) lines.push(`  ! ${short}`);
  const late = lateSends(r);
  if (late) lines.push(`  ! ${late}`);
  lines.push(
    `Latency     p50 ${ms(l.p50)}  p90 ${ms(l.p90)}  p95 ${ms(l.p95)}  p99 ${ms(l.p99)}  max ${ms(l.max)}  (${latencyBasis(r)})`,
  );
  lines.push(`Status      ${s.okCount} OK, ${s.errorCount} failed (${(s.errorRate * 100).toFixed(3)}%)`);
  const statusRows = s.statuses.map((st) => [
    `${st.status}${st.code === undefined ? '' : ` (${st.code})`}`,
    String(st.count),
    pct(st.count, s.count),
  ]);
  lines.push(...table(statusRows, '  '));
  for (const st of s.statuses) {
    for (const m of st.messages.slice(0, 3)) lines.push(`    ${st.status} ×${m.count}: ${m.message}`);
    if (st.messages.length > 3) lines.push(`    ${st.status}: …and ${st.messages.length - 3} more messages`);
  }
  lines.push(...formatArms(r));
  lines.push(...formatSplit(r));
  lines.push('SLO');
  for (const v of r.verdicts) lines.push(`  ${v.ok ? 'PASS' : 'FAIL'}  ${v.name.padEnd(10)} ${v.detail}`);
  return lines.join('\n');
}

/** Why a report has no per-arm figures. */
const NO_ARMS =
  "ghz's report has no response headers, so its calls carry no arm (run with --generator node for latency and errors per arm)";

const errorsText = (a: ArmFigures) =>
  Object.entries(a.errors)
    .map(([k, n]) => `${k} ×${n}`)
    .join(', ') || '-';

function armRows(arms: readonly ArmFigures[]): string[][] {
  return arms.map((a) => [
    a.arm,
    String(a.count),
    String(a.okCount),
    String(a.errorCount),
    ms(a.p50Ms),
    ms(a.p90Ms),
    ms(a.p99Ms),
    ms(a.maxMs),
    errorsText(a),
  ]);
}

const ARM_HEAD = ['arm', 'calls', 'OK', 'failed', 'p50', 'p90', 'p99', 'max', 'errors'];

function formatArms(r: LoadtestResult): string[] {
  const arms = perArm(r.report);
  if (!arms) return [`Per arm     ${NO_ARMS}`];
  return [
    'Per arm     (x-ab-arm response header; latencies of successful calls)',
    ...table([ARM_HEAD, ...armRows(arms)]),
  ];
}

function formatSplit(r: LoadtestResult): string[] {
  const split = r.split;
  if ('unavailable' in split) return [`A/B split   ${split.unavailable}`];
  const lines = [
    `A/B split   ${split.total} predictions, from ${AB_SOURCE} on ${split.endpoints.join(', ')}`,
  ];
  for (const [ep, why] of Object.entries(split.unreachable)) lines.push(`  (${ep} not read: ${why})`);
  if (split.total !== r.summary.okCount) {
    lines.push(
      `  note: the servers counted ${split.total} predictions, ghz ${r.summary.okCount} successful calls (other traffic, or an endpoint not read)`,
    );
  }
  lines.push(
    ...table([
      ['arm', 'share', 'predictions', 'positives'],
      ...splitRows(split.byArm, split.total, ARM_ORDER).map(([n, p, c]) => [
        n,
        p,
        c,
        String(split.positivesByArm[n] ?? 0),
      ]),
    ]),
  );
  lines.push(
    ...table([['group', 'share', 'predictions'], ...splitRows(split.byGroup, split.total, GROUP_ORDER)]),
  );
  return lines;
}

const AB_SOURCE = 'inference_ab_assignments_total';

/** True when every SLO held. */
export function passed(verdicts: readonly SloVerdict[]): boolean {
  return verdicts.every((v) => v.ok);
}

function esc(s: string): string {
  return s.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}

/** A warning paragraph, or nothing. */
function failNote(text: string | undefined): string {
  return text === undefined ? '' : `<p class="fail">${esc(text)}</p>`;
}

function htmlTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const th = head.map((h) => `<th>${esc(h)}</th>`).join('');
  const trs = rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${trs}\n</tbody></table>`;
}

/** Calls and successful-call p99 per second of the run, from ghz's per-call details. */
export function perSecond(
  report: GhzReport,
): { second: number; calls: number; errors: number; p99Ms: number }[] {
  if (report.details.length === 0) return [];
  // A loop, not Math.min(...): ghz keeps up to a million details, too many for spread arguments.
  let t0 = Number.POSITIVE_INFINITY;
  for (const d of report.details) t0 = Math.min(t0, Date.parse(d.timestamp) || t0);
  const buckets = new Map<number, { calls: number; errors: number; lat: number[] }>();
  for (const d of report.details) {
    const sec = Math.floor((Date.parse(d.timestamp) - t0) / 1000);
    if (!Number.isFinite(sec)) continue;
    const b = buckets.get(sec) ?? { calls: 0, errors: 0, lat: [] };
    b.calls++;
    if (d.error === '') b.lat.push(d.latency / 1e6);
    else b.errors++;
    buckets.set(sec, b);
  }
  return [...buckets]
    .sort((a, b) => a[0] - b[0])
    .map(([second, b]) => {
      const sorted = b.lat.sort((x, y) => x - y);
      // Nearest-rank percentile, as ghz computes its own.
      const p99Ms = sorted.length === 0 ? 0 : (sorted[Math.ceil(0.99 * sorted.length) - 1] as number);
      return { second, calls: b.calls, errors: b.errors, p99Ms };
    });
}

function bars(rows: readonly { label: string; value: number; text: string }[]): string {
  const max = Math.max(1, ...rows.map((r) => r.value));
  return rows
    .map(
      (r) =>
        `<div class="bar"><span class="k">${esc(r.label)}</span><span class="b" style="width:${((100 * r.value) / max).toFixed(1)}%"></span><span class="v">${esc(r.text)}</span></div>`,
    )
    .join('\n');
}

/** A self-contained HTML report (no scripts, no external assets). */
export function renderHtml(r: LoadtestResult): string {
  const s = r.summary;
  const l = s.latencyMs;
  const ok = passed(r.verdicts);
  const split = r.split;
  const splitHtml =
    'unavailable' in split
      ? `<p>${esc(split.unavailable)}</p>`
      : `<p>${split.total} predictions, from <code>${AB_SOURCE}</code> on ${esc(split.endpoints.join(', '))}, diffed before/after the run.</p>` +
        htmlTable(
          ['arm', 'share', 'predictions', 'positives'],
          splitRows(split.byArm, split.total, ARM_ORDER).map(([n, p, c]) => [
            n,
            p,
            c,
            String(split.positivesByArm[n] ?? 0),
          ]),
        ) +
        htmlTable(['group', 'share', 'predictions'], splitRows(split.byGroup, split.total, GROUP_ORDER));
  const okLatencies = r.report.details.filter((d) => d.error === '').map((d) => d.latency / 1e6);
  const hist = logBuckets(okLatencies).map((b) => ({
    label: `${b.fromMs}–${b.toMs} ms`,
    value: b.count,
    text: `${b.count} (${okLatencies.length === 0 ? 0 : ((100 * b.count) / okLatencies.length).toFixed(1)}%)`,
  }));
  const arms = perArm(r.report);
  const armsHtml = arms
    ? `<p>By the <code>x-ab-arm</code> response header of each call; latencies of successful calls.</p>${htmlTable(ARM_HEAD, armRows(arms))}`
    : `<p>${esc(NO_ARMS)}.</p>`;
  const timeline = perSecond(r.report).map((b) => ({
    label: `${b.second}s`,
    value: b.calls,
    text: `${b.calls} calls, ${b.errors} errors, p99 ${b.p99Ms.toFixed(2)} ms`,
  }));
  const errors = s.statuses.flatMap((st) =>
    st.messages.map((m) => [st.status, String(m.count), m.message] as const),
  );
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>${esc(r.title)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:60em;color:#222}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
td:first-child,th:first-child{text-align:left}
.pass{color:#176f2c;font-weight:bold}.fail{color:#b00020;font-weight:bold}
.bar{display:flex;align-items:center;gap:.5em;font:12px monospace}.bar .k{width:11em;text-align:right}
.bar .b{background:#4a7bd0;height:.9em;display:inline-block;min-width:1px}.bar .v{white-space:nowrap}
code{background:#f3f3f3;padding:0 .2em}
</style></head><body>
<h1>${esc(r.title)}: <span class="${ok ? 'pass' : 'fail'}">${ok ? 'SLOs met' : 'SLO missed'}</span></h1>
<p>${esc(r.report.date)} · target <code>${esc(targetText(r))}</code> · ${esc(r.load)} · ${(r.durationMs / 1000).toFixed(1)} s<br>
payload: ${esc(r.payload)}</p>
<h2>SLO</h2>
${htmlTable(
  ['', 'SLO', 'measured'],
  r.verdicts.map((v) => [v.ok ? 'PASS' : 'FAIL', v.name, v.detail]),
)}
<h2>Summary</h2>
${htmlTable(
  ['calls', 'calls/s', 'OK', 'failed', 'p50', 'p90', 'p95', 'p99', 'max'],
  [
    [
      String(s.count),
      s.rps.toFixed(1),
      String(s.okCount),
      `${s.errorCount} (${(s.errorRate * 100).toFixed(3)}%)`,
      ms(l.p50),
      ms(l.p90),
      ms(l.p95),
      ms(l.p99),
      ms(l.max),
    ],
  ],
)}
${failNote(rateShortfall(r))}
${failNote(lateSends(r))}
<p>Latencies are the load generator's (${r.generator === 'ghz' ? 'ghz' : 'the project’s own, over node:http2'}): ${esc(latencyBasis(r))}.</p>
<h2>Per arm</h2>
${armsHtml}
<h2>Status codes</h2>
${htmlTable(
  ['status', 'calls', 'share'],
  s.statuses.map((st) => [
    `${st.status}${st.code === undefined ? '' : ` (${st.code})`}`,
    String(st.count),
    pct(st.count, s.count),
  ]),
)}
${errors.length > 0 ? htmlTable(['status', 'calls', 'message'], errors) : ''}
<h2>A/B split</h2>
${splitHtml}
<h2>Latency histogram (logarithmic buckets, successful calls)</h2>
${hist.length > 0 ? bars(hist) : '<p>no successful calls</p>'}
<h2>Per second</h2>
${timeline.length > 0 ? bars(timeline) : '<p>no calls</p>'}
<h2>${r.generator === 'ghz' ? 'ghz' : 'Load generator'} options</h2>
<pre>${esc(JSON.stringify(r.report.options, null, 2))}</pre>
</body></html>
`;
}
