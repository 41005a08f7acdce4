/**
 * Stage 2 end to end, behind the real Envoy: the canary splits its positive
 * predictions into experiment and control by a salted hash of the user; the
 * groups show in responses, metrics and logs; `npm run ab-report` reads those
 * logs back.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { findLogFiles } from '../../scripts/lib/ab/log-files.js';
import type { Assignment } from '../../scripts/lib/ab/readout.js';
import { asPredictionRecord, userOfOutput } from '../../server/call-log.js';
import {
  type AbStack,
  type CallResult,
  countArms,
  demoVersions,
  failures,
  metricValue,
  qaRecords,
  runCalls,
  startAbStack,
  withinSigma,
} from '../helpers/envoy.js';
import { ROOT, removeDir, waitFor } from '../helpers/server.js';

const EXPERIMENT = { name: 'ab-it', salt: 'salt-42', share: 0.3 };

/** The documented assignment (server/experiment.ts), computed independently. */
function expectedGroup(user: string): 'experiment' | 'control' {
  const bucket = createHash('sha256')
    .update(`${EXPERIMENT.salt}:${EXPERIMENT.name}:${user}`)
    .digest()
    .readUInt32BE(0);
  return bucket < Math.round(EXPERIMENT.share * 2 ** 32) ? 'experiment' : 'control';
}

/** Predictions by `arm/group/label` across call results. */
function tallyGroups(results: readonly CallResult[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of results) {
    for (const p of r.response?.predictions ?? []) {
      const k = `${r.response?.arm}/${p.group}/${p.label}`;
      out.set(k, (out.get(k) ?? 0) + 1);
    }
  }
  return out;
}

function predictLinesIn(dir: string): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  for (const f of findLogFiles(dir)) {
    for (const l of readFileSync(f, 'utf8').split('\n')) {
      if (l.includes('"msg":"Predict"')) lines.push(JSON.parse(l) as Record<string, unknown>);
    }
  }
  return lines;
}

