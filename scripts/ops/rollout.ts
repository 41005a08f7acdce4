/**
 * `npm run rollout`: carries a new model version from publish to canary to
 * stable on a running stack, in steps gated by live analysis, with automatic
 * rollback. `npm run weights` is its `weights` action. Options and exit codes:
 * `npm run rollout -- --help`. The work is in scripts/lib/rollout/.
 */
import { runIfMain, UsageError } from '../lib/cli.js';
import { runConfigMapWeights } from '../lib/deploy/routes-configmap.js';
import { AdminError, EnvoyAdmin } from '../lib/envoy/admin.js';
import { weightsForCanary } from '../lib/envoy/config.js';
import { SwitchError } from '../lib/envoy/switch.js';
import {
  analyseOnce,
  canary,
  HeldError,
  printAnalysis,
  printStatus,
  promote,
  type RolloutContext,
  RolloutError,
  rollback,
  setCanaryWeight,
  start,
  status,
} from '../lib/rollout/actions.js';
import { EXIT, parseRolloutArgs, type RolloutArgs, USAGE } from '../lib/rollout/options.js';
import { acquireLock, LockedError, readState, saveState } from '../lib/rollout/state.js';

async function main(argv: readonly string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return EXIT.ok;
  }
  let args: RolloutArgs;
  try {
    args = parseRolloutArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      // `npm run weights` is `rollout weights`: name the command the operator typed.
      const name = argv[0] === 'weights' ? 'weights' : 'rollout';
      process.stderr.write(`${name}: ${err.message}\nSee: npm run rollout -- --help\n`);
      return EXIT.usage;
    }
    throw err;
  }
  // With --json, stdout holds the JSON alone; progress goes to stderr.
  const out = (line: string) => (args.json ? process.stderr : process.stdout).write(`${line}\n`);
  const controller = new AbortController();
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals) => {
    if (interrupted) process.exit(EXIT.interrupted);
    interrupted = true;
    out(`\n${sig}: stopping after the current action; the state file says where (again to quit at once)`);
    controller.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const ctx: RolloutContext = {
    admin: new EnvoyAdmin(args.admin),
    routesPath: args.routesPath,
    statePath: args.statePath,
    modelsDir: args.modelsDir,
    model: args.model,
    metrics: { stable: args.stableMetrics, canary: args.canaryMetrics },
    thresholds: args.thresholds,
    serveTimeoutMs: args.serveTimeoutMs,
    switchTimeoutMs: args.switchTimeoutMs,
    business: args.business,
    baseCanary: args.baseCanary,
    out,
    signal: controller.signal,
  };

  // Kubernetes: the routes ConfigMap changes through the API server, whose
  // resourceVersion check stands in for the local lock file.
  if (args.kube) {
    const weights = weightsForCanary(Number(args.operand));
    return runConfigMapWeights(args.kube, weights, ctx.admin, args.switchTimeoutMs, out);
  }

  // Read-only actions need no lock; the others change the stack, one at a time.
  const changes = !['status', 'analyze'].includes(args.action);
  let release: (() => Promise<void>) | undefined;
  try {
    if (changes) {
      const lock = await acquireLock(`${args.statePath}.lock`, `rollout ${argv.join(' ')}`);
      release = lock.release;
      if (lock.warning) out(`warning: ${lock.warning}`);
    }
    switch (args.action) {
      case 'status': {
        const st = await status(ctx);
        if (args.json) process.stdout.write(`${JSON.stringify(st, null, 2)}\n`);
        else printStatus(ctx, st);
        return EXIT.ok;
      }
      case 'analyze': {
        const a = await analyseOnce(ctx, args.intervalMs);
        if (args.json) process.stdout.write(`${JSON.stringify(a, null, 2)}\n`);
        else printAnalysis(ctx, a);
        return a.verdict === 'pass' ? EXIT.ok : a.verdict === 'fail' ? EXIT.failed : EXIT.inconclusive;
      }
      case 'weights':
        await setCanaryWeight(ctx, Number(args.operand));
        return EXIT.ok;
      case 'canary':
        await canary(ctx, args.operand as string);
        out(
          `next: npm run rollout -- start --steps ${args.steps.join(',')} --interval ${args.intervalMs / 1000}s`,
        );
        return EXIT.ok;
      case 'start':
        await start(ctx, {
          steps: args.steps,
          intervalMs: args.intervalMs,
          failureThreshold: args.failureThreshold,
          maxHolds: args.maxHolds,
        });
        return EXIT.ok;
      case 'promote':
        await promote(ctx, args.force);
        return EXIT.ok;
      case 'rollback':
        await rollback(ctx, 'rollback by the operator');
        return EXIT.ok;
    }
  } catch (err) {
    if (controller.signal.aborted) {
      // Ctrl-C mid-action: the weights and labels are whatever the last confirmed step left.
      const s = await readState(ctx.statePath).catch(() => undefined);
      if (s && s.phase === 'progressing')
        await saveState(ctx.statePath, { ...s, phase: 'paused' }, 'paused', 'interrupted');
      const after = await status(ctx).catch(() => undefined);
      if (after) printStatus(ctx, after);
      return EXIT.interrupted;
    }
    if (err instanceof LockedError) {
      process.stderr.write(`rollout: ${err.message}\n`);
      return EXIT.locked;
    }
    if (err instanceof HeldError) {
      process.stderr.write(`rollout: ${err.message}\n`);
      return EXIT.inconclusive;
    }
    if (err instanceof AdminError) {
      process.stderr.write(`rollout: ${err.message}; is the stack running?\n`);
      return EXIT.unreachable;
    }
    if (err instanceof RolloutError || err instanceof SwitchError) {
      process.stderr.write(`rollout: ${err.message}\n`);
      return EXIT.failed;
    }
    throw err;
  } finally {
    await release?.();
  }
  return EXIT.ok;
}

runIfMain(import.meta.url, 'rollout', main);
