/**
 * `npm run chaos`: its verdicts (unit), its options, and a short real run of
 * one fault (the full suite takes about two minutes: run it by hand).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { cutOffMidResponse, frozenMidResponse } from '../../scripts/lib/chaos/faults.js';
import { type FaultResult, judge } from '../../scripts/lib/chaos/run.js';
import type { CallOutcome } from '../../scripts/lib/chaos/traffic.js';
import { UsageError } from '../../scripts/lib/cli.js';
import type { AccessLogEntry } from '../../scripts/lib/envoy/access-log-entry.js';
import { parseChaosArgs } from '../../scripts/ops/chaos.js';
import { ROOT, removeDir } from '../helpers/server.js';

const call = (user: string, code: number): CallOutcome => ({
  user,
  startedAt: 0,
  endedAt: 1,
  code,
  details: '',
});
const entry = (e: Partial<AccessLogEntry>): AccessLogEntry => ({
  time: '2026-12-01T00:00:00.000Z',
  listener: 'public',
  user: null,
  override: null,
  method: '/inference.v1.InferenceService/Predict',
  route: 'ab_split',
  cluster: 'canary_with_fallback',
  arm: 'canary',
  upstream_host: '127.0.0.1:50052',
  grpc_status: null,
  response_code: 200,
  attempts: 1,
  response_flags: 'UR',
  duration_ms: 3,
  request_id: null,
  ...e,
});

describe('npm run chaos: verdicts', () => {
  it('passes a fault that cost no call and recovered', () => {
    expect(judge({}, [call('a', 0), call('b', 0)], () => undefined, true, 1).verdict).to.equal('PASS');
  });

  it('fails a fault that did not recover, or cost a call it may not cost', () => {
    expect(judge({}, [call('a', 0)], () => undefined, false, 1)).to.include({ verdict: 'FAIL' });
    const r = judge({}, [call('a', 14)], () => undefined, true, 1);
    expect(r.verdict).to.equal('FAIL');
    expect(r.reason).to.match(/1 failed call/);
  });

  it("accepts a canary SIGKILL's cut-off call only when Envoy's access log proves it (canary, 200, upstream reset)", () => {
    const killed = { allowed: cutOffMidResponse };
    const proved = (u: string) => entry({ user: u });
    expect(judge(killed, [call('a', 13)], proved, true, 1)).to.include({ verdict: 'PASS', documented: 1 });
    // No entry, another cluster, stable answering (the fallback), no response started, or no
    // upstream reset: not the documented case.
    for (const e of [
      undefined,
      entry({ cluster: 'stable' }),
      entry({ arm: 'stable' }),
      entry({ response_code: 0 }),
      entry({ response_flags: '-' }),
      entry({ response_flags: 'UMSDR' }),
    ]) {
      expect(judge(killed, [call('a', 13)], () => e, true, 1).verdict, JSON.stringify(e)).to.equal('FAIL');
    }
    // Nor a call begun after the fault was in: it cannot have been cut off by it.
    expect(judge(killed, [{ ...call('a', 13), startedAt: 2 }], proved, true, 1).verdict).to.equal('FAIL');
  });

  it("accepts a hung canary's call only when Envoy's access log shows the response begun (canary, 200, caller's reset)", () => {
    const hung = { allowed: frozenMidResponse };
    const frozen = { response_flags: 'DR', grpc_status: 'UNKNOWN' };
    const proved = (u: string) => entry({ user: u, ...frozen });
    expect(judge(hung, [call('a', 4)], proved, true, 1)).to.include({ verdict: 'PASS', documented: 1 });
    // A call that got no answer at all (the per-try timeout should have retried it), one stable
    // answered after the fallback, one whose status did arrive, or another case.
    for (const e of [
      undefined,
      entry({ ...frozen, response_code: 0 }),
      entry({ ...frozen, cluster: 'stable' }),
      entry({ ...frozen, arm: 'stable' }),
      entry({ ...frozen, grpc_status: 'OK' }),
      entry({ ...frozen, response_flags: 'UMSDR' }),
      entry({ response_flags: 'UR' }),
    ]) {
      expect(judge(hung, [call('a', 4)], () => e, true, 1).verdict, JSON.stringify(e)).to.equal('FAIL');
    }
    expect(judge(hung, [{ ...call('a', 4), startedAt: 2 }], proved, true, 1).verdict).to.equal('FAIL');
  });

  it('parses its options and refuses unknown faults', () => {
    expect(parseChaosArgs([]).faults).to.include('canary-sigkill').and.include('label-missing');
    expect(parseChaosArgs(['--faults', 'envoy-restart,label-missing']).faults).to.deep.equal([
      'envoy-restart',
      'label-missing',
    ]);
    expect(() => parseChaosArgs(['--faults', 'meteor'])).to.throw(UsageError, /unknown fault meteor/);
    expect(() => parseChaosArgs(['--concurrency', '0'])).to.throw(UsageError, /--concurrency/);
  });
});

describe('npm run chaos: a short run', function () {
  this.timeout(120_000);

  it('runs canary-sigkill under traffic: PASS, with calls, recovery times and RSS', async () => {
    const reports = mkdtempSync(join(tmpdir(), 'chaos-reports-'));
    try {
      const child = spawn(
        process.execPath,
        [
          join(ROOT, 'dist', 'scripts', 'ops', 'chaos.js'),
          '--faults',
          'canary-sigkill',
          '--settle-ms',
          '300',
          '--reports',
          reports,
        ],
        { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let output = '';
      child.stdout.on('data', (d: Buffer) => {
        output += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        output += d.toString();
      });
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      expect(code, output).to.equal(0);
      const json = readdirSync(reports).find((f) => f.endsWith('.json')) as string;
      const { results } = JSON.parse(readFileSync(join(reports, json), 'utf8')) as { results: FaultResult[] };
      expect(results.map((r) => [r.fault, r.verdict])).to.deep.equal([['canary-sigkill', 'PASS']]);
      for (const r of results) {
        expect(r.calls, r.fault).to.be.greaterThan(100);
        expect(r.recoveredMs, r.fault).to.be.a('number');
        expect(r.peakRssMb.envoy, r.fault).to.be.greaterThan(0);
      }
      expect(output).to.match(/\| canary-sigkill \| PASS \|/);
    } finally {
      removeDir(reports);
    }
  });
});
