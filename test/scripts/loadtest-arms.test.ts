/**
 * The load test's per-arm figures and logarithmic histogram
 * (scripts/lib/load/arms.ts, histogram.ts, report.ts) and the project's own
 * generator's report shape (h2-generator.ts), on made-up calls: the figures
 * are inputs, not timings of anything.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { UsageError } from '../../scripts/lib/cli.js';
import { hasArms, NO_ARM, perArm } from '../../scripts/lib/load/arms.js';
import { parseGhzReport } from '../../scripts/lib/load/ghz-report.js';
import { codeOfHttpStatus, type H2Call, toGhzReport } from '../../scripts/lib/load/h2-generator.js';
import { logBuckets } from '../../scripts/lib/load/histogram.js';
import { parseLoadtestArgs } from '../../scripts/lib/load/options.js';
import { formatSummary, type LoadtestResult, renderHtml } from '../../scripts/lib/load/report.js';
import { checkSlo, DEFAULT_SLO } from '../../scripts/lib/load/slo.js';
import { summarize } from '../../scripts/lib/load/summary.js';
import { FIXTURES } from '../helpers/server.js';

const t0 = Date.parse('2026-12-01T12:00:00Z');
const c = (arm: string, ms: number, code = 0, message = ''): H2Call => ({
  startMs: t0 + ms,
  latencyNs: ms * 1e6,
  sendLagNs: 0,
  code,
  message,
  arm,
});

/** 90 stable calls of 1..90 ms, 10 canary calls of 101..110 ms of which 2 NOT_FOUND, 1 UNAVAILABLE without an arm. */
const calls: H2Call[] = [
  ...Array.from({ length: 90 }, (_, i) => c('stable', i + 1)),
  ...Array.from({ length: 8 }, (_, i) => c('canary', 101 + i)),
  c('canary', 109, 5, 'version not on this arm'),
  c('canary', 110, 5, 'version not on this arm'),
  c('', 3, 14, 'no healthy upstream'),
];
const report = toGhzReport(calls, 2000, { date: '2026-12-01T12:00:00Z', options: { concurrency: 5 } });

function result(over: Partial<LoadtestResult> = {}): LoadtestResult {
  const summary = summarize(report);
  return {
    title: 'Load test of envoy',
    target: 'envoy',
    host: '127.0.0.1:8080',
    load: 'rate 50/s, 5 workers',
    durationMs: 2000,
    payload: 'made up',
    report,
    summary,
    verdicts: checkSlo(summary, DEFAULT_SLO),
    split: { unavailable: 'not observed' },
    generator: 'node',
    ...over,
  };
}

describe('loadtest: the generator option', () => {
  const parse = (...argv: string[]) => parseLoadtestArgs(argv, '/proj');
  it('drives Predict with the project’s own generator by default, and ModelInfer or reflection with ghz', () => {
    expect(parse().generator).to.equal('node');
    expect(parse('--generator', 'ghz').generator).to.equal('ghz');
    expect(parse('--protocol', 'oip').generator).to.equal('ghz');
    expect(parse('--reflection').generator).to.equal('ghz');
  });
  it('refuses an unknown generator, and node for what only ghz can do', () => {
    expect(() => parse('--generator', 'wrk')).to.throw(UsageError, /--generator must be node or ghz/);
    expect(() => parse('--generator', 'node', '--protocol', 'oip')).to.throw(UsageError, /--generator ghz/);
    expect(() => parse('--generator', 'node', '--reflection')).to.throw(UsageError, /--generator ghz/);
  });
});

describe('loadtest: the generator’s report', () => {
  it('is ghz-shaped: Go status names, ghz error strings, percentiles of successful calls only', () => {
    const parsed = parseGhzReport(JSON.parse(JSON.stringify(report)));
    expect(parsed.statusCodeDistribution).to.deep.equal({ OK: 98, NotFound: 2, Unavailable: 1 });
    const s = summarize(parsed);
    expect(s.okCount).to.equal(98);
    expect(s.statuses.map((x) => [x.status, x.count])).to.deep.equal([
      ['OK', 98],
      ['NOT_FOUND', 2],
      ['UNAVAILABLE', 1],
    ]);
    expect(s.statuses[1]?.messages).to.deep.equal([{ message: 'version not on this arm', count: 2 }]);
    expect(s.latencyMs.max).to.equal(108);
    expect(s.latencyMs.p50).to.equal(49);
    expect(s.rps).to.equal(101 / 2);
  });

  it('maps HTTP statuses without grpc-status as grpc’s mapping document says', () => {
    expect([400, 401, 403, 404, 429, 502, 503, 504, 500].map(codeOfHttpStatus)).to.deep.equal([
      13, 16, 7, 12, 14, 14, 14, 14, 2,
    ]);
  });
});

