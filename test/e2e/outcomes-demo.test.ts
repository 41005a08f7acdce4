/**
 * The demo end to end: `npm start` (on shifted ports), Predict traffic
 * through Envoy, `npm run simulate-outcomes` sending conversions through
 * RecordOutcomes via Envoy (without x-user-id, so they land on either arm),
 * and `npm run ab-report` joining them across both arms' logs and recovering
 * the planted effect within its intervals.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials } from '@grpc/grpc-js';
import { expect } from 'chai';
import { findLogFiles } from '../../scripts/lib/ab/log-files.js';
import type { Truth } from '../../scripts/lib/ab/planted-effect.js';
import type { Readout } from '../../scripts/lib/ab/readout.js';
import { InferenceServiceClient } from '../../server/generated/inference/v1/inference.js';
import { runCli } from '../helpers/cli.js';
import { failures, runCalls } from '../helpers/envoy.js';
import { ROOT, removeDir, waitFor } from '../helpers/server.js';

const BASE_PORTS = [8080, 9901, 50051, 50052, 9464, 9465];

function free(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

async function freeOffset(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const offset = 3000 + Math.floor(Math.random() * 12_000);
    if ((await Promise.all(BASE_PORTS.map((p) => free(p + offset)))).every(Boolean)) return offset;
  }
  throw new Error('no free set of ports for the stack');
}

/** Lines of `event` in the logs of `arm`. */
function eventLines(logs: string, arm: string, event: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const f of findLogFiles(join(logs, arm))) {
    for (const l of readFileSync(f, 'utf8').split('\n')) {
      if (l.includes(`"event":"${event}"`)) out.push(JSON.parse(l) as Record<string, unknown>);
    }
  }
  return out;
}

describe('the outcome demo: npm start, traffic, simulate-outcomes, ab-report', function () {
  this.timeout(120_000);
  let dir: string;
  let proc: ChildProcess | undefined;
  let exited: Promise<unknown>;
  let output = '';
  let envoy = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'ab-outcome-demo-'));
    const offset = await freeOffset();
    envoy = `127.0.0.1:${8080 + offset}`;
    proc = spawn(
      process.execPath,
      [join(ROOT, 'dist', 'scripts', 'ops', 'stack.js'), '--port-offset', String(offset), '--state-dir', dir],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    exited = new Promise((resolve) => proc?.once('exit', resolve));
    proc.stdout?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    proc.stderr?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const ready = () => output.includes('Ctrl-C stops everything');
    await waitFor('the stack to be ready or exit', () => ready() || proc?.exitCode !== null, 45_000, 50);
    if (!ready()) throw new Error(`the stack did not start:\n${output}`);
  });

  after(async () => {
    if (proc && proc.exitCode === null) {
      proc.kill('SIGTERM');
      await exited;
    }
    if (dir) removeDir(dir);
  });

  it('recovers the planted effect from outcomes recorded through Envoy on both arms', async () => {
    const client = new InferenceServiceClient(envoy, credentials.createInsecure());
    const calls = await runCalls(client, 4000, (i) => ({ user: `demo-${i}` }));
    client.close();
    expect(failures(calls)).to.deep.equal([]);
    const logs = join(dir, 'logs');
    const logged = () =>
      ['stable', 'canary'].reduce((s, arm) => s + eventLines(logs, arm, 'prediction').length, 0);
    await waitFor('every prediction in the logs', () => logged() === 4000, 20_000, 100);

    const sim = await runCli(
      process.execPath,
      [
        join(ROOT, 'dist', 'scripts', 'ops', 'simulate-outcomes.js'),
        '--logs',
        logs,
        '--target',
        envoy,
        '--batch',
        '5',
        '--json',
      ],
      { timeoutMs: 60_000 },
    );
    expect(sim.code, sim.stderr).to.equal(0);
    const planted = JSON.parse(sim.stdout) as { outcomes: number; recorded: number; truth: Truth };
    expect(planted.recorded).to.equal(planted.outcomes);
    const recorded = (arm: string) =>
      eventLines(logs, arm, 'outcome').reduce((s, l) => s + (l.outcomes as unknown[]).length, 0);
    await waitFor(
      'every outcome in the logs',
      () => recorded('stable') + recorded('canary') === planted.recorded,
      20_000,
      100,
    );
    // Without x-user-id Envoy spreads the calls over both arms: the join must read both logs.
    expect(recorded('canary')).to.be.greaterThan(0);
    expect(recorded('stable')).to.be.greaterThan(0);

    const report = await runCli(
      process.execPath,
      // One fixed realisation: the users, their arms and groups, the labels and the simulator's
      // draws (by unit, not by the request ids Envoy makes up) are the same in every run, so
      // this checks the path (RecordOutcomes via Envoy, both arms, the join) on the same data
      // each time. Its 99.9% intervals are those of the operator's readout; coverage itself is
      // measured in ab-stats.test.ts and ab-readout.test.ts. (With draws fresh each run, 30
      // runs gave the promoted lift 0.024 ± 0.024 against the planted 0.030, and one fresh-clone
      // run of npm test missed it.)
      [join(ROOT, 'dist', 'scripts', 'ops', 'ab-report.js'), '--json', '--alpha', '0.001', '--logs', logs],
      {
        timeoutMs: 60_000,
      },
    );
    expect(report.code, report.stderr).to.equal(0);
    const r = JSON.parse(report.stdout) as Readout;
    expect(r.outcomes.fromLogs).to.equal(planted.recorded);
    expect(r.outcomes.resolution.every((x) => x.resolved === 'prediction')).to.equal(true);
    const pair = r.pairs[0];
    expect(pair?.assignment.arms.srm).to.equal(false);
    for (const kind of ['positives', 'arms', 'promoted'] as const) {
      const c = pair?.comparisons.find((x) => x.kind === kind && x.metric === 'converted');
      if (!c?.effect.ok) throw new Error(`${kind}: no test (${JSON.stringify(c)})`);
      // The simulator plants each outcome after its prediction: the readout counts all of them
      // (an outcome clamped to before its exposure would dilute the effect the truth assumes).
      expect(c.ignored, `${kind}: outcomes not counted`).to.deep.equal({
        beforeExposure: 0,
        inDelay: 0,
        afterWindow: 0,
        duplicates: 0,
      });
      const t = planted.truth[kind].absolute;
      expect(c.effect.absolute.ci.low, `${kind}: CI low vs planted ${t}`).to.be.at.most(t);
      expect(c.effect.absolute.ci.high, `${kind}: CI high vs planted ${t}`).to.be.at.least(t);
    }
  });
});
