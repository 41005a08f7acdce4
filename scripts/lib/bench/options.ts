/**
 * `npm run bench` options, parsed once into a frozen object; a bad option
 * fails with one sentence naming it.
 */
import { resolve } from 'node:path';
import { durationOption, intOption, parseCommandLine } from '../args.js';
import { UsageError } from '../cli.js';

/** What can be run; `side` is the side-by-side table (and the RSS of the direct server). */
const SECTIONS = ['side', 'logging', 'batching', 'scaling', 'families', 'envoy'] as const;
export type Section = (typeof SECTIONS)[number];

export interface BenchOptions {
  readonly sections: ReadonlySet<Section>;
  /** Each measured phase (a max-throughput phase is split into `rounds`). */
  readonly durationMs: number;
  /** Interleaved rounds of every max-throughput comparison. */
  readonly rounds: number;
  /** Unmeasured load before the phases of each target. */
  readonly warmupMs: number;
  /** Closed-loop workers, and the pool that serves the fixed rates. */
  readonly concurrency: number;
  /** The fixed rate for the p50/p99 columns. */
  readonly rate: number;
  /** The fixed rate of the Envoy target (issue 4: 5000 QPS). */
  readonly envoyRate: number;
  /** Envoy worker threads. */
  readonly envoyWorkers: number;
  /** Closed-loop workers of the batching comparison. */
  readonly batchConcurrency: number;
  /** MODEL_BATCHING value of the batching comparison. */
  readonly batching: string;
  /** The fixed rate of the families section (issue 5: 1000 QPS). */
  readonly familiesRate: number;
  /** Version directory the Flask baseline rebuilds (default: the newest demo version). */
  readonly flaskVersion: string | undefined;
  readonly reportsDir: string;
  /** Add the peers (Triton, KServe, MLServer) to the side-by-side run (scripts/lib/bench/peers/). */
  readonly peers: boolean;
  /** Exit 1 when a target is missed (default: verdicts are printed, exit 0). */
  readonly strict: boolean;
  readonly help: boolean;
}

export const BENCH_USAGE = `Usage: npm run bench -- [options]

Side by side on this machine: this server direct and through Envoy (90/10
stable/canary), the seed's Flask stack (same sklearn weights, hey over HTTP),
and a bare grpc-js floor server; max throughput (closed loop) and p50/p99 at a
fixed rate, ratios, and verdicts against issue 4's targets. Writes the report
to reports/bench-<timestamp>.md.

The side section also has two rows, not judged, driving the Open Inference
Protocol's ModelInfer on the direct server with the same records and users:
raw_input_contents (as tritonclient sends) and typed contents (as the KServe
SDK sends), with ModelInfer ÷ Predict throughput and server CPU per call. They
take the load options below, like every row.

Sections (default: side, about 3 minutes):
  --extras              add logging (LOG_LEVEL info vs warn), batching (off vs
                        MODEL_BATCHING) and scaling (1 → 2 servers behind Envoy)
  --families            add issue 5's table: each family through Envoy at a fixed rate
  --envoy               add Envoy settings: the shipped bootstrap vs one change each
                        (no access log, no grpc_stats, grpc_stats without upstream
                        latency, health checks every 5 s, 2 workers)
  --all                 every section (about 5 minutes)
  --only LIST           exactly these, comma-separated: ${SECTIONS.join(', ')}

Peers (with the side section):
  --peers               also Triton (PyTriton), the KServe Python model server and
                        Seldon MLServer, each serving the same weights, checked to
                        give this server's scores before it is timed, in the same
                        interleaved run; their venvs (.venv-peers/) are installed
                        first when missing (pinned in scripts/bench/requirements/)

Load:
  --duration D          each measured phase per target (default 12s)
  --rounds N            max-throughput phases run as N interleaved rounds of
                        duration/N, rotating over the targets, so a shared
                        machine's changing load falls on all alike (default 3)
  --warmup D            unmeasured load before each target's phases (default 2s)
  --concurrency C       closed-loop workers, also serving the fixed rates (default 50)
  --rate N              fixed rate for the p50/p99 columns (default 500)
  --envoy-rate N        fixed rate through Envoy for its verdict (default 5000)
  --envoy-workers N     Envoy --concurrency (default 1)
  --batch-concurrency C closed-loop workers of the batching runs (default 200)
  --batching SPEC       MODEL_BATCHING of the batching runs: the side-by-side's
                        unjudged row and the batching section (default conversion=32/1ms)
  --families-rate N     fixed rate of the families section (default 1000)

Other:
  --flask-version DIR   version the Flask baseline rebuilds (default: newest of models/conversion)
  --reports DIR         where bench-<timestamp>.md goes (default reports)
  --strict              exit 1 when a target is missed
  -h, --help            this text`;

