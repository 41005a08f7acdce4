/**
 * `npm run rollout` options: the usage text, the exit codes, and the one parser
 * of the command line into a typed, validated object. A bad option fails with
 * one sentence naming it (UsageError).
 */
import { resolve } from 'node:path';
import { DEV_PSEUDONYM_KEY } from '../../../server/config.js';
import { VERSION_PATTERN } from '../../../server/model-manifest.js';
import { parseCommandLine, parseDuration } from '../args.js';
import { UsageError } from '../cli.js';
import type { KubeRoutesTarget } from '../deploy/routes-configmap.js';
import { DEFAULT_WEIGHTS, LOCAL_BOOTSTRAP, TOTAL_WEIGHT } from '../envoy/config.js';
import { PROJECT_ROOT } from '../paths.js';
import { DEFAULT_THRESHOLDS, type Thresholds } from './analysis.js';
import type { BusinessMode, BusinessOptions } from './business.js';
import { statePathFor } from './state.js';

/** Exit codes, as the usage says. */
export const EXIT = {
  ok: 0,
  failed: 1,
  usage: 2,
  unreachable: 3,
  inconclusive: 4,
  locked: 5,
  interrupted: 130,
} as const;

const T = DEFAULT_THRESHOLDS;
export const USAGE = `Usage: npm run rollout -- <action> [options]

Actions:
  canary <version>   validate that the version is published and loads, set the canary weight to 0,
                     move the canary label to it, and wait until every canary server serves it
  start              step the canary weight (--steps) with an analysis after each --interval:
                     pass → next step; fail → canary weight 0 at once (rolled back);
                     inconclusive (too few calls) → hold the step and analyse again
  promote            the stable label takes the canary's version; once every stable server serves
                     it, traffic returns to the base split (--base-canary); needs a complete start
                     unless --force
  rollback           canary weight 0 at once; says what the canary still serves
  status             weights in force, labels, what each server serves, the rollout's step and its
                     last analysis
  analyze            one analysis of canary vs stable over --interval with the weights in force
                     (a gate for Argo Rollouts' web metric provider or a Flagger webhook)
  weights <N>        set the canary weight to N (0-${TOTAL_WEIGHT}); stable gets ${TOTAL_WEIGHT} - N

Options:
  --steps 10,25,50,100       canary weights of \`start\` (ascending, 1-${TOTAL_WEIGHT}; default 10,25,50,100)
  --interval 1m              time per analysis (default 1m; \`analyze\` too)
  --failure-threshold 2      consecutive failed analyses before the rollback (default 2)
  --max-holds 5              inconclusive analyses at one step before \`start\` stops, holding it (default 5)
  --max-error-rate 0.01      the canary's server-side error rate limit (default ${T.maxErrorRate})
  --max-error-rate-increase  …and its limit above stable's (default ${T.maxErrorRateIncrease})
  --max-p99-ms 100           the canary's p99 limit, server side (default ${T.maxP99Ms}, the notes' RT target)
  --max-p99-ratio 1.5        …and its limit as a multiple of stable's (default ${T.maxP99Ratio}),
  --min-p99-increase-ms 2    …judged only when also this far above it (default ${T.minP99IncreaseMs})
  --min-calls 200            calls per arm per analysis below which it is inconclusive (default ${T.minCalls})
  --base-canary 10           the canary weight \`promote\` returns to (default ${DEFAULT_WEIGHTS.canary})
  --force                    \`promote\` without a complete \`start\`
  --business guard           the experiment readout as a check (default guard): guard fails a step
                             on a stable winner or a sample-ratio mismatch; require also makes
                             \`promote\` need a canary winner or no difference; off skips it
  --logs DIR                 the servers' logs the readout reads (default logs/)
  --experiment-share 0.5     the canary's EXPERIMENT_SHARE, for the readout (default 0.5)
  --model conversion         the model (default conversion)
  --models DIR               the model repository the servers read (default models/)
  --admin HOST:PORT          Envoy admin (default ${LOCAL_BOOTSTRAP.admin.host}:${LOCAL_BOOTSTRAP.admin.port})
  --routes FILE              the RDS file Envoy watches (default ${LOCAL_BOOTSTRAP.routesPath})
  --state FILE               the rollout state (default: rollout.json beside the routes directory)
  --stable-metrics H:P,...   the stable servers' /metrics (default 127.0.0.1:9464)
  --canary-metrics H:P,...   the canary servers' /metrics (default 127.0.0.1:9465)
  --serve-timeout 60s        how long servers may take to serve a label change (default 60s)
  --timeout-ms 10000         how long Envoy may take to load a routes file (default 10000;
                             120000 with --kube-configmap, for the kubelet's ConfigMap refresh)
  --kube-configmap NAME      weights only: change the Helm chart's routes ConfigMap through the
                             Kubernetes API (kubectl) instead of --routes; with --admin, wait until
                             that Envoy serves it. --namespace NS (default "default"),
                             --kubeconfig FILE, --context NAME pick the cluster
  --json                     \`status\` and \`analyze\`: machine-readable output on stdout

Exit codes: 0 done (analyze: pass), 1 failed or rolled back (analyze: fail), 2 usage,
3 Envoy or the servers unreachable, 4 inconclusive (held), 5 another rollout holds the lock,
130 interrupted (the state says where it stopped; \`start\` resumes)
`;

