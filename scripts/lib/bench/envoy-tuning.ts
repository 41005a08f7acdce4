/**
 * The Envoy section of `npm run bench -- --only envoy`: the same stable and
 * canary servers behind several Envoys, each the bootstrap the real stack
 * renders (scripts/lib/envoy/config.ts) with one setting changed, compared
 * in interleaved closed-loop rounds on Envoy's CPU per call and throughput.
 * A change worth keeping goes into config.ts; this section is how it is
 * judged.
 *
 * Not a variant: HTTP/2 windows. Envoy's defaults are 256 MiB per stream and
 * connection (config.core.v3.Http2ProtocolOptions), and a Predict message is
 * a few hundred bytes, so flow control never holds a call back here.
 */
import { type BenchEnvoy, startEnvoyFor } from './envoy.js';
import { startBenchServer } from './processes.js';
import { cpuTable, measurementTable, roundsCell } from './tables.js';
import { type BenchContext, CORES, grpcTarget, interleaved, pinned, warmUp, watchServer } from './targets.js';
import { type Measurement, PROCESS, usPerCall } from './verdicts.js';

/** A rendered bootstrap, as plain JSON. */
type Bootstrap = Record<string, unknown>;

interface Hcm {
  access_log?: unknown[];
  http_filters?: { name: string }[];
  http2_protocol_options?: Record<string, unknown>;
}

/** The ingress HTTP connection manager of a rendered bootstrap. */
function ingressHcm(config: Bootstrap): Hcm {
  const listeners = (config.static_resources as { listeners: { name: string; filter_chains: unknown[] }[] })
    .listeners;
  const ingress = listeners.find((l) => l.name === 'grpc_ingress');
  const chain = ingress?.filter_chains[0] as { filters: { typed_config: Hcm }[] } | undefined;
  const hcm = chain?.filters[0]?.typed_config;
  if (!hcm) throw new Error('rendered bootstrap has no grpc_ingress connection manager');
  return hcm;
}

function clusters(config: Bootstrap) {
  return (config.static_resources as { clusters: Record<string, unknown>[] }).clusters;
}

/** One Envoy setting changed from what the stack ships. */
export interface EnvoyVariant {
  readonly name: string;
  /** What the change is, for the report. */
  readonly what: string;
  readonly concurrency?: number;
  readonly tune?: (config: Bootstrap) => Bootstrap;
}

/** The variants, each one change from the shipped bootstrap (pure functions of a copy of it). */
export const ENVOY_VARIANTS: readonly EnvoyVariant[] = [
  { name: 'as shipped', what: 'the bootstrap config.ts renders, 1 worker' },
  {
    name: 'no access log',
    what: 'access_log removed (what the JSON access line costs; chaos drills and tests read it)',
    tune: (c) => {
      ingressHcm(c).access_log = [];
      return c;
    },
  },
  {
    name: 'no grpc_stats',
    what: 'the grpc_stats filter (per-method counters and upstream latency) removed',
    tune: (c) => {
      const hcm = ingressHcm(c);
      hcm.http_filters = (hcm.http_filters ?? []).filter((f) => f.name !== 'envoy.filters.http.grpc_stats');
      return c;
    },
  },
  {
    name: 'grpc_stats without upstream latency',
    what: 'grpc_stats keeps its per-method call counters (the rollout analysis reads them) without the upstream latency histograms',
    tune: (c) => {
      for (const f of ingressHcm(c).http_filters ?? []) {
        const tc = (f as { typed_config?: Record<string, unknown> }).typed_config;
        if (f.name === 'envoy.filters.http.grpc_stats' && tc) tc.enable_upstream_stats = false;
      }
      return c;
    },
  },
  {
    name: 'health checks every 5 s',
    what: 'active gRPC health checks every 5 s instead of 1 s',
    tune: (c) => {
      for (const cl of clusters(c)) {
        for (const hc of (cl.health_checks as Record<string, unknown>[] | undefined) ?? []) {
          hc.interval = '5s';
          hc.no_traffic_interval = '5s';
        }
      }
      return c;
    },
  },
  { name: '2 workers', what: '--concurrency 2 (one worker thread per core)', concurrency: 2 },
];

export async function envoyTuning(ctx: BenchContext): Promise<string> {
  const { procs, workDir, opts } = ctx;
  try {
    ctx.progress(`[bench] Envoy settings: ${ENVOY_VARIANTS.map((v) => v.name).join(', ')}`);
    const [stable, canary] = await Promise.all([
      startBenchServer(procs, { name: 'stable', workDir, env: pinned(ctx, { ROLE: 'stable' }) }),
      startBenchServer(procs, { name: 'canary', workDir, env: pinned(ctx, { ROLE: 'canary' }) }),
    ]);
    const envoys: BenchEnvoy[] = [];
    for (const [i, v] of ENVOY_VARIANTS.entries()) {
      envoys.push(
        await startEnvoyFor(procs, {
          workDir,
          name: `envoy-variant-${i}`,
          stable: [stable],
          canary,
          concurrency: v.concurrency ?? opts.envoyWorkers,
          ...(v.tune ? { tune: v.tune } : {}),
        }),
      );
    }
    const targets = ENVOY_VARIANTS.map((v, i) => {
      const e = envoys[i] as BenchEnvoy;
      return grpcTarget(ctx, v.name, e.host, [
        { name: PROCESS.envoy, pid: e.pid },
        watchServer(stable, PROCESS.stable),
        watchServer(canary, PROCESS.canary),
      ]);
    });
    await warmUp(ctx, targets);
    const res = await interleaved(ctx, targets);
    const base = res.get(ENVOY_VARIANTS[0]?.name ?? '') as Measurement;
    const baseEnvoy = usPerCall(base, [PROCESS.envoy]);
    const rows = ENVOY_VARIANTS.map((v) => {
      const m = res.get(v.name) as Measurement;
      const envoyUs = usPerCall(m, [PROCESS.envoy]);
      const all = usPerCall(m, [PROCESS.envoy, PROCESS.stable, PROCESS.canary]);
      return `| ${v.name} | ${v.what} | ${Math.round(m.okRps).toLocaleString('en-US')} | ${(m.okRps / base.okRps).toFixed(2)}× | ${envoyUs?.toFixed(0) ?? 'n/a'} | ${envoyUs !== undefined && baseEnvoy ? `${(envoyUs / baseEnvoy).toFixed(2)}×` : 'n/a'} | ${all?.toFixed(0) ?? 'n/a'} | ${roundsCell(m)} |`;
    });
    return [
      `## Envoy settings (stable + canary 90/10, closed loop c=${opts.concurrency}, ${opts.rounds} interleaved rounds)`,
      '',
      'Each Envoy is the shipped bootstrap with one change; all front the same two servers.',
      '',
      '| Envoy | change | ok/s | ÷ shipped | Envoy CPU µs/call | ÷ shipped | Envoy + servers µs/call | ok/s per round |',
      '| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |',
      ...rows,
      '',
      measurementTable(ENVOY_VARIANTS.map((v) => ({ name: v.name, m: res.get(v.name) as Measurement }))),
      '',
      cpuTable(
        ENVOY_VARIANTS.map((v) => ({ name: v.name, m: res.get(v.name) })),
        CORES,
      ),
    ].join('\n');
  } finally {
    await procs.stopAll();
  }
}
