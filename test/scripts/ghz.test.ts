import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { GhzError, spawnGhz } from '../../scripts/lib/load/ghz.js';
import { type GhzRun, ghzArgs } from '../../scripts/lib/load/ghz-args.js';
import { type GhzReport, parseGhzReport, readGhzReport } from '../../scripts/lib/load/ghz-report.js';
import { checkSlo, DEFAULT_SLO } from '../../scripts/lib/load/slo.js';
import {
  canonicalStatus,
  groupByStatus,
  parseGrpcError,
  percentileMs,
  summarize,
} from '../../scripts/lib/load/summary.js';
import { FIXTURES } from '../helpers/server.js';

function fixture(name: string): GhzReport {
  return parseGhzReport(JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')));
}

/** 100 calls at 50/s against one stable server, all OK. */
const ok = () => fixture('ghz-ok.json');
/** 200 calls, 10 workers, MAX_IN_FLIGHT=1 and every 5th call for an unknown model. */
const errors = () => fixture('ghz-errors.json');
/** 20 calls, all for an unknown model: no latency distribution at all. */
const allFailed = () => fixture('ghz-all-failed.json');

describe('ghz wrapper: arguments', () => {
  const base: GhzRun = {
    host: '127.0.0.1:8080',
    call: 'inference.v1.InferenceService/Predict',
    insecure: true,
    proto: { file: '/p/proto/inference/v1/inference.proto', importPaths: ['/p/proto'] },
    dataFile: '/r/req.tmpl',
    metadata: { 'x-user-id': '{{add 102079311 .RequestNumber}}' },
    rps: 500,
    concurrency: 50,
    durationMs: 30_000,
    timeoutMs: 10_000,
    outputFile: '/r/out.json',
  };

  it('builds a fixed-rate run: proto, plaintext, data file, templated metadata, JSON to a file, host last', () => {
    const args = ghzArgs(base);
    expect(args).to.include.members([
      '--call=inference.v1.InferenceService/Predict',
      '--proto=/p/proto/inference/v1/inference.proto',
      '--import-paths=/p/proto',
      '--insecure',
      '--data-file=/r/req.tmpl',
      '--metadata={"x-user-id":"{{add 102079311 .RequestNumber}}"}',
      '--rps=500',
      '--concurrency=50',
      '--duration=30s',
      '--duration-stop=wait',
      '--timeout=10s',
      '--format=json',
      '--output=/r/out.json',
    ]);
    expect(args.at(-1)).to.equal('127.0.0.1:8080');
    // One argv element per option: nothing goes through a shell.
    expect(args.every((a) => a === '127.0.0.1:8080' || a.startsWith('--'))).to.equal(true);
  });

  it('builds a closed-loop run without --rps, and sub-second durations in ms', () => {
    const { rps: _omit, ...closed } = base;
    const args = ghzArgs({ ...closed, concurrency: 8, durationMs: 1500, timeoutMs: 250 });
    expect(args.some((a) => a.startsWith('--rps'))).to.equal(false);
    expect(args).to.include.members(['--concurrency=8', '--duration=1500ms', '--timeout=250ms']);
  });

  it('uses TLS unless insecure, and reflection when no proto is given', () => {
    const { proto: _omit, ...noProto } = base;
    const args = ghzArgs({ ...noProto, insecure: false, cacert: '/ca.pem', tags: { target: 'envoy' } });
    expect(args).to.not.include('--insecure');
    expect(args).to.include('--cacert=/ca.pem');
    expect(args.some((a) => a.startsWith('--proto'))).to.equal(false);
    expect(args).to.include('--tags={"target":"envoy"}');
  });
});

describe('ghz wrapper: parsing recorded reports', () => {
  it('reads a clean run: count, rate, percentiles in ms, max', () => {
    const r = ok();
    const s = summarize(r);
    expect(s.count).to.equal(100);
    expect(s.okCount).to.equal(100);
    expect(s.errorCount).to.equal(0);
    expect(s.errorRate).to.equal(0);
    expect(s.rps).to.equal(r.rps);
    expect(s.endReason).to.equal('timeout');
    const ns = (p: number) => r.latencyDistribution?.find((d) => d.percentage === p)?.latency as number;
    expect(s.latencyMs.p50).to.equal(ns(50) / 1e6);
    expect(s.latencyMs.p90).to.equal(ns(90) / 1e6);
    expect(s.latencyMs.p95).to.equal(ns(95) / 1e6);
    expect(s.latencyMs.p99).to.equal(ns(99) / 1e6);
    expect(s.latencyMs.max).to.equal(r.slowest / 1e6);
    const p = [s.latencyMs.p50, s.latencyMs.p90, s.latencyMs.p95, s.latencyMs.p99, s.latencyMs.max];
    expect([...(p as number[])].sort((a, b) => a - b)).to.deep.equal(p);
    expect(s.statuses).to.deep.equal([{ status: 'OK', code: 0, count: 100, messages: [] }]);
    expect(r.details).to.have.length(100);
  });

  it('groups errors by gRPC status with their messages', () => {
    const s = summarize(errors());
    expect(s.count).to.equal(200);
    expect(s.statuses.map((x) => [x.status, x.code, x.count])).to.deep.equal([
      ['RESOURCE_EXHAUSTED', 8, 164],
      ['OK', 0, 29],
      ['NOT_FOUND', 5, 7],
    ]);
    expect(s.errorCount).to.equal(171);
    expect(s.errorRate).to.equal(171 / 200);
    const nf = s.statuses.find((x) => x.status === 'NOT_FOUND');
    expect(nf?.messages).to.deep.equal([
      { message: 'unknown model "no-such-model"; models: conversion', count: 7 },
    ]);
    // ghz's own p99 (ns) over the calls that succeeded, in ms.
    expect(s.latencyMs.p99).to.equal(65410945 / 1e6);
  });

  it('has no latencies when no call succeeded', () => {
    const s = summarize(allFailed());
    expect(s.okCount).to.equal(0);
    expect(s.errorRate).to.equal(1);
    expect(s.latencyMs).to.deep.equal({
      p50: undefined,
      p90: undefined,
      p95: undefined,
      p99: undefined,
      max: undefined,
      min: undefined,
      mean: undefined,
    });
    expect(groupByStatus(allFailed())[0]).to.include({ status: 'NOT_FOUND', count: 20 });
  });

  it('treats a missing or zero-valued percentile as unknown', () => {
    const r = { ...ok(), latencyDistribution: [{ percentage: 99, latency: 0 }] };
    expect(percentileMs(r, 99)).to.equal(undefined);
    expect(percentileMs(r, 50)).to.equal(undefined);
  });

  it('splits grpc-go error strings and maps Go code names to canonical ones', () => {
    expect(parseGrpcError('rpc error: code = Unavailable desc = connection refused')).to.deep.equal({
      goCode: 'Unavailable',
      message: 'connection refused',
    });
    expect(parseGrpcError('context deadline exceeded')).to.deep.equal({
      goCode: 'Unknown',
      message: 'context deadline exceeded',
    });
    expect(canonicalStatus('Canceled')).to.deep.equal({ name: 'CANCELLED', code: 1 });
    expect(canonicalStatus('DeadlineExceeded')).to.deep.equal({ name: 'DEADLINE_EXCEEDED', code: 4 });
    expect(canonicalStatus('Weird')).to.deep.equal({ name: 'Weird', code: undefined });
  });

  it('rejects what is not a ghz report, naming the field', async () => {
    expect(() => parseGhzReport([])).to.throw(GhzError, /JSON object/);
    expect(() => parseGhzReport({ ...ok(), rps: 'fast' })).to.throw(GhzError, /rps/);
    expect(() => parseGhzReport({ ...ok(), statusCodeDistribution: { OK: 'x' } })).to.throw(
      GhzError,
      /statusCodeDistribution/,
    );
    expect(() => parseGhzReport({ ...ok(), latencyDistribution: [{ p: 1 }] })).to.throw(
      GhzError,
      /latencyDistribution/,
    );
    const dir = mkdtempSync(join(tmpdir(), 'ghz-test-'));
    try {
      writeFileSync(join(dir, 'bad.json'), 'not json');
      let err: unknown;
      await readGhzReport(join(dir, 'bad.json')).catch((e: unknown) => {
        err = e;
      });
      expect(err).to.be.instanceOf(GhzError);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('ghz wrapper: SLO verdicts', () => {
  const failing = (v: ReturnType<typeof checkSlo>) => v.filter((x) => !x.ok).map((x) => x.name);

  it('passes a clean run under the default SLO (p99 < 100 ms, no errors)', () => {
    const v = checkSlo(summarize(ok()), DEFAULT_SLO);
    expect(failing(v)).to.deep.equal([]);
    expect(v.map((x) => x.name)).to.deep.equal(['requests', 'p99', 'error-rate']);
  });

  it('fails p99 when it is not below the limit, and says by how much', () => {
    const s = summarize(ok());
    const v = checkSlo(s, { ...DEFAULT_SLO, p99Ms: s.latencyMs.p99 as number });
    expect(failing(v)).to.deep.equal(['p99']);
    expect(v.find((x) => x.name === 'p99')?.detail).to.match(/^p99 [\d.]+ ms ≥ [\d.]+ ms$/);
  });

  it('fails the error rate on any error by default, and passes it under a loose limit', () => {
    const s = summarize(errors());
    expect(failing(checkSlo(s, { ...DEFAULT_SLO, p99Ms: 1e6 }))).to.deep.equal(['error-rate']);
    expect(failing(checkSlo(s, { p99Ms: 1e6, maxErrorRate: 0.9 }))).to.deep.equal([]);
    expect(checkSlo(s, DEFAULT_SLO).find((x) => x.name === 'error-rate')?.detail).to.include('171/200');
  });

  it('fails p99 as unknown when nothing succeeded', () => {
    const v = checkSlo(summarize(allFailed()), DEFAULT_SLO);
    expect(failing(v)).to.deep.equal(['p99', 'error-rate']);
    expect(v.find((x) => x.name === 'p99')?.detail).to.match(/unknown/);
  });

  it('fails an empty run', () => {
    const empty = parseGhzReport({
      ...allFailed(),
      count: 0,
      statusCodeDistribution: {},
      errorDistribution: {},
      details: [],
    });
    expect(failing(checkSlo(summarize(empty), DEFAULT_SLO))).to.deep.equal(['requests', 'p99']);
  });

  it('checks the achieved rate only when asked', () => {
    const s = summarize(ok());
    expect(failing(checkSlo(s, { ...DEFAULT_SLO, minRps: 1 }))).to.deep.equal([]);
    expect(failing(checkSlo(s, { ...DEFAULT_SLO, minRps: 1e6 }))).to.deep.equal(['min-rps']);
  });
});

/** Polls `cond` until it holds; fails after 5 s. */
async function waitFor(cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('ghz wrapper: running the binary', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'ghz-bin-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function script(name: string, body: string): string {
    const path = join(dir, name);
    writeFileSync(path, `#!/bin/sh\n${body}\n`);
    chmodSync(path, 0o755);
    return path;
  }

  async function failure(p: Promise<unknown>): Promise<Error> {
    try {
      await p;
    } catch (err) {
      return err as Error;
    }
    throw new Error('expected a failure');
  }

  it('says how to install ghz when it is missing', async () => {
    const err = await failure(spawnGhz([], { bin: join(dir, 'nope') }));
    expect(err).to.be.instanceOf(GhzError);
    expect(err.message).to.include('bootstrap');
  });

  it("reports ghz's own error line when it exits non-zero", async () => {
    const bin = script('ghz', 'echo "ghz: error: connection refused" >&2; exit 1');
    const err = await failure(spawnGhz([], { bin }));
    expect(err).to.be.instanceOf(GhzError);
    expect(err.message).to.equal('ghz failed: connection refused');
  });

  it('passes the arguments through and sends SIGINT on abort', async () => {
    const out = join(dir, 'args');
    // Records its argv, then waits to be interrupted, as ghz does under -z.
    const bin = script('ghz', `printf '%s\\n' "$@" > '${out}'; trap 'kill $!; exit 0' INT; sleep 30 & wait`);
    const controller = new AbortController();
    const running = spawnGhz(['--a=1', 'x y'], { bin, signal: controller.signal });
    await waitFor(() => {
      try {
        return readFileSync(out, 'utf8') !== '';
      } catch {
        return false;
      }
    });
    controller.abort();
    await running;
    expect(readFileSync(out, 'utf8')).to.equal('--a=1\nx y\n');
  });
});
