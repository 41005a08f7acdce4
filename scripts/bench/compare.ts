/**
 * `npm run bench:compare`: what one change to the server buys, measured the
 * way the machine allows: two or more servers run side by side (another
 * commit's build, or this build with other settings), ghz drives each in turn
 * for several interleaved rounds, and the report gives each one's throughput
 * and server CPU per call (all threads, then the main thread and the rest,
 * from /proc) with its ratio to the first. A shared machine's changing load
 * falls on all of them alike; a figure compared across two runs would not be.
 *
 *     npm run bench:compare -- --base HEAD~1
 *     npm run bench:compare -- --variant warn:LOG_LEVEL=warn --floor
 *
 * Options: `npm run bench:compare -- --help`.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { durationOption, intOption, parseCommandLine } from '../lib/args.js';
import { startFloor } from '../lib/bench/baselines.js';
import { benchRepository, Processes, startBenchServer } from '../lib/bench/processes.js';
import { grpcTarget, interleaved, type PhaseContext, warmUp } from '../lib/bench/targets.js';
import { optionsOrExit, runIfMain, UsageError, usageFailure } from '../lib/cli.js';
import { MODELS_DIR, PROJECT_ROOT } from '../lib/paths.js';
import { newestVersion } from '../lib/versions.js';

const USAGE = `Usage: npm run bench:compare -- (--base REV | --variant SPEC)... [options]

Throughput and server CPU per call of this server against another build or
other settings of it, in one run: the servers run side by side and ghz
(c=50) drives each in turn, in interleaved rounds (the order rotating from
round to round, as in npm run bench). The first row is this tree's server as
built; every ratio is to it.

  --base REV          also run the server of git revision REV (checked out in a
                      temporary worktree, built there, removed afterwards)
  --variant SPEC      also run this tree's server with other settings;
                      SPEC is NAME:VAR=VALUE[,VAR=VALUE…], e.g.
                      warn:LOG_LEVEL=warn (repeatable)
  --floor             also run the floor (bare grpc-js, constant answer)
  --rounds N          interleaved rounds (default 8)
  --duration D        each server's share of a round (default 4s)
  --warmup D          unmeasured load on each server first (default 2s)
  --concurrency C     ghz workers (default 50)
  -h, --help          this text`;

export interface Variant {
  readonly name: string;
  readonly env: Readonly<Record<string, string>>;
}

/** `NAME:VAR=VALUE,VAR=VALUE` → a named set of server variables. */
export function parseVariant(spec: string): Variant {
  const m = /^([\w.-]{1,40}):(.+)$/.exec(spec);
  if (!m) throw new UsageError(`--variant must be NAME:VAR=VALUE[,VAR=VALUE…], got "${spec}".`);
  const env: Record<string, string> = {};
  for (const pair of (m[2] as string).split(',')) {
    const kv = /^([A-Z][A-Z0-9_]*)=(.*)$/.exec(pair);
    if (!kv) throw new UsageError(`--variant ${m[1]}: "${pair}" is not VAR=VALUE.`);
    env[kv[1] as string] = kv[2] as string;
  }
  return { name: m[1] as string, env };
}

function parse(argv: readonly string[]) {
  const { values } = parseCommandLine(argv, {
    base: { type: 'string' },
    variant: { type: 'string', multiple: true },
    floor: { type: 'boolean' },
    rounds: { type: 'string' },
    duration: { type: 'string' },
    warmup: { type: 'string' },
    concurrency: { type: 'string' },
  });
  const help = values.help === true;
  const variants = (values.variant ?? []).map(parseVariant);
  const names = new Set(['this tree', ...variants.map((v) => v.name)]);
  if (names.size !== variants.length + 1)
    throw new UsageError('--variant names must differ from each other.');
  if (!help && values.base === undefined && variants.length === 0 && values.floor !== true) {
    throw new UsageError('give something to compare with: --base REV, --variant SPEC or --floor.');
  }
  return {
    base: values.base,
    variants,
    floor: values.floor === true,
    rounds: intOption(values.rounds, '--rounds', 1, 100) ?? 8,
    durationMs: durationOption(values.duration, '--duration', 500, 600_000) ?? 4000,
    warmupMs: durationOption(values.warmup, '--warmup', 0, 600_000) ?? 2000,
    concurrency: intOption(values.concurrency, '--concurrency', 1, 2000) ?? 50,
    help,
  };
}

/** One compared server. */
interface Row {
  readonly name: string;
  readonly host: string;
  readonly pid: number;
}

/** The key of each server's CPU time in its measurements. */
const SERVER = 'server';