function int(raw: string | undefined, name: string, fallback: number, min: number, max: number): number {
  return intOption(raw, `--${name}`, min, max) ?? fallback;
}

function duration(raw: string | undefined, name: string, fallbackMs: number, minMs: number, maxMs: number) {
  return durationOption(raw, `--${name}`, minMs, maxMs) ?? fallbackMs;
}

export function parseBenchArgs(argv: readonly string[], cwd = process.cwd()): BenchOptions {
  const parsed = parseCommandLine(argv, {
    extras: { type: 'boolean' },
    families: { type: 'boolean' },
    envoy: { type: 'boolean' },
    all: { type: 'boolean' },
    only: { type: 'string' },
    duration: { type: 'string' },
    rounds: { type: 'string' },
    warmup: { type: 'string' },
    concurrency: { type: 'string' },
    rate: { type: 'string' },
    'envoy-rate': { type: 'string' },
    'envoy-workers': { type: 'string' },
    'batch-concurrency': { type: 'string' },
    batching: { type: 'string' },
    'families-rate': { type: 'string' },
    'flask-version': { type: 'string' },
    reports: { type: 'string' },
    strict: { type: 'boolean' },
    peers: { type: 'boolean' },
  });
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  let sections: Set<Section>;
  const only = str('only');
  if (only !== undefined) {
    if (v.all || v.extras || v.families || v.envoy)
      throw new UsageError('--only cannot be combined with --all, --extras, --families or --envoy.');
    const names = only
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    const bad = names.filter((n) => !(SECTIONS as readonly string[]).includes(n));
    if (names.length === 0 || bad.length > 0) {
      throw new UsageError(`--only takes a comma-separated list of ${SECTIONS.join(', ')}, got "${only}".`);
    }
    sections = new Set(names as Section[]);
  } else {
    sections = new Set<Section>(['side']);
    if (v.all || v.extras) for (const s of ['logging', 'batching', 'scaling'] as const) sections.add(s);
    if (v.all || v.families) sections.add('families');
    if (v.all || v.envoy) sections.add('envoy');
  }
  const batching = str('batching') ?? 'conversion=32/1ms';
  if (!/^[\w.-]+=\d+\/\d+ms$/.test(batching)) {
    throw new UsageError(`--batching must look like model=<maxBatch>/<delay>ms, got "${batching}".`);
  }
  const flaskVersion = str('flask-version');
  if (v.peers && !sections.has('side')) throw new UsageError('--peers needs the side section (see --only).');
  return Object.freeze({
    sections,
    durationMs: duration(str('duration'), 'duration', 12_000, 1000, 600_000),
    rounds: int(str('rounds'), 'rounds', 3, 1, 20),
    warmupMs: duration(str('warmup'), 'warmup', 2000, 0, 120_000),
    concurrency: int(str('concurrency'), 'concurrency', 50, 1, 2000),
    rate: int(str('rate'), 'rate', 500, 1, 200_000),
    envoyRate: int(str('envoy-rate'), 'envoy-rate', 5000, 1, 200_000),
    envoyWorkers: int(str('envoy-workers'), 'envoy-workers', 1, 1, 64),
    batchConcurrency: int(str('batch-concurrency'), 'batch-concurrency', 200, 1, 2000),
    batching,
    familiesRate: int(str('families-rate'), 'families-rate', 1000, 1, 200_000),
    flaskVersion: flaskVersion === undefined ? undefined : resolve(cwd, flaskVersion),
    reportsDir: resolve(cwd, str('reports') ?? 'reports'),
    peers: v.peers === true,
    strict: v.strict === true,
    help: v.help === true,
  });
}
