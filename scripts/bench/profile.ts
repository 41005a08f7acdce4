/**
 * Where a server's CPU goes under load, by component: the real server and the
 * floor server (scripts/bench/floor-server.ts) each run under V8's sampling profiler
 * (`node --cpu-prof`) while ghz drives them with the bench's closed loop; only
 * the samples taken during the measured phase count. Each sample is charged to
 * the first component found walking from its frame up the stack (so a native
 * write called by pino counts as logging). Prints a markdown table of CPU µs
 * per call by component, the gap between the two being what the server adds
 * to grpc-js.
 *
 *     npm run bench:profile -- [--duration 8s] [--warmup 2s] [--concurrency 50]
 *
 * `npm run bench:breakdown` times each stage alone in a tight loop; this shows
 * the same stages in the running process, with grpc-js, HTTP/2 and GC beside
 * them. The profiler's own overhead inflates every figure somewhat: read the
 * shares more than the absolute values.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { durationOption, intOption, parseCommandLine } from '../lib/args.js';
import { startFloor } from '../lib/bench/baselines.js';
import { ghzPhase, type Progress } from '../lib/bench/measure.js';
import { benchRepository, Processes, startBenchServer } from '../lib/bench/processes.js';
import { optionsOrExit, runIfMain } from '../lib/cli.js';
import { MODELS_DIR } from '../lib/paths.js';
import { newestVersion } from '../lib/versions.js';

/** A frame as the .cpuprofile format has it (Chrome DevTools protocol, Profiler.ProfileNode). */
export interface Frame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber?: number;
}

/** Components, checked in this order on each frame from the sampled one up. */
const RULES: readonly [string, (f: Frame) => boolean][] = [
  [
    'logging (pino, sonic-boom)',
    (f) =>
      /\/(pino|pino-roll|sonic-boom|fast-redact|pino-std-serializers)\/|server\/(logger|prediction-line)\.js/.test(
        f.url,
      ),
  ],
  ['metrics (prom-client)', (f) => /\/prom-client\/|server\/metrics\.js/.test(f.url)],
  [
    'ONNX Runtime (run + runner)',
    (f) => /onnxruntime-(node|common)\/|server\/(inference-runner|model-version|batcher)\.js/.test(f.url),
  ],
  ['preprocessing', (f) => /server\/preprocess\.js/.test(f.url)],
  ['A/B assignment', (f) => /server\/experiment\.js/.test(f.url)],
  ['protobuf (ts-proto, Struct)', (f) => /\/generated\/|@bufbuild\/|server\/predict-codec\.js/.test(f.url)],
  [
    'server handler (adapter, service)',
    (f) => /\/server\/[\w-]+\.js/.test(f.url) && !f.url.includes('/generated/'),
  ],
  ['floor handler', (f) => /scripts\/floor-server\.js/.test(f.url)],
  ['grpc-js', (f) => f.url.includes('@grpc/grpc-js')],
  [
    'node http2, net, streams',
    (f) => /^node:internal\/(http2|net|stream_base_commons|streams)|^node:net/.test(f.url),
  ],
];

/** The component a sample belongs to, from its frames, leaf first. */
export function categorize(stack: readonly Frame[]): string {
  const leaf = stack[0];
  if (leaf?.functionName === '(garbage collector)') return 'garbage collector';
  if (leaf?.functionName === '(program)') return 'native, unattributed (V8 "program")';
  if (leaf?.functionName === '(idle)') return 'idle';
  for (const f of stack) {
    for (const [name, test] of RULES) if (test(f)) return name;
  }
  return 'other JavaScript (event loop, timers, promises)';
}

interface CpuProfile {
  nodes: { id: number; callFrame: Frame; children?: number[] }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/**
 * CPU µs per component in a profile, counting only samples whose time (µs,
 * the monotonic clock V8 and `process.hrtime` share on Linux) falls in
 * [fromUs, toUs]. Idle is left out.
 */
export function componentTimes(profile: CpuProfile, fromUs: number, toUs: number): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const categoryOf = new Map<number, string>();
  const category = (id: number) => {
    let c = categoryOf.get(id);
    if (c === undefined) {
      const stack: Frame[] = [];
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const node = byId.get(cur);
        if (node) stack.push(node.callFrame);
      }
      c = categorize(stack);
      categoryOf.set(id, c);
    }
    return c;
  };
  return sampledTimes(profile, fromUs, toUs, (id) => {
    const c = category(id);
    return c === 'idle' ? undefined : c;
  });
}

/**
 * µs per key over the samples whose time (µs, the monotonic clock V8 and
 * `process.hrtime` share on Linux) falls in [fromUs, toUs]; `keyOf` names a
 * sampled node's key, or undefined to leave it out.
 */
function sampledTimes(
  profile: CpuProfile,
  fromUs: number,
  toUs: number,
  keyOf: (nodeId: number) => string | undefined,
): Map<string, number> {
  const out = new Map<string, number>();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const dt = profile.timeDeltas[i] ?? 0;
    t += dt;
    // A sample stands for the interval since the previous one.
    if (t < fromUs || t > toUs) continue;
    const key = keyOf(profile.samples[i] as number);
    if (key !== undefined) out.set(key, (out.get(key) ?? 0) + dt);
  }
  return out;
}

/**
 * CPU µs of self time per function (name, file and line of its sampled
 * frame) in [fromUs, toUs], idle left out: where to look inside a component.
 */
export function selfTimes(profile: CpuProfile, fromUs: number, toUs: number): Map<string, number> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  return sampledTimes(profile, fromUs, toUs, (id) => {
    const f = byId.get(id)?.callFrame;
    if (!f || f.functionName === '(idle)') return undefined;
    const where =
      f.url === '' ? '' : ` ${f.url.replace(/^.*\/(node_modules|dist)\//, '')}:${(f.lineNumber ?? -1) + 1}`;
    return `${f.functionName || '(anonymous)'}${where}`;
  });
}