describe('loadtest: latency and errors per arm', () => {
  it('splits calls by the arm that answered, stable first, calls without an arm last', () => {
    const arms = perArm(report);
    expect(arms?.map((a) => [a.arm, a.count, a.okCount, a.errorCount])).to.deep.equal([
      ['stable', 90, 90, 0],
      ['canary', 10, 8, 2],
      [NO_ARM, 1, 0, 1],
    ]);
    const [stable, canary, none] = arms ?? [];
    expect([stable?.p50Ms, stable?.p90Ms, stable?.p99Ms, stable?.maxMs]).to.deep.equal([45, 81, 90, 90]);
    expect([canary?.p50Ms, canary?.maxMs]).to.deep.equal([104, 108]);
    expect(canary?.errors).to.deep.equal({ NOT_FOUND: 2 });
    expect(none?.errors).to.deep.equal({ UNAVAILABLE: 1 });
    expect(none?.p50Ms).to.equal(undefined);
  });

  it('prints and renders the per-arm table', () => {
    const text = formatSummary(result());
    expect(text).to.match(/stable\s+90\s+90\s+0\s+45\.00 ms/);
    expect(text).to.match(/canary\s+10\s+8\s+2\s+104\.00 ms.*NOT_FOUND ×2/);
    const html = renderHtml(result());
    expect(html).to.include('<td>canary</td><td>10</td><td>8</td><td>2</td><td>104.00 ms</td>');
  });

  it('says why a ghz report has no per-arm figures instead of showing an empty table', () => {
    const ghz = parseGhzReport(JSON.parse(readFileSync(join(FIXTURES, 'ghz-errors.json'), 'utf8')));
    expect(hasArms(ghz)).to.equal(false);
    expect(perArm(ghz)).to.equal(undefined);
    const summary = summarize(ghz);
    const r = result({ report: ghz, summary, verdicts: checkSlo(summary, DEFAULT_SLO), generator: 'ghz' });
    expect(formatSummary(r)).to.include("Per arm     ghz's report has no response headers");
    expect(renderHtml(r)).to.include('<h2>ghz options</h2>');
  });
});

describe('loadtest: what the latencies count from, at a fixed rate', () => {
  const withSchedule = (schedule: { due: number; sent: number; late: number; maxLagMs: number }) =>
    toGhzReport(calls, 2000, { date: '2026-12-01T12:00:00Z', options: {}, schedule });

  it("says the project's generator counts from each call's due time, and how many calls it sent late", () => {
    const r = withSchedule({ due: 120, sent: 101, late: 40, maxLagMs: 812.34 });
    const text = formatSummary(result({ report: r, requestedRps: 60 }));
    expect(text).to.include("(successful calls, client side, from each call's due time)");
    expect(text).to.include(
      '  ! 40 of 101 calls sent over 1 ms after they were due (worst 812.3 ms), 19 due calls never sent:',
    );
    const html = renderHtml(result({ report: r, requestedRps: 60 }));
    expect(html).to.include('<p class="fail">40 of 101 calls sent over 1 ms after they were due');
    expect(html).to.include('successful calls, client side, from each call&#39;s due time.</p>');
  });

  it('prints no warning when every call left on time', () => {
    const r = withSchedule({ due: 101, sent: 101, late: 0, maxLagMs: 0.4 });
    expect(formatSummary(result({ report: r, requestedRps: 50 }))).to.not.include('after they were due');
  });

  it("says ghz's latencies leave out a wait for a free worker; a closed loop has no due time", () => {
    const ghz = parseGhzReport(JSON.parse(readFileSync(join(FIXTURES, 'ghz-errors.json'), 'utf8')));
    const summary = summarize(ghz);
    const base = {
      report: ghz,
      summary,
      verdicts: checkSlo(summary, DEFAULT_SLO),
      generator: 'ghz' as const,
    };
    expect(formatSummary(result({ ...base, requestedRps: 50 }))).to.include(
      "from each call's send: a wait for a free ghz worker is not counted",
    );
    expect(formatSummary(result())).to.include('(successful calls, client side)\n');
  });
});

describe('loadtest: logarithmic latency buckets', () => {
  it('splits each decade into equal-ratio buckets and keeps empty buckets in between', () => {
    const b = logBuckets([0.12, 0.13, 0.5, 12], 5);
    expect(b[0]).to.deep.equal({ fromMs: 0.1, toMs: 0.158, count: 2 });
    expect(b.at(-1)).to.deep.equal({ fromMs: 10, toMs: 15.8, count: 1 });
    expect(b).to.have.length(11);
    expect(b.reduce((n, x) => n + x.count, 0)).to.equal(4);
    expect(b.filter((x) => x.count === 0)).to.have.length(8);
    // Bounds are continuous.
    for (let i = 1; i < b.length; i++) expect(b[i]?.fromMs).to.equal(b[i - 1]?.toMs);
  });

  it('puts a latency on a bound into the bucket that starts there; zero into the first', () => {
    expect(logBuckets([1], 5)).to.deep.equal([{ fromMs: 1, toMs: 1.58, count: 1 }]);
    expect(logBuckets([0, 1], 5)).to.deep.equal([{ fromMs: 1, toMs: 1.58, count: 2 }]);
    expect(logBuckets([])).to.deep.equal([]);
  });

  it('spreads a sub-millisecond body with a long tail over many buckets (a linear one held 95% in one)', () => {
    const lat = [
      ...Array.from({ length: 950 }, (_, i) => 0.2 + (i % 50) * 0.01),
      ...Array.from({ length: 50 }, (_, i) => 5 + i),
    ];
    const b = logBuckets(lat);
    expect(Math.max(...b.map((x) => x.count))).to.be.below(950 * 0.6);
  });

  it('draws the histogram with those buckets and puts the generator options below the results', () => {
    const html = renderHtml(result());
    expect(html).to.include('Latency histogram (logarithmic buckets');
    expect(html).to.include('<span class="k">1–1.58 ms</span>');
    const options = html.indexOf('<h2>Load generator options</h2>');
    for (const section of [
      '<h2>Summary</h2>',
      '<h2>Per arm</h2>',
      '<h2>Latency histogram',
      '<h2>Per second</h2>',
    ]) {
      expect(html.indexOf(section), section).to.be.within(0, options);
    }
  });
});