type Action = 'canary' | 'start' | 'promote' | 'rollback' | 'status' | 'analyze' | 'weights';
const ACTIONS: readonly Action[] = ['canary', 'start', 'promote', 'rollback', 'status', 'analyze', 'weights'];

export interface RolloutArgs {
  readonly action: Action;
  /** `canary`'s version, `weights`' N. */
  readonly operand: string | undefined;
  readonly json: boolean;
  readonly force: boolean;
  readonly steps: readonly number[];
  readonly intervalMs: number;
  readonly failureThreshold: number;
  readonly maxHolds: number;
  readonly thresholds: Thresholds;
  readonly baseCanary: number;
  readonly model: string;
  readonly modelsDir: string;
  readonly admin: string;
  readonly routesPath: string;
  readonly statePath: string;
  readonly stableMetrics: readonly string[];
  readonly canaryMetrics: readonly string[];
  readonly serveTimeoutMs: number;
  readonly switchTimeoutMs: number;
  /** `weights --kube-configmap`: the routes live in this ConfigMap (scripts/lib/deploy/routes-configmap.ts). */
  readonly kube?: KubeRoutesTarget;
  /** The business metric check of `start` and `promote`. */
  readonly business: BusinessOptions;
}

function num(
  raw: string | undefined,
  option: string,
  dflt: number,
  min: number,
  max: number,
  int = false,
): number {
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n < min || n > max || (int && !Number.isInteger(n))) {
    throw new UsageError(
      `${option} must be ${int ? 'an integer' : 'a number'} from ${min} to ${max}, got "${raw}"`,
    );
  }
  return n;
}

function endpoints(raw: string | undefined, option: string, dflt: string): string[] {
  const list = (raw ?? dflt).split(',').map((s) => s.trim());
  for (const e of list) {
    if (!/^[A-Za-z0-9.\-[\]:]+:\d{1,5}$/.test(e) && !/^https?:\/\//.test(e)) {
      throw new UsageError(`${option} must be comma-separated host:port, got "${e}"`);
    }
  }
  return list;
}

function businessMode(raw: string | undefined): BusinessMode {
  const v = raw ?? 'guard';
  if (v !== 'off' && v !== 'guard' && v !== 'require') {
    throw new UsageError(`--business must be off, guard or require, got "${v}"`);
  }
  return v;
}

