import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { errorKinds, HeyError, heyArgs, parseHeySummary } from '../../scripts/lib/bench/hey.js';
import { FIXTURES } from '../helpers/server.js';

/** Recorded hey v0.1.5 summaries (see test/fixtures). */
const fixture = (name: string) => parseHeySummary(readFileSync(join(FIXTURES, name), 'utf8'));

describe('hey wrapper: arguments', () => {
  it('builds a closed-loop POST with the body, content type and a duration', () => {
    expect(
      heyArgs({
        url: 'http://127.0.0.1:5005/v1/test/',
        method: 'POST',
        body: '{"a":1}',
        contentType: 'application/json',
        concurrency: 50,
        durationMs: 10_000,
        timeoutMs: 10_000,
      }),
    ).to.deep.equal([
      '-z',
      '10000ms',
      '-c',
      '50',
      '-t',
      '10',
      '-m',
      'POST',
      '-d',
      '{"a":1}',
      '-T',
      'application/json',
      'http://127.0.0.1:5005/v1/test/',
    ]);
  });

  it('turns a total rate into hey’s per-worker -q, and rounds the timeout up to whole seconds', () => {
    const args = heyArgs({
      url: 'http://h/',
      method: 'GET',
      concurrency: 50,
      rps: 500,
      durationMs: 1500,
      timeoutMs: 2500,
      cpus: 1,
    });
    expect(args.slice(args.indexOf('-q'), args.indexOf('-q') + 2)).to.deep.equal(['-q', '10']);
    expect(args.slice(args.indexOf('-t'), args.indexOf('-t') + 2)).to.deep.equal(['-t', '3']);
    expect(args.slice(args.indexOf('-cpus'), args.indexOf('-cpus') + 2)).to.deep.equal(['-cpus', '1']);
    expect(args.at(-1)).to.equal('http://h/');
  });

  it('refuses a concurrency that is not a positive integer', () => {
    expect(() =>
      heyArgs({ url: 'http://h/', method: 'GET', concurrency: 0, durationMs: 1000, timeoutMs: 1000 }),
    ).to.throw(RangeError, /concurrency/);
  });
});

describe('hey wrapper: parsing recorded summaries', () => {
  it('reads a clean closed-loop run: counts, rates, percentiles in ms, statuses', () => {
    const s = fixture('hey-ok.txt');
    expect(s.count).to.equal(2026);
    expect(s.okCount).to.equal(2026);
    expect(s.errorCount).to.equal(0);
    expect(s.totalMs).to.be.closeTo(3074.5, 1e-9);
    expect(s.heyRps).to.equal(658.9657);
    expect(s.okRps).to.be.closeTo(2026 / 3.0745, 1e-9);
    const want = { 10: 64.1, 25: 69.1, 50: 74.2, 75: 80.6, 90: 89.7, 95: 92.1, 99: 96.8 };
    expect(Object.keys(s.latencyMs)).to.deep.equal(Object.keys(want));
    for (const [p, ms] of Object.entries(want)) expect(s.latencyMs[Number(p)]).to.be.closeTo(ms, 1e-9);
    expect(s.slowestMs).to.be.closeTo(104.1, 1e-9);
    expect(s.fastestMs).to.be.closeTo(7.3, 1e-9);
    expect(s.averageMs).to.be.closeTo(74.9, 1e-9);
    expect(s.statusCodes).to.deep.equal({ 200: 2026 });
    expect(s.errors).to.deep.equal([]);
  });

  it('counts non-2xx answers as errors, and skips the percentiles hey could not reach (its "0%%" rows)', () => {
    const s = fixture('hey-bad-request.txt');
    expect(s.statusCodes).to.deep.equal({ 400: 40 });
    expect(s.okCount).to.equal(0);
    expect(s.errorCount).to.equal(40);
    expect(s.okRps).to.equal(0);
    expect(Object.keys(s.latencyMs).map(Number)).to.deep.equal([10, 25, 50, 75, 90, 95]);
  });

  it('adds transport errors to the count and the errors, and leaves them out of the ok rate', () => {
    const s = fixture('hey-server-died.txt');
    expect(s.okCount).to.equal(748);
    expect(s.errorCount).to.equal(54_928);
    expect(s.count).to.equal(748 + 54_928);
    // hey's own rate counts the refused connections too.
    expect(s.heyRps).to.be.greaterThan(18_000);
    expect(s.okRps).to.be.closeTo(748 / 3.0021, 1e-9);
    expect(s.errors[0]).to.deep.include({ count: 54_918 });
    expect(errorKinds(s)).to.deep.equal([
      { kind: 'connection refused', count: 54_918 },
      { kind: 'connection reset by peer', count: 9 },
      { kind: 'EOF', count: 1 },
    ]);
  });

  it('reads a run where nothing answered: no latencies, no NaN', () => {
    const s = fixture('hey-refused.txt');
    expect(s.count).to.equal(20);
    expect(s.okCount).to.equal(0);
    expect(s.errorCount).to.equal(20);
    expect(s.latencyMs).to.deep.equal({});
    expect(s.averageMs).to.equal(undefined);
    expect(s.slowestMs).to.equal(undefined);
  });

  it('rejects text that is not a hey summary', () => {
    expect(() => parseHeySummary('Error: something\n')).to.throw(HeyError, /not a hey summary/);
  });
});
