/**
 * Test helper: the readout's hand-checked fixture and log lines written with
 * the server's record types (server/call-log.ts), so a renamed field fails to
 * compile here rather than silently emptying a report.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Comparison, PairReadout } from '../../scripts/lib/ab/readout.js';
import { outcomeRecord } from '../../scripts/lib/ab/synthetic.js';
import { type OutcomeEntry, type PredictionRecord, UserIds } from '../../server/call-log.js';
import type { Role } from '../../server/config.js';
import type { Group } from '../../server/experiment.js';

export const KEY = 'fixture-key';
const ids = new UserIds('pseudonym', KEY);
export const T0 = Date.parse('2026-11-24T10:00:00.000Z');
export const STABLE_V = '20261124T041750Z';
export const CANARY_V = '20261124T041754Z';

/** A Predict line exactly as the server's record type says (a renamed field fails to compile here). */
export function predictLine(o: {
  arm: Role;
  t: number;
  requestId: string;
  user: string;
  label: 0 | 1;
  group: Group;
  version?: string;
  experiment?: string;
  method?: string;
  /** How the call was routed: the arm its x-ab-group forced, and whether it named its version. */
  forced?: Role;
  pinned?: true;
}): string {
  const record: PredictionRecord = {
    requestId: o.requestId,
    method: o.method ?? 'Predict',
    model: 'conversion',
    version: o.version ?? (o.arm === 'stable' ? STABLE_V : CANARY_V),
    arm: o.arm,
    code: 'OK',
    latencyMs: 0.4,
    time: new Date(o.t).toISOString(),
    event: 'prediction',
    experiment: o.experiment ?? 'positives-v1',
    user: ids.forLog(o.user),
    ...(o.forced === undefined ? {} : { forced: o.forced }),
    ...(o.pinned === undefined ? {} : { pinned: o.pinned }),
    outputs: [
      {
        score: o.label ? 0.6 : 0.1,
        label: o.label,
        group: o.group,
        action: o.group === 'experiment' || (o.group === 'baseline' && o.label === 1) ? 1 : 0,
      },
    ],
    inputs: [{ userId: '[redacted]', appId: 20000 }],
  };
  return JSON.stringify({ level: 'info', pid: 1, ...record, msg: record.method });
}

/** A RecordOutcomes line as the server logs it. */
export function outcomeLine(arm: Role, t: number, outcomes: OutcomeEntry[]): string {
  const record = outcomeRecord({ requestId: `oc-${t}`, model: 'conversion', arm, t, outcomes });
  return JSON.stringify({ level: 'info', pid: 1, ...record, msg: 'RecordOutcomes' });
}

export const conv = (requestId: string, at: number): OutcomeEntry => ({
  requestId,
  instance: 0,
  model: 'conversion',
  metric: 'converted',
  value: 1,
  at: new Date(at).toISOString(),
});

/**
 * The hand-checked fixture. Predictions one second apart, both arms from the first second:
 * - stable: s0..s179, every 5th positive (baseline, treated); the canary:
 *   c0..c39 experiment, c40..c79 control, c80..c119 canary_negative; and user
 *   `both` once on each arm (excluded). Users: stable 181, canary 121.
 * - conversions (at prediction + 10 s, experiment + 30 s): experiment c0..c11
 *   (12/40, RecordOutcomes lines on the stable log: the other arm), control
 *   c40..c45 (6/40, the bulk CSV by raw user id), negatives c80..c83 (4/40),
 *   stable s0..s17 (18/180), `both` (excluded);
 * - noise: c0 sent twice more (a log line and a bulk row: counted once), s100
 *   converted 5 s before its prediction (ignored), an unknown requestId
 *   (unmatched), a never-exposed user `ghost` (bulk), c1 converted again by
 *   user id (a second key of one converted user).
 * So stage 2 is 6/40 vs 12/40, stage 1 18/180 vs 22/120, and the promoted
 * canary (s = 0.5) has Σz = 4 + 12/0.5 = 28, Σz² = 4 + 12·4 = 52 over 120:
 * the three cases of ab-stats.test.ts, whose values come from gbstats.
 */
