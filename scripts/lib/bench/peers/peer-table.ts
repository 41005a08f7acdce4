/**
 * The peers' table of `npm run bench -- --peers`: max throughput (closed loop,
 * the run's concurrency) and the server's CPU per call of every target of the
 * side-by-side's one interleaved run, this server, the floor and Flask
 * included, each also as a ratio to this server.
 */
import { GENERATOR } from '../measure.js';
import { roundsCell } from '../tables.js';
import type { Measurement } from '../verdicts.js';
import type { PeerOutcome } from './lineup.js';
import { agreementText } from './score-agreement.js';

/** A row: a target's label, its max-throughput measurement, and what it is. */
export interface PeerRow {
  readonly label: string;
  readonly m: Measurement | undefined;
  readonly generator: string;
}

/** All the CPU a target's own processes used per successful call, µs (the load generator excluded). */
export function serverUsPerCall(m: Measurement | undefined): number | undefined {
  if (!m?.cpuMs || m.okCount === 0) return undefined;
  const ms = Object.entries(m.cpuMs)
    .filter(([name]) => name !== GENERATOR)
    .reduce((sum, [, v]) => sum + v, 0);
  return (ms * 1000) / m.okCount;
}

function generatorUsPerCall(m: Measurement | undefined): number | undefined {
  const ms = m?.cpuMs?.[GENERATOR];
  return ms === undefined || !m || m.okCount === 0 ? undefined : (ms * 1000) / m.okCount;
}

const int = (x: number | undefined) => (x === undefined ? 'n/a' : Math.round(x).toLocaleString('en-US'));
const ratio = (x: number | undefined, y: number | undefined) =>
  x === undefined || y === undefined || y <= 0 ? 'n/a' : `${(x / y).toFixed(2)}×`;

/** The table, with `ours` the row the ratios divide by, and the peers' checks and settings below it. */
export function peerTable(
  rows: readonly PeerRow[],
  ours: Measurement | undefined,
  outcomes: readonly PeerOutcome[],
  concurrency: number,
): string {
  const oursCpu = serverUsPerCall(ours);
  const lines = [
    `| target | max ok/s (c=${concurrency}) | ÷ ours | server CPU µs/call | ÷ ours | load generator µs/call | errors | ok/s per round |`,
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
  ];
  for (const r of rows) {
    const cpu = serverUsPerCall(r.m);
    lines.push(
      `| ${r.label} | ${int(r.m?.okRps)} | ${ratio(r.m?.okRps, ours?.okRps)} | ${int(cpu)} | ${ratio(cpu, oursCpu)} | ` +
        `${int(generatorUsPerCall(r.m))} (${r.generator}) | ${r.m ? `${r.m.errorCount}/${r.m.count}` : 'n/a'} | ${roundsCell(r.m)} |`,
    );
  }
  for (const o of outcomes) {
    if (!o.target) lines.push(`| ${o.spec.label} | not timed | | | | | | |`);
  }
  lines.push(
    '',
    "Peers (same weights: the version's model.onnx, sha256-checked, in ONNX Runtime; preprocessing by scripts/lib/pipeline/features.py; 127.0.0.1 only):",
    '',
  );
  for (const o of outcomes) {
    const check = o.agreement ? agreementText(o.agreement) : (o.problem ?? 'not checked');
    lines.push(
      `- ${o.spec.label}: ${check}. Settings: ${o.spec.settings}; ${o.spec.wire.encoding} tensors, shape [${o.spec.wire.shape.join(', ')}].`,
    );
  }
  return lines.join('\n');
}

/**
 * The "Peers" subsection from the side-by-side's max-throughput runs, keyed by
 * target name (`direct`, `floor`, `flask` and each peer's key), plus the CPU
 * per process of each peer.
 */
export function peersSection(
  outcomes: readonly PeerOutcome[],
  max: ReadonlyMap<string, Measurement>,
  concurrency: number,
  cpuTable: (rows: { name: string; m: Measurement | undefined }[]) => string,
): string {
  const rows: PeerRow[] = [
    {
      label: 'this server, direct (preprocessing raw records, logging every prediction)',
      m: max.get('direct'),
      generator: 'ghz',
    },
    { label: 'floor: bare grpc-js (constant answer)', m: max.get('floor'), generator: 'ghz' },
    { label: 'Flask + sklearn (seed)', m: max.get('flask'), generator: 'hey' },
    ...outcomes
      .filter((o) => o.target)
      .map((o) => ({ label: o.spec.label, m: max.get(o.spec.key), generator: 'ghz' })),
  ];
  return [
    '### Peers',
    '',
    peerTable(rows, max.get('direct'), outcomes, concurrency),
    '',
    'CPU per process of the peers (max-throughput runs):',
    '',
    cpuTable(outcomes.filter((o) => o.target).map((o) => ({ name: o.spec.key, m: max.get(o.spec.key) }))),
  ].join('\n');
}
