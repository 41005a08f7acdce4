/**
 * The leaner load generator of `npm run bench` (scripts/lib/bench/h2load.ts):
 * its pre-encoded gRPC body, argv and log parser on made-up rows, then real
 * h2load against the real server on port 0, where a call the server answers
 * with a gRPC error (HTTP 200, status in the trailers) must count as an
 * error. No timing is judged.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  H2LOAD_BIN,
  h2loadArgs,
  h2loadInstalled,
  parseH2loadLog,
  predictBody,
} from '../../scripts/lib/bench/h2load.js';
import { h2loadPhase } from '../../scripts/lib/bench/measure.js';
import { grpcFrame } from '../../scripts/lib/load/h2-generator.js';
import { SEED_RECORD } from '../../scripts/lib/load/payload.js';
import { PredictRequest } from '../../server/generated/inference/v1/inference.js';
import { removeDir, startApp, type TestApp } from '../helpers/server.js';

describe('bench: h2load, the leaner load generator', () => {
  it('frames the Predict request as one uncompressed gRPC message that decodes to the seed record', () => {
    const body = predictBody('conversion');
    expect(body[0], 'compressed flag').to.equal(0);
    expect(body.readUInt32BE(1)).to.equal(body.length - 5);
    const req = PredictRequest.decode(body.subarray(5));
    expect(req.model).to.equal('conversion');
    expect(req.instances).to.deep.equal([{ ...SEED_RECORD }]);
    expect([...grpcFrame(Uint8Array.of(7, 8))]).to.deep.equal([0, 0, 0, 0, 2, 7, 8]);
  });

  it('spreads the rate over the clients and sends gRPC headers', () => {
    const args = h2loadArgs({
      host: '127.0.0.1:8080',
      bodyFile: '/b',
      clients: 4,
      streams: 25,
      rps: 5000,
      durationMs: 12_000,
      logFile: '/l',
    });
    expect(args).to.include.members([
      '--clients=4',
      '--max-concurrent-streams=25',
      '--rps=1250',
      '--duration=12',
      '--header=content-type: application/grpc',
      '--header=te: trailers',
    ]);
    expect(args.at(-1)).to.equal('http://127.0.0.1:8080/inference.v1.InferenceService/Predict');
    expect(
      h2loadArgs({ host: 'h:1', bodyFile: '/b', clients: 1, streams: 1, durationMs: 1000, logFile: '/l' }),
    ).to.not.include.members(['--rps=1']);
  });

  it('reads per-request rows: percentiles of the 200s, failures by kind, the span', () => {
    const rows = [
      '1000000\t200\t1000',
      '1000100\t200\t3000',
      '1000200\t-1\t500',
      '1000300\t503\t200',
      '1000400\t200\t2000',
    ];
    const c = parseH2loadLog(`${rows.join('\n')}\n`);
    expect(c.count).to.equal(5);
    expect(c.okCount).to.equal(3);
    expect(c.failures).to.deep.equal({ 'failed stream': 1, 'HTTP 503': 1 });
    expect(c.p50Ms).to.equal(2);
    expect(c.maxMs).to.equal(3);
    expect(c.spanMs, 'first start to last end').to.equal(3.1);
    expect(() => parseH2loadLog('x\t200\t1\n')).to.throw(/bad row/);
  });

  describe('real h2load against the real server', function () {
    this.timeout(60_000);
    let t: TestApp;
    let workDir: string;

    before(async () => {
      if (!h2loadInstalled()) {
        throw new Error(`h2load is not installed at ${H2LOAD_BIN} (Debian: apt-get install nghttp2-client)`);
      }
      workDir = mkdtempSync(join(tmpdir(), 'bench-h2load-'));
      t = await startApp();
    });
    after(async () => {
      await t?.stop();
      if (workDir) removeDir(workDir);
    });

    const phase = (model: string) =>
      h2loadPhase({
        target: 'direct',
        host: `127.0.0.1:${t.ports.grpc}`,
        model,
        workDir,
        metricsPorts: [t.ports.metrics],
        clients: 1,
        streams: 4,
        load: { concurrency: 4, rps: 100, durationMs: 1000 },
        progress: () => undefined,
      });

    it('every call the server answered OK is counted OK, with latencies and its own CPU', async () => {
      const m = await phase('conversion');
      expect(m.tool).to.equal('h2load');
      expect(m.count).to.be.greaterThan(0);
      expect(m.errorCount, m.errors.join('; ')).to.equal(0);
      expect(m.okCount).to.equal(m.count);
      expect(m.p99Ms).to.be.a('number');
      expect(m.cpuMs).to.have.property('load generator');
    });

    it('counts gRPC errors the server returned under HTTP 200 (NOT_FOUND for an unknown model)', async () => {
      const m = await phase('no-such-model');
      expect(m.count).to.be.greaterThan(0);
      expect(m.okCount).to.equal(0);
      expect(m.errorCount).to.equal(m.count);
      expect(m.errors.join(';')).to.match(/NOT_FOUND ×\d+/);
    });
  });
});