export function writeFixture(
  dir: string,
  layout: 'flat' | 'rotated' = 'flat',
): { logs: string; csv: string } {
  const lines: Record<Role, string[]> = { stable: [], canary: [] };
  const time: Record<string, number> = {};
  let t = T0;
  const add = (arm: Role, user: string, label: 0 | 1, group: Group) => {
    time[user] = t;
    lines[arm].push(predictLine({ arm, t, requestId: `${user}-r`, user, label, group }));
  };
  // Both arms start at the same instant: the pair's window starts when both serve.
  for (let i = 0; i < 180; i++, t += 1000) {
    if (i < 120) {
      const group: Group = i < 40 ? 'experiment' : i < 80 ? 'control' : 'canary_negative';
      add('canary', `c${i}`, i < 80 ? 1 : 0, group);
    }
    add('stable', `s${i}`, i % 5 === 0 ? 1 : 0, 'baseline');
  }
  add('stable', 'both', 0, 'baseline');
  t += 1000;
  add('canary', 'both', 0, 'canary_negative');
  t += 1000;
  const at = (user: string, after: number) => (time[user] as number) + after;
  const experiment = Array.from({ length: 12 }, (_, i) => conv(`c${i}-r`, at(`c${i}`, 30_000)));
  lines.stable.push(outcomeLine('stable', t, experiment));
  const others = [
    ...Array.from({ length: 4 }, (_, i) => conv(`c${80 + i}-r`, at(`c${80 + i}`, 10_000))),
    ...Array.from({ length: 18 }, (_, i) => conv(`s${i}-r`, at(`s${i}`, 10_000))),
    conv('both-r', at('both', 10_000)),
    conv('s100-r', at('s100', -5000)),
    conv('nope', at('s1', 10_000)),
  ];
  lines.canary.push(outcomeLine('canary', t + 1000, others));
  lines.canary.push(outcomeLine('canary', t + 2000, [conv('c0-r', at('c0', 40_000))]));
  const csv = [
    'requestId,instance,userId,model,metric,value,occurredAt',
    ...Array.from(
      { length: 6 },
      (_, i) => `,,c${40 + i},conversion,converted,1,${new Date(at(`c${40 + i}`, 10_000)).toISOString()}`,
    ),
    `c0-r,0,,conversion,converted,1,${new Date(at('c0', 50_000)).toISOString()}`,
    // c1 converted by prediction (a log line) and again by user: two keys, still one converted user.
    `,,c1,conversion,converted,1,${new Date(at('c1', 35_000)).toISOString()}`,
    `,,ghost,conversion,converted,1,${new Date(T0).toISOString()}`,
  ].join('\n');
  const logs = join(dir, 'logs');
  for (const arm of ['stable', 'canary'] as const) {
    mkdirSync(join(logs, arm, 'archive'), { recursive: true });
    const text = (xs: string[]) => `${xs.join('\n')}\n`;
    if (layout === 'flat') {
      writeFileSync(join(logs, arm, 'server.2026-11-24.1.log'), text(lines[arm]));
    } else {
      // Three rotated files: the oldest archived (gzip) as the archiver leaves it, the outcomes in the last.
      const l = lines[arm];
      const third = Math.floor(l.length / 3);
      writeFileSync(
        join(logs, arm, 'archive', 'server.2026-11-21.1.log.gz'),
        gzipSync(text(l.slice(0, third))),
      );
      writeFileSync(join(logs, arm, 'server.2026-11-23.1.log'), text(l.slice(third, 2 * third)));
      writeFileSync(join(logs, arm, 'server.2026-11-24.1.log'), text(l.slice(2 * third)));
    }
  }
  writeFileSync(join(dir, 'outcomes.csv'), `${csv}\n`);
  return { logs, csv: join(dir, 'outcomes.csv') };
}

export const FIXTURE_OPTIONS = { pseudonymKey: KEY, canaryShare: 0.4, experimentShare: 0.5 };

export function comparison(
  p: PairReadout | undefined,
  kind: Comparison['kind'],
  metric = 'converted',
): Comparison {
  const c = p?.comparisons.find((x) => x.kind === kind && x.metric === metric);
  if (!c) throw new Error(`no ${kind} comparison on ${metric}`);
  return c;
}
export const counts = (c: Comparison) => [
  c.baseline.units,
  c.baseline.sum,
  c.treatment.units,
  c.treatment.sum,
];