/** Parses the command line (after `--`); throws UsageError with one sentence. */
export function parseRolloutArgs(argv: readonly string[], cwd: string = process.cwd()): RolloutArgs {
  const parsed = parseCommandLine(
    argv,
    {
      json: { type: 'boolean' },
      force: { type: 'boolean' },
      steps: { type: 'string' },
      interval: { type: 'string' },
      'failure-threshold': { type: 'string' },
      'max-holds': { type: 'string' },
      'max-error-rate': { type: 'string' },
      'max-error-rate-increase': { type: 'string' },
      'max-p99-ms': { type: 'string' },
      'max-p99-ratio': { type: 'string' },
      'min-p99-increase-ms': { type: 'string' },
      'min-calls': { type: 'string' },
      'base-canary': { type: 'string' },
      model: { type: 'string' },
      models: { type: 'string' },
      admin: { type: 'string' },
      routes: { type: 'string' },
      state: { type: 'string' },
      'stable-metrics': { type: 'string' },
      'canary-metrics': { type: 'string' },
      'serve-timeout': { type: 'string' },
      'timeout-ms': { type: 'string' },
      business: { type: 'string' },
      logs: { type: 'string' },
      'experiment-share': { type: 'string' },
      // `npm run weights -- --canary N`: the weights action's own flag.
      canary: { type: 'string' },
      'kube-configmap': { type: 'string' },
      namespace: { type: 'string' },
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
    },
    true,
  );
  const v = parsed.values as Record<string, string | boolean | undefined>;
  const s = (k: string) => v[k] as string | undefined;
  const [first, operand, extra] = parsed.positionals;
  if (!first) throw new UsageError(`name an action: ${ACTIONS.join(', ')}`);
  if (!(ACTIONS as readonly string[]).includes(first)) {
    throw new UsageError(`unknown action "${first}"; actions: ${ACTIONS.join(', ')}`);
  }
  const action = first as Action;
  if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`);
  let op: string | undefined = operand;
  if (action === 'weights' && s('canary') !== undefined) {
    if (op !== undefined)
      throw new UsageError('give the canary weight once: `weights N` or `weights --canary N`');
    op = s('canary');
  } else if (s('canary') !== undefined) {
    throw new UsageError('--canary goes with the weights action');
  }
  if (action === 'canary' && (op === undefined || !VERSION_PATTERN.test(op))) {
    throw new UsageError('canary needs the version to try, like 20261201T084232Z');
  }
  if (action === 'weights') num(op ?? '', 'weights', 0, 0, TOTAL_WEIGHT, true);
  if (!['canary', 'weights'].includes(action) && op !== undefined) {
    throw new UsageError(`unexpected argument "${op}"`);
  }
  const steps = (s('steps') ?? '10,25,50,100')
    .split(',')
    .map((x) => num(x, '--steps', 0, 1, TOTAL_WEIGHT, true));
  if (steps.some((x, i) => i > 0 && x <= (steps[i - 1] as number)))
    throw new UsageError('--steps must be ascending');
  const intervalMs = parseDuration(s('interval') ?? '1m', '--interval');
  if (intervalMs < 100) throw new UsageError('--interval must be at least 100ms');
  const serveTimeoutMs = parseDuration(s('serve-timeout') ?? '60s', '--serve-timeout');
  const routesPath = s('routes')
    ? resolve(cwd, s('routes') as string)
    : resolve(PROJECT_ROOT, LOCAL_BOOTSTRAP.routesPath);
  const admin = s('admin') ?? `${LOCAL_BOOTSTRAP.admin.host}:${LOCAL_BOOTSTRAP.admin.port}`;
  if (!/^(https?:\/\/)?[A-Za-z0-9.\-[\]:]+:\d{1,5}\/?$/.test(admin))
    throw new UsageError(`--admin must be host:port, got "${admin}"`);
  const kube = kubeTarget(action, s, cwd);
  const model = s('model') ?? 'conversion';
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(model))
    throw new UsageError(`--model must be a model name, got "${model}"`);
  return {
    action,
    operand: op,
    json: v.json === true,
    force: v.force === true,
    steps,
    intervalMs,
    failureThreshold: num(s('failure-threshold'), '--failure-threshold', 2, 1, 100, true),
    maxHolds: num(s('max-holds'), '--max-holds', 5, 1, 1000, true),
    thresholds: {
      maxErrorRate: num(s('max-error-rate'), '--max-error-rate', T.maxErrorRate, 0, 1),
      maxErrorRateIncrease: num(
        s('max-error-rate-increase'),
        '--max-error-rate-increase',
        T.maxErrorRateIncrease,
        0,
        1,
      ),
      maxP99Ms: num(s('max-p99-ms'), '--max-p99-ms', T.maxP99Ms, 0, 600_000),
      maxP99Ratio: num(s('max-p99-ratio'), '--max-p99-ratio', T.maxP99Ratio, 1, 1000),
      minP99IncreaseMs: num(
        s('min-p99-increase-ms'),
        '--min-p99-increase-ms',
        T.minP99IncreaseMs,
        0,
        600_000,
      ),
      minCalls: num(s('min-calls'), '--min-calls', T.minCalls, 1, 1e9, true),
    },
    baseCanary: num(s('base-canary'), '--base-canary', DEFAULT_WEIGHTS.canary, 0, TOTAL_WEIGHT, true),
    model,
    modelsDir: resolve(cwd, s('models') ?? resolve(PROJECT_ROOT, 'models')),
    admin,
    routesPath,
    statePath: s('state') ? resolve(cwd, s('state') as string) : statePathFor(routesPath),
    stableMetrics: endpoints(s('stable-metrics'), '--stable-metrics', '127.0.0.1:9464'),
    canaryMetrics: endpoints(s('canary-metrics'), '--canary-metrics', '127.0.0.1:9465'),
    serveTimeoutMs,
    switchTimeoutMs: num(s('timeout-ms'), '--timeout-ms', kube ? 120_000 : 10_000, 100, 600_000, true),
    business: {
      mode: businessMode(s('business')),
      logs: [resolve(cwd, s('logs') ?? resolve(PROJECT_ROOT, 'logs'))],
      experimentShare: num(s('experiment-share'), '--experiment-share', 0.5, 0, 1),
      pseudonymKey: process.env.LOG_PSEUDONYM_KEY || DEV_PSEUDONYM_KEY,
    },
    ...(kube ? { kube } : {}),
  };
}

/** `--kube-configmap` and its companions, checked; undefined without it. */
function kubeTarget(
  action: Action,
  s: (k: string) => string | undefined,
  cwd: string,
): KubeRoutesTarget | undefined {
  const name = s('kube-configmap');
  if (name === undefined) {
    if ((s('namespace') ?? s('kubeconfig') ?? s('context')) !== undefined)
      throw new UsageError('--namespace, --kubeconfig and --context go with --kube-configmap');
    return undefined;
  }
  if (action !== 'weights') throw new UsageError('--kube-configmap goes with the weights action');
  if (s('routes') !== undefined)
    throw new UsageError('choose --routes (a local file) or --kube-configmap, not both');
  if (!/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(name))
    throw new UsageError(`--kube-configmap must be a Kubernetes object name, got "${name}"`);
  const kubeconfig = s('kubeconfig');
  const context = s('context');
  return {
    name,
    namespace: s('namespace') ?? 'default',
    ...(kubeconfig ? { kubeconfig: resolve(cwd, kubeconfig) } : {}),
    ...(context ? { context } : {}),
    waitForAdmin: s('admin') !== undefined,
  };
}