describe('A/B experiment split (stage 2) behind Envoy', function () {
  this.timeout(60_000);
  let stack: AbStack;
  let logs: string;
  const records = qaRecords(demoVersions().newer);
  const all: CallResult[] = [];
  let splitEnd = '';
  let split: CallResult[] = [];

  before(async () => {
    logs = mkdtempSync(join(tmpdir(), 'ab-logs-'));
    const experiment = {
      // Raw ids in these logs, so the test can recompute each user's group (pseudonyms: redaction.test.ts).
      LOG_USER_IDS: 'raw',
      EXPERIMENT_NAME: EXPERIMENT.name,
      EXPERIMENT_SALT: EXPERIMENT.salt,
      EXPERIMENT_SHARE: String(EXPERIMENT.share),
    };
    stack = await startAbStack({
      stableEnv: { ...experiment, LOG_DIR: join(logs, 'stable') },
      canaryEnv: { ...experiment, LOG_DIR: join(logs, 'canary') },
    });
  });

  after(async () => {
    await stack?.stop();
    if (logs) removeDir(logs);
  });

  it('labels stable predictions baseline and splits canary positives by user, through the 90/10 split', async () => {
    // The public listener removes x-ab-group: a third of these carry it, and are split like the rest.
    split = await runCalls(stack.client, 3000, (i) => ({
      user: `user-${i}`,
      ...(i % 3 === 0 ? { override: 'canary' } : {}),
    }));
    // The end of the split must follow every split call's log line. A line takes its time
    // after the response is sent, so a client can read an answer before its line is
    // stamped; a readout windowed at splitEnd would then count fewer users than one over
    // the whole log (seen: 2,656 against 2,658).
    const splitUsers = new Set(split.map((r) => r.user));
    let lastStamp = 0;
    await waitFor(
      "every split call's line in the logs",
      () => {
        const stamps = predictLinesIn(logs)
          .filter((l) => splitUsers.has(l.user as string))
          .map((l) => Date.parse(l.time as string));
        lastStamp = Math.max(0, ...stamps);
        return stamps.length >= split.length;
      },
      10_000,
      50,
    );
    await waitFor('the clock past the last line', () => Date.now() > lastStamp, 1000, 1);
    splitEnd = new Date().toISOString();
    all.push(...split);
    expect(failures(split)).to.deep.equal([]);
    for (const r of split) {
      const p = r.response?.predictions[0];
      if (r.response?.arm === 'stable') {
        expect(p).to.include({ group: 'baseline', action: p?.label });
      } else {
        expect(p?.label).to.equal(1);
        const group = expectedGroup(r.user as string);
        expect(p).to.include({ group, action: group === 'experiment' ? 1 : 0 });
      }
    }
    const check = withinSigma(countArms(split).canary ?? 0, 3000, 0.1);
    expect(check.ok, check.text).to.equal(true);
  });

  it('assigns the configured share of canary positives to experiment (within 4σ), the same way every time', async () => {
    // The QA override gives the canary enough positives to measure a 30% share.
    const first = await runCalls(stack.qaClient, 2000, (i) => ({ user: `s2-${i}`, override: 'canary' }));
    const again = await runCalls(stack.qaClient, 400, (i) => ({ user: `s2-${i}`, override: 'canary' }));
    all.push(...first, ...again);
    expect(failures([...first, ...again])).to.deep.equal([]);
    const groups = first.map((r) => r.response?.predictions[0]?.group);
    const check = withinSigma(groups.filter((g) => g === 'experiment').length, 2000, EXPERIMENT.share);
    expect(check.ok, check.text).to.equal(true);
    expect(groups).to.deep.equal(first.map((r) => expectedGroup(r.user as string)));
    expect(again.map((r) => r.response?.predictions[0]?.group)).to.deep.equal(groups.slice(0, 400));
  });

  it("uses each instance's userId when the call carries no x-user-id, and labels negatives canary_negative", async () => {
    const users = Array.from({ length: 40 }, (_, i) => 900_000 + i);
    const [batch] = await runCalls(stack.qaClient, 1, () => ({
      override: 'canary',
      instances: [
        ...users.map((u) => ({ ...records.positive, userId: u })),
        { ...records.negative, userId: 1 },
        { ...records.negative, userId: 2 },
      ],
    }));
    all.push(batch as CallResult);
    const predictions = batch?.response?.predictions ?? [];
    expect(predictions.slice(0, 40).map((p) => p.group)).to.deep.equal(
      users.map((u) => expectedGroup(String(u))),
    );
    expect(predictions.slice(40)).to.deep.equal([
      { ...predictions[40], group: 'canary_negative', action: 0, label: 0 },
      { ...predictions[41], group: 'canary_negative', action: 0, label: 0 },
    ]);
  });

  it('counts every assignment in the metrics, by arm, group and label', async () => {
    const expected = tallyGroups(all);
    const scrape = async (port: number) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    const canary = await scrape(stack.canary.metricsPort);
    const stable = await scrape(stack.stable.metricsPort);
    const versionOf = new Map(all.map((r) => [r.response?.arm, r.response?.version]));
    for (const [key, count] of expected) {
      const [arm, group, label] = key.split('/') as [string, string, string];
      const text = arm === 'canary' ? canary : stable;
      const labels = { arm, model: 'conversion', version: versionOf.get(arm) as string, group, label };
      expect(metricValue(text, 'inference_ab_assignments_total', labels), key).to.equal(count);
    }
    expect([...expected.keys()].some((k) => k.startsWith('stable/baseline/'))).to.equal(true);
    expect([...expected.keys()]).to.include.members([
      'canary/experiment/1',
      'canary/control/1',
      'canary/canary_negative/0',
    ]);
  });

  it('logs every assignment with its user, group and action', async () => {
    // The calls of the tests above, every group among them: with none, the comparison below would hold vacuously.
    const groups = [...tallyGroups(all).keys()];
    expect(
      groups.some((k) => k.startsWith('stable/baseline/')),
      groups.join(' '),
    ).to.equal(true);
    expect(groups, 'groups the calls above were assigned').to.include.members([
      'canary/experiment/1',
      'canary/control/1',
      'canary/canary_negative/0',
    ]);
    const expected = [...tallyGroups(all).values()].reduce((a, b) => a + b, 0);
    let lines: Record<string, unknown>[] = [];
    await waitFor(
      'the log files to hold every prediction',
      () => {
        lines = predictLinesIn(logs);
        return lines.reduce((s, l) => s + ((l.outputs as unknown[]) ?? []).length, 0) >= expected;
      },
      10_000,
      100,
    );
    const logged = new Map<string, number>();
    const splitUsers = new Set(split.map((r) => r.user));
    for (const l of lines) {
      const record = asPredictionRecord(l);
      if (!record) throw new Error(`not a prediction record: ${JSON.stringify(l)}`);
      // The split's calls came through the public listener (which removed any x-ab-group), the rest
      // through the QA listener forcing the canary; none named a version.
      expect(record.forced, record.requestId).to.equal(splitUsers.has(record.user) ? undefined : 'canary');
      expect(l, record.requestId).to.not.have.property('pinned');
      record.outputs.forEach((o, i) => {
        const k = `${record.arm}/${o.group}/${o.label}`;
        logged.set(k, (logged.get(k) ?? 0) + 1);
        if (o.group === 'experiment' || o.group === 'control') {
          expect(o.group).to.equal(expectedGroup(userOfOutput(record, i) as string));
        }
      });
    }
    expect(logged).to.deep.equal(tallyGroups(all));
    expect(readdirSync(join(logs, 'canary')).some((f) => f.endsWith('.log'))).to.equal(true);
  });

  it('`npm run ab-report` reads those logs: healthy splits, and the forced calls left out and counted', () => {
    const script = join(ROOT, 'dist', 'scripts', 'ops', 'ab-report.js');
    const window = spawnSync(
      process.execPath,
      [script, '--logs', logs, '--until', splitEnd, '--experiment-share', String(EXPERIMENT.share), '--json'],
      { encoding: 'utf8' },
    );
    expect(window.status, window.stderr).to.equal(0);
    const report = JSON.parse(window.stdout) as {
      pairs: {
        assignment: {
          arms: { srm: boolean; rows: { name: string; count: number }[] };
          experiment: { srm: boolean; rows: { name: string; count: number }[] };
        };
      }[];
    };
    expect(report.pairs).to.have.length(1);
    const { assignment } = report.pairs[0] as (typeof report.pairs)[number];
    // The readout counts a version pair from the moment both arms serve: the split's calls
    // logged from the first instant that both arms had answered one.
    const splitUsers = new Set(split.map((r) => r.user as string));
    const logged = predictLinesIn(logs)
      .map((l) => asPredictionRecord(l))
      .filter((r): r is NonNullable<typeof r> => r !== undefined && splitUsers.has(r.user ?? ''));
    const start = Math.max(
      ...(['stable', 'canary'] as const).map((arm) =>
        Math.min(...logged.filter((r) => r.arm === arm).map((r) => Date.parse(r.time))),
      ),
    );
    // The readout's window is [start, --until): the last calls' lines can be stamped at or after
    // splitEnd (the client can read a response before the server's log line takes its time).
    const until = Date.parse(splitEnd);
    const inWindow = logged.filter((r) => Date.parse(r.time) >= start && Date.parse(r.time) < until);
    const users = (f: (r: (typeof inWindow)[number]) => boolean) =>
      new Set(inWindow.filter(f).map((r) => r.user)).size;
    expect(start - Math.min(...logged.map((r) => Date.parse(r.time)))).to.be.below(5000);
    // On a mismatch, say where the split's lines fell against the window.
    const outside = (arm: string) =>
      `${arm}: ${logged.filter((r) => r.arm === arm && Date.parse(r.time) < start).length} before start, ` +
      `${logged.filter((r) => r.arm === arm && Date.parse(r.time) >= until).length} at or after --until, ` +
      `${new Set(logged.filter((r) => r.arm === arm).map((r) => r.user)).size} users in all`;
    const bothArms = [...new Set(logged.filter((r) => r.arm === 'canary').map((r) => r.user))].filter((u) =>
      logged.some((r) => r.arm === 'stable' && r.user === u),
    ).length;
    expect(
      assignment.arms.rows.map((r) => [r.name, r.count]),
      `window [${new Date(start).toISOString()}, ${splitEnd}); ${outside('stable')}; ${outside('canary')}; ${bothArms} users on both arms`,
    ).to.deep.equal([
      ['stable', users((r) => r.arm === 'stable')],
      ['canary', users((r) => r.arm === 'canary')],
    ]);
    expect(assignment.arms.srm).to.equal(false);
    const group = (g: string) => users((r) => r.arm === 'canary' && r.outputs[0]?.group === g);
    expect(assignment.experiment.rows.map((r) => [r.name, r.count])).to.deep.equal([
      ['experiment', group('experiment')],
      ['control', group('control')],
    ]);
    expect(assignment.experiment.srm).to.equal(false);

    // The QA-forced canary calls came after the split: counted in, they would break the 90/10
    // ratio; the readout leaves every one out and says how many, per arm.
    const forced = predictLinesIn(logs)
      .map((l) => asPredictionRecord(l))
      .filter((r) => r?.forced !== undefined)
      .reduce((n, r) => n + (r?.outputs.length ?? 0), 0);
    expect(forced, 'the QA calls above').to.be.greaterThan(2000);
    const whole = spawnSync(
      process.execPath,
      [script, '--logs', logs, '--experiment-share', '0.3', '--json'],
      {
        encoding: 'utf8',
      },
    );
    expect(whole.status, whole.stderr).to.equal(0);
    const all = JSON.parse(whole.stdout) as {
      pairs: { assignment: Pick<Assignment, 'arms' | 'notRandomised'> }[];
    };
    expect(all.pairs).to.have.length(1);
    const a = all.pairs[0]?.assignment;
    expect(a?.arms.rows.map((r) => [r.name, r.count])).to.deep.equal(
      assignment.arms.rows.map((r) => [r.name, r.count]),
    );
    expect(a?.arms.srm).to.equal(false);
    expect(a?.notRandomised.canary).to.include({ predictions: forced, forced, pinned: 0 });
    expect(a?.notRandomised.stable).to.include({ predictions: 0 });
    const text = spawnSync(process.execPath, [script, '--logs', logs, '--experiment-share', '0.3'], {
      encoding: 'utf8',
    });
    expect(text.stdout).to.include(
      `canary ${forced.toLocaleString('en-US')} (${forced.toLocaleString('en-US')} forced by x-ab-group`,
    );
    expect(text.stdout).to.not.include('SAMPLE RATIO MISMATCH');
  });
});