const nowUs = () => Number(process.hrtime.bigint() / 1000n);

const USAGE = `Usage: npm run bench:profile -- [options]

CPU per call by component (logging, ONNX Runtime, protobuf, grpc-js, HTTP/2,
GC…) for the real server and the grpc-js floor under a ghz closed loop, from
node --cpu-prof samples taken in the measured phase.

  --duration D      measured phase per process (default 8s)
  --warmup D        unmeasured load first (default 2s)
  --concurrency C   ghz workers (default 50)
  --top N           also list each process's N costliest functions by self
                    time per call (default 0: none)
  -h, --help        this text`;

function parse(argv: readonly string[]) {
  const { values } = parseCommandLine(argv, {
    duration: { type: 'string' },
    warmup: { type: 'string' },
    concurrency: { type: 'string' },
    top: { type: 'string' },
  });
  return {
    durationMs: durationOption(values.duration, '--duration', 1000, 600_000) ?? 8000,
    warmupMs: durationOption(values.warmup, '--warmup', 0, 600_000) ?? 2000,
    concurrency: intOption(values.concurrency, '--concurrency', 1, 2000) ?? 50,
    top: intOption(values.top, '--top', 0, 1000) ?? 0,
    help: values.help === true,
  };
}

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'bench:profile', usage: USAGE, parse }, argv);
  if (typeof opts === 'number') return opts;
  const { durationMs, warmupMs, concurrency, top } = opts;
  const workDir = mkdtempSync(join(tmpdir(), 'bench-profile-'));
  const procs = new Processes();
  const progress: Progress = (line) => process.stderr.write(`${line}\n`);
  const version = newestVersion(join(MODELS_DIR, 'conversion'));
  const prof = (name: string) => ['--cpu-prof', `--cpu-prof-dir=${join(workDir, `prof-${name}`)}`];
  const results: {
    name: string;
    calls: number;
    times: Map<string, number>;
    self: Map<string, number>;
    load: string;
  }[] = [];
  const onSignal = () => void procs.stopAll().then(() => process.exit(130));
  process.once('SIGINT', onSignal);
  try {
    for (const name of ['server', 'floor'] as const) {
      const host =
        name === 'server'
          ? (
              await startBenchServer(procs, {
                name,
                workDir,
                env: {
                  MODEL_ROOT: benchRepository(workDir, [version]),
                  MODEL_VERSION_POLICY: `conversion=${version}`,
                },
                nodeArgs: prof(name),
              })
            ).host
          : `127.0.0.1:${(await startFloor(procs, workDir, prof(name))).port}`;
      const phase = (target: string, ms: number) =>
        ghzPhase({
          target,
          host,
          model: 'conversion',
          load: { concurrency, durationMs: ms },
          workDir,
          progress,
        });
      await phase(`${name} warm-up`, warmupMs);
      const from = nowUs();
      const m = await phase(name, durationMs);
      const to = nowUs();
      // The profile is written when the process exits.
      await procs.stopAll();
      const dir = join(workDir, `prof-${name}`);
      const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
      if (!file) throw new Error(`no .cpuprofile from the ${name} process`);
      const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
      results.push({
        name,
        calls: m.okCount,
        times: componentTimes(profile, from, to),
        self: selfTimes(profile, from, to),
        load: `${m.load1[0].toFixed(2)}→${m.load1[1].toFixed(2)}`,
      });
    }
  } finally {
    await procs.stopAll();
    rmSync(workDir, { recursive: true, force: true });
  }
  const [server, floor] = results as [(typeof results)[0], (typeof results)[0]];
  const names = [...new Set([...server.times.keys(), ...floor.times.keys()])].sort(
    (a, b) => (server.times.get(b) ?? 0) - (server.times.get(a) ?? 0),
  );
  const perCall = (r: typeof server, k: string) => (r.times.get(k) ?? 0) / Math.max(1, r.calls);
  const total = (r: typeof server) => [...r.times.values()].reduce((a, b) => a + b, 0);
  console.log(
    `CPU per call by component, closed loop c=${concurrency}, ${durationMs / 1000} s each, ${cpus().length} CPUs ` +
      `(load average ${loadavg()
        .map((l) => l.toFixed(2))
        .join(
          ' ',
        )}); server ${server.calls} calls (load ${server.load}), floor ${floor.calls} calls (load ${floor.load}); ` +
      'node --cpu-prof, samples in the measured phase only\n',
  );
  console.log('| component | server µs/call | server share | floor µs/call |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const k of names) {
    console.log(
      `| ${k} | ${perCall(server, k).toFixed(1)} | ${((100 * (server.times.get(k) ?? 0)) / total(server)).toFixed(1)}% | ${perCall(floor, k).toFixed(1)} |`,
    );
  }
  console.log(
    `| **total (busy)** | **${(total(server) / server.calls).toFixed(1)}** | 100% | **${(total(floor) / floor.calls).toFixed(1)}** |`,
  );
  for (const r of top > 0 ? results : []) {
    console.log(`\n${r.name}: the ${top} costliest functions, self time\n`);
    console.log('| function | µs/call |');
    console.log('| --- | ---: |');
    const rows = [...r.self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
    for (const [k, v] of rows)
      console.log(`| ${k.replaceAll('|', '\\|')} | ${(v / Math.max(1, r.calls)).toFixed(2)} |`);
  }
  return 0;
}

runIfMain(import.meta.url, 'bench:profile', main);
