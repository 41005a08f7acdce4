/** The readout as the text an operator reads (`npm run ab-report`); `--json` prints the Readout itself. */
import { AB_OVERRIDE_HEADER } from '../../../server/headers.js';
import { durationText } from '../args.js';
import type { ArmSummary } from './effect.js';
import type { Comparison, PairReadout, Readout } from './readout.js';
import type { Interval, SplitCheck } from './srm.js';

const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
const signedPct = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)}%`;
const points = (x: number) => `${x >= 0 ? '+' : ''}${(100 * x).toFixed(2)} points`;
const int = (x: number) => x.toLocaleString('en-US');
const num = (x: number) => (Math.abs(x) >= 1000 ? x.toFixed(0) : x.toPrecision(4));
const signedNum = (x: number) => `${x >= 0 ? '+' : ''}${num(x)}`;
const pValue = (p: number) => (p < 0.0001 ? p.toExponential(1) : p.toFixed(4));
const span = (i: Interval, f: (x: number) => string) => `[${f(i.low)}, ${f(i.high)}]`;

function table(head: readonly string[], rows: readonly (readonly string[])[], rightFrom: number): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    `  ${cells
      .map((c, i) => (i >= rightFrom ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd()}`;
  return [line(head), ...rows.map(line)].join('\n');
}

function formatSplit(s: SplitCheck, alpha: number): string {
  const rows = s.rows.map((r) => [r.name, int(r.count), pct(r.share), span(r.ci, pct), pct(r.expected)]);
  const verdict = !s.test
    ? `  not tested: ${s.note}`
    : s.srm
      ? `  SAMPLE RATIO MISMATCH: chi-square ${s.test.chi2.toFixed(2)}, p = ${s.test.p.toExponential(2)} < ${alpha}.\n` +
        '  The observed split is not the expected one: check the weights in force during this window\n' +
        '  (--since/--until around a change, --expected-canary), overrides, and missing log files.'
      : `  OK: chi-square ${s.test.chi2.toFixed(2)}, p = ${s.test.p.toFixed(3)} (no mismatch at alpha ${alpha})`;
  return [
    `${s.title} (unit: ${s.unit})`,
    table([s.label, s.unit, 'share', '95% CI', 'expected'], rows, 1),
    verdict,
  ].join('\n');
}

function formatArms(c: Comparison): string {
  const binomial = c.metricType === 'binomial';
  const row = (a: ArmSummary, name: string, exact: boolean) => [
    name,
    int(a.units),
    a.converted === undefined ? '' : int(a.converted),
    exact ? int(a.sum) : num(a.sum),
    binomial ? pct(a.mean) : num(a.mean),
    span(a.ci, binomial ? pct : num),
  ];
  // The promoted canary's "sum" is an IPW-weighted count: not a whole number of users.
  const promoted = c.kind === 'promoted';
  return table(
    [
      'arm',
      'users',
      binomial ? 'converted' : 'with y>0',
      binomial && !promoted ? 'sum' : 'sum (weighted)',
      binomial ? 'rate' : 'mean',
      '95% CI',
    ],
    [
      row(c.baseline, c.baseline.name, binomial),
      row(
        c.treatment,
        promoted ? `${c.treatment.name} if promoted (IPW)` : c.treatment.name,
        binomial && !promoted,
      ),
    ],
    1,
  );
}

function formatComparison(c: Comparison, alpha: number): string {
  const out = [`${c.title}`, formatArms(c)];
  const e = c.effect;
  const level = `${Math.round(100 * (1 - alpha))}%`;
  if (e.ok) {
    const abs = c.metricType === 'binomial' ? points : signedNum;
    const absF = c.metricType === 'binomial' ? (x: number) => points(x).replace(' points', '') : signedNum;
    out.push(
      `  absolute lift ${abs(e.absolute.estimate)}, ${level} CI ${span(e.absolute.ci, absF)}, always-valid ${span(e.absolute.sequentialCi, absF)}`,
    );
    if (e.relative) {
      out.push(
        `  relative lift ${signedPct(e.relative.estimate)}, ${level} CI ${span(e.relative.ci, signedPct)} (delta method), always-valid ${span(e.relative.sequentialCi, signedPct)}`,
      );
    }
    out.push(
      `  p = ${pValue(e.pValue)} (Welch t, ${e.dof.toFixed(0)} df, ${e.scale}), always-valid p = ${pValue(e.sequentialPValue)}, chance to beat ${c.baseline.name}: ${pct(e.chanceToBeat)}`,
    );
  }
  out.push(`  verdict: ${c.verdict.toUpperCase()}${c.winner ? ` (${c.winner})` : ''}: ${c.reason}`);
  const i = c.ignored;
  if (i.beforeExposure + i.inDelay + i.afterWindow + i.duplicates > 0) {
    out.push(
      `  not counted: ${int(i.beforeExposure)} outcomes before exposure, ${int(i.inDelay)} in the delay, ${int(i.afterWindow)} after the window; ${int(i.duplicates)} duplicates counted once`,
    );
  }
  return out.join('\n');
}

function formatPair(p: PairReadout, r: Readout): string {
  const a = p.assignment;
  const out: string[] = [];
  out.push(
    `== ${p.model}: stable ${p.stableVersion} vs canary ${p.canaryVersion} (experiment ${p.experiment}), ${p.from} .. ${p.to} ==`,
  );
  out.push('');
  out.push(formatSplit(a.arms, r.settings.srmAlpha));
  if (a.usersOnBothArms > 0) {
    out.push(
      `  note: ${int(a.usersOnBothArms)} users appear on both arms (QA overrides, or weights changed in this window): excluded from the comparisons.`,
    );
  }
  const nr = (['stable', 'canary'] as const).filter((arm) => a.notRandomised[arm].predictions > 0);
  if (nr.length > 0) {
    const each = nr.map((arm) => {
      const x = a.notRandomised[arm];
      return `${arm} ${int(x.predictions)} (${int(x.forced)} forced by ${AB_OVERRIDE_HEADER}, ${int(x.pinned)} pinned to a version; ${int(x.units)} users)`;
    });
    out.push(
      `  note: predictions not randomised, left out of every count and comparison: ${each.join(', ')}.`,
    );
  }
  out.push('');
  out.push('Groups: predictions, positive rate (model label 1) and treated (action 1)');
  out.push(
    table(
      ['arm', 'group', 'predictions', 'users', 'positives', 'positive rate', '95% CI', 'treated'],
      a.groups.map((g) => [
        g.arm,
        g.group,
        int(g.predictions),
        int(g.users),
        int(g.positives),
        pct(g.positiveRate),
        span(g.ci, pct),
        int(g.treated),
      ]),
      2,
    ),
  );
  out.push('');
  out.push(formatSplit(a.experiment, r.settings.srmAlpha));
  if (a.usersInBothGroups > 0) {
    out.push(
      `  note: ${int(a.usersInBothGroups)} canary users appear in both groups: excluded from the comparisons.`,
    );
  }
  const metrics = [...new Set(p.comparisons.map((c) => c.metric))];
  if (metrics.length === 0) {
    out.push('');
    out.push(`No outcomes recorded for ${p.model}: the readout cannot say which model is better yet.`);
  }
  const w = r.settings;
  const window = `${w.windowMs === undefined ? 'any time' : `within ${durationText(w.windowMs)}`} after exposure${w.delayMs > 0 ? `, after a delay of ${durationText(w.delayMs)}` : ''}`;
  for (const m of metrics) {
    const cs = p.comparisons.filter((c) => c.metric === m);
    out.push('');
    out.push(`Metric ${m} (${cs[0]?.metricType}), per user, outcomes counted ${window}`);
    for (const c of cs) {
      out.push('');
      out.push(formatComparison(c, w.alpha));
    }
  }
  return out.join('\n');
}

/** The readout as the table the operator reads. */
export function formatReadout(r: Readout): string {
  const out: string[] = [];
  const when = r.input.firstTime ? `${r.input.firstTime} .. ${r.input.lastTime}` : 'no predictions';
  const nr = r.input.notRandomised;
  out.push(
    `A/B readout: ${int(r.input.predictionRequests)} Predict calls (${int(r.input.predictions)} predictions) from ${int(r.input.logFiles)} log files (${when})` +
      (nr.predictions > 0
        ? `; ${int(nr.predictions)} predictions not randomised (${int(nr.forced)} forced by ${AB_OVERRIDE_HEADER}, ${int(nr.pinned)} pinned to a version), left out of the experiment`
        : ''),
  );
  const o = r.outcomes;
  if (o.fromLogs + o.fromBulk === 0) {
    out.push(
      'Outcomes: NONE recorded (no RecordOutcomes lines in these logs, no --outcomes file): no business metric to compare.',
    );
  } else {
    const by = (k: string) =>
      o.resolution.filter((x) => x.resolved === k).reduce((s, x) => s + x.outcomes, 0);
    const unexposed = o.unexposed.reduce((s, x) => s + x.outcomes, 0);
    out.push(
      `Outcomes: ${int(o.fromLogs)} from the logs, ${int(o.fromBulk)} from bulk files (${o.metrics.map((m) => `${m.metric}: ${m.type}`).join(', ')}); ` +
        `joined by prediction ${int(by('prediction'))}, by user ${int(by('user'))}, unmatched ${int(by('unmatched'))}, ambiguous ${int(by('ambiguous'))}; ` +
        `${int(unexposed)} name users never exposed`,
    );
  }
  for (const p of r.pairs) {
    out.push('');
    out.push(formatPair(p, r));
  }
  out.push('');
  const on = `${r.primary.comparison}${r.primary.metric ? ` on ${r.primary.metric}` : ''}${r.primary.pair !== undefined && r.pairs.length > 1 ? `, latest pair` : ''}`;
  out.push(`VERDICT (${on}): ${r.verdict.toUpperCase()}${r.winner ? ` (${r.winner})` : ''}: ${r.reason}`);
  return `${out.join('\n')}\n`;
}
