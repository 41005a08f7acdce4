/**
 * The scaling section of `npm run bench -- --extras`: Envoy in front of one,
 * then two stable servers (routes 100/0, so every call goes to stable),
 * compared in interleaved closed-loop rounds.
 */
import { startEnvoyFor } from './envoy.js';
import { startBenchServer } from './processes.js';
import { cpuTable, measurementTable, roundsCell } from './tables.js';
import { type BenchContext, CORES, grpcTarget, interleaved, pinned, warmUp, watchServer } from './targets.js';
import type { Measurement } from './verdicts.js';

export async function scaling(ctx: BenchContext): Promise<string> {
  const { procs, workDir, opts } = ctx;
  try {
    ctx.progress('[bench] scaling: 1 → 2 stable servers behind Envoy (routes 100/0: all traffic to stable)');
    const [s1, s2, canary] = await Promise.all([
      startBenchServer(procs, { name: 'stable-1', workDir, env: pinned(ctx, { ROLE: 'stable' }) }),
      startBenchServer(procs, { name: 'stable-2', workDir, env: pinned(ctx, { ROLE: 'stable' }) }),
      startBenchServer(procs, { name: 'canary', workDir, env: pinned(ctx, { ROLE: 'canary' }) }),
    ]);
    const weights = { stable: 100, canary: 0 };
    const one = await startEnvoyFor(procs, {
      workDir,
      name: 'envoy-1',
      stable: [s1],
      canary,
      weights,
      concurrency: opts.envoyWorkers,
    });
    const two = await startEnvoyFor(procs, {
      workDir,
      name: 'envoy-2',
      stable: [s1, s2],
      canary,
      weights,
      concurrency: opts.envoyWorkers,
    });
    const targets = [
      grpcTarget(ctx, '1 server', one.host, [{ name: 'Envoy', pid: one.pid }, watchServer(s1, 'stable-1')]),
      grpcTarget(ctx, '2 servers', two.host, [
        { name: 'Envoy', pid: two.pid },
        watchServer(s1, 'stable-1'),
        watchServer(s2, 'stable-2'),
      ]),
    ];
    await warmUp(ctx, targets);
    const res = await interleaved(ctx, targets);
    const m1 = res.get('1 server') as Measurement;
    const m2 = res.get('2 servers') as Measurement;
    return [
      `## Scaling: 1 → 2 server processes behind Envoy (${opts.envoyWorkers} Envoy worker, closed loop c=${opts.concurrency}, ${opts.rounds} interleaved rounds)`,
      '',
      'The stable cluster gets a second endpoint (a copy of the rendered one at another port); routes 100/0 so every call goes to stable.',
      '',
      measurementTable([
        { name: 'Envoy → 1 stable server', m: m1 },
        { name: 'Envoy → 2 stable servers', m: m2 },
      ]),
      '',
      `Per round (ok/s): 1 server ${roundsCell(m1)}; 2 servers ${roundsCell(m2)}.`,
      '',
      cpuTable(
        [
          { name: '1 server', m: m1 },
          { name: '2 servers', m: m2 },
        ],
        CORES,
      ),
      '',
      `Scaling 1 → 2: ${(m2.okRps / m1.okRps).toFixed(2)}× throughput.`,
    ].join('\n');
  } finally {
    await procs.stopAll();
  }
}