/** A temporary git worktree of `rev`, built, sharing this tree's node_modules; removed by the returned function. */
function buildRevision(rev: string, progress: (line: string) => void): { root: string; remove: () => void } {
  const root = mkdtempSync(join(tmpdir(), 'bench-compare-'));
  const git = (args: string[]) => spawnSync('git', args, { cwd: PROJECT_ROOT, encoding: 'utf8' });
  const remove = () => {
    git(['worktree', 'remove', '--force', root]);
    rmSync(root, { recursive: true, force: true });
  };
  const added = git(['worktree', 'add', '--detach', '--force', root, rev]);
  if (added.status !== 0) {
    rmSync(root, { recursive: true, force: true });
    throw new Error(`--base ${rev}: git worktree add failed: ${added.stderr.trim().split('\n').pop()}`);
  }
  try {
    symlinkSync(join(PROJECT_ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
    progress(`building ${rev} in ${root}…`);
    const built = spawnSync(process.execPath, [join(root, 'scripts', 'dev', 'build.mjs')], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    if (built.status !== 0 || !existsSync(join(root, 'dist', 'server', 'main.js'))) {
      throw new Error(`--base ${rev}: its build failed (exit ${built.status})`);
    }
    return { root, remove };
  } catch (err) {
    remove();
    throw err;
  }
}

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'bench:compare', usage: USAGE, parse }, argv);
  if (typeof opts === 'number') return opts;
  if (opts.base !== undefined) {
    const known = spawnSync('git', ['rev-parse', '--verify', '--quiet', `${opts.base}^{commit}`], {
      cwd: PROJECT_ROOT,
    });
    if (known.status !== 0)
      return usageFailure('bench:compare', `--base ${opts.base} is not a commit git knows here.`);
  }
  const progress = (line: string) => process.stderr.write(`${line}\n`);
  const workDir = mkdtempSync(join(tmpdir(), 'bench-compare-work-'));
  const procs = new Processes();
  const interrupt = new AbortController();
  let base: ReturnType<typeof buildRevision> | undefined;
  const cleanUp = async () => {
    await procs.stopAll();
    base?.remove();
    base = undefined;
    rmSync(workDir, { recursive: true, force: true });
  };
  // Ctrl-C: the running ghz and the servers stop, the worktree and the work files go, then exit 130.
  const onSignal = () => {
    interrupt.abort();
    void cleanUp().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  try {
    if (opts.base !== undefined) base = buildRevision(opts.base, progress);
    const version = newestVersion(join(MODELS_DIR, 'conversion'));
    const env = {
      MODEL_ROOT: benchRepository(workDir, [version]),
      MODEL_VERSION_POLICY: `conversion=${version}`,
    };
    const rows: Row[] = [];
    const server = async (name: string, extra: Readonly<Record<string, string>>, mainScript?: string) => {
      const s = await startBenchServer(procs, {
        name: name.replace(/\W+/g, '-'),
        workDir,
        env: { ...env, ...extra },
        ...(mainScript !== undefined ? { main: mainScript } : {}),
      });
      rows.push({ name, host: s.host, pid: s.pid });
    };
    await server('this tree', {});
    if (base) await server(`${opts.base}`, {}, join(base.root, 'dist', 'server', 'main.js'));
    for (const v of opts.variants) await server(v.name, v.env);
    if (opts.floor) {
      const f = await startFloor(procs, workDir);
      rows.push({ name: 'floor (bare grpc-js)', host: `127.0.0.1:${f.port}`, pid: f.pid });
    }
    // The bench's own rounds: each server in turn, the order rotating from round to round.
    const ctx: PhaseContext = {
      opts: {
        rounds: opts.rounds,
        durationMs: opts.durationMs * opts.rounds,
        warmupMs: opts.warmupMs,
        concurrency: opts.concurrency,
      },
      workDir,
      progress,
      signal: interrupt.signal,
    };
    const targets = rows.map((r) =>
      grpcTarget(ctx, r.name, r.host, [{ name: SERVER, pid: r.pid, threads: true }]),
    );
    const loadBefore = loadavg()[0] as number;
    await warmUp(ctx, targets);
    const results = await interleaved(ctx, targets);
    const loadAfter = loadavg()[0] as number;
    const measured = rows.map((r) => {
      const m = results.get(r.name);
      if (!m) throw new Error(`${r.name} was not measured`);
      if (m.errorCount > 0)
        throw new Error(`${r.name}: ${m.errorCount} calls failed (${m.errors.join(', ')})`);
      const total = m.cpuMs?.[SERVER];
      const main = m.mainThreadMs?.[SERVER];
      if (total === undefined || main === undefined) throw new Error(`${r.name} exited during the run`);
      const per = (ms: number) => (ms * 1000) / Math.max(1, m.okCount);
      return { name: r.name, m, perCall: per(total), main: per(main), other: per(total - main) };
    });
    console.log(
      `bench:compare, ${new Date().toISOString()}, ${opts.rounds} rounds × ${opts.durationMs / 1000} s per server, ` +
        `ghz c=${opts.concurrency}, conversion@${version}, load average ${loadBefore.toFixed(2)} → ${loadAfter.toFixed(2)}\n`,
    );
    console.log(
      '| server | ok/s | CPU µs/call | main thread | other threads | CPU ÷ first | ok/s per round |',
    );
    console.log('| --- | ---: | ---: | ---: | ---: | ---: | --- |');
    const first = measured[0] as (typeof measured)[number];
    for (const r of measured) {
      console.log(
        `| ${r.name} | ${r.m.okRps.toFixed(0)} | ${r.perCall.toFixed(1)} | ${r.main.toFixed(1)} | ` +
          `${r.other.toFixed(1)} | ${(r.perCall / first.perCall).toFixed(3)} | ` +
          `${(r.m.rounds ?? []).map((x) => x.toFixed(0)).join(' / ')} |`,
      );
    }
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    await cleanUp();
  }
}

runIfMain(import.meta.url, 'bench:compare', main);
