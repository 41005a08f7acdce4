/**
 * `npm run weights`: changes the stable/canary split on a running Envoy.
 *
 *   npm run weights -- --canary 25     # stable 75 / canary 25
 *   npm run weights -- --promote       # canary 100
 *   npm run weights -- --rollback      # canary 0
 *   npm run weights -- --status        # what Envoy serves now
 *
 * Exit codes: 0 applied (or already in force), 1 Envoy rejected the file or
 * did not answer, 2 bad arguments.
 */
import { resolve } from 'node:path';
import { parseArgs as parseNodeArgs } from 'node:util';
import { runIfMain, UsageError } from '../lib/cli.js';
import {
  ConfigMapError,
  type ConfigMapTarget,
  readRoutesConfigMap,
  switchWeightsInConfigMap,
} from '../lib/deploy/routes-configmap.js';
import { AdminError, EnvoyAdmin } from '../lib/envoy/admin.js';
import { LOCAL_BOOTSTRAP, TOTAL_WEIGHT, type Weights, weightsForCanary } from '../lib/envoy/config.js';
import { SwitchError, switchWeights } from '../lib/envoy/switch.js';
import { PROJECT_ROOT } from '../lib/paths.js';

export const USAGE = `Usage: npm run weights -- <action> [options]

Actions (exactly one):
  --canary <N>      send N% of users to the canary, an integer 0-${TOTAL_WEIGHT}; stable gets ${TOTAL_WEIGHT} - N
  --promote         canary ${TOTAL_WEIGHT}%, stable 0%
  --rollback        canary 0%, stable ${TOTAL_WEIGHT}%
  --status          print the weights Envoy serves now

Options:
  --admin <host:port>   Envoy admin (default ${LOCAL_BOOTSTRAP.admin.host}:${LOCAL_BOOTSTRAP.admin.port};
                        the Docker stack's read-only admin view is 127.0.0.1:9902)
  --routes <path>       the RDS file Envoy watches (default ${LOCAL_BOOTSTRAP.routesPath};
                        the Docker stack mounts envoy/routes/, so envoy/routes/routes.yaml)
  --timeout-ms <ms>     how long to wait for Envoy to accept the file (default 10000; 120000 with
                        --kube-configmap, for the kubelet to refresh the mounted ConfigMap)

Kubernetes (the Helm chart's routes ConfigMap, changed through the API server with kubectl):
  --kube-configmap <name>   the routes ConfigMap (<release>-inference-ab-routes); replaces --routes
  --namespace <ns>          its namespace (default "default")
  --kubeconfig <file>, --context <name>   which cluster (default: kubectl's own)
  With --admin (e.g. after \`kubectl port-forward deploy/<release>-inference-ab-envoy 9902\`), waits
  until that Envoy serves the new routes; without it, returns once the API server has them.
`;

/** Bad command-line input; exit code 2 with the usage text. */

export type Action = { readonly kind: 'set'; readonly weights: Weights } | { readonly kind: 'status' };

export interface WeightsArgs {
  readonly action: Action;
  readonly admin: string;
  readonly routesPath: string;
  readonly timeoutMs: number;
  /** Present with --kube-configmap: the routes live in this ConfigMap. */
  readonly kube?: ConfigMapTarget & { readonly waitForAdmin: boolean };
}

/** Parses and validates the arguments (after `--`); throws UsageError with one clear sentence. */
export function parseArgs(argv: readonly string[], cwd: string = process.cwd()): WeightsArgs {
  // `--canary -5` would otherwise read as a missing value followed by an unknown option.
  const i = argv.indexOf('--canary');
  const next = i >= 0 ? argv[i + 1] : undefined;
  if (next !== undefined && /^-\d/.test(next)) canaryPercent(next);
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const chosen = (['canary', 'promote', 'rollback', 'status'] as const).filter(
    (k) => values[k] !== undefined,
  );
  if (chosen.length !== 1) {
    throw new UsageError(
      chosen.length === 0
        ? 'choose one action: --canary <N>, --promote, --rollback or --status'
        : `choose only one action, got ${chosen.map((k) => `--${k}`).join(' and ')}`,
    );
  }
  let action: Action;
  if (values.status) action = { kind: 'status' };
  else if (values.promote) action = { kind: 'set', weights: weightsForCanary(TOTAL_WEIGHT) };
  else if (values.rollback) action = { kind: 'set', weights: weightsForCanary(0) };
  else action = { kind: 'set', weights: weightsForCanary(canaryPercent(values.canary as string)) };

  const kubeName = values['kube-configmap'];
  if (kubeName === undefined && (values.namespace ?? values.kubeconfig ?? values.context) !== undefined) {
    throw new UsageError('--namespace, --kubeconfig and --context go with --kube-configmap');
  }
  if (kubeName !== undefined && values.routes !== undefined) {
    throw new UsageError('choose --routes (a local file) or --kube-configmap, not both');
  }
  if (kubeName !== undefined && !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(kubeName)) {
    throw new UsageError(`--kube-configmap must be a Kubernetes object name, got "${kubeName}"`);
  }
  const timeoutRaw = values['timeout-ms'] ?? (kubeName !== undefined ? '120000' : '10000');
  const timeoutMs = Number(timeoutRaw);
  if (!/^\d+$/.test(timeoutRaw) || timeoutMs < 100 || timeoutMs > 600_000) {
    throw new UsageError(`--timeout-ms must be an integer from 100 to 600000, got "${timeoutRaw}"`);
  }
  const admin = values.admin ?? `${LOCAL_BOOTSTRAP.admin.host}:${LOCAL_BOOTSTRAP.admin.port}`;
  if (!/^(https?:\/\/)?[A-Za-z0-9.\-[\]:]+:\d{1,5}\/?$/.test(admin)) {
    throw new UsageError(`--admin must be host:port, got "${admin}"`);
  }
  if (values.routes === '') throw new UsageError('--routes must name a file');
  const routesPath = values.routes
    ? resolve(cwd, values.routes)
    : resolve(PROJECT_ROOT, LOCAL_BOOTSTRAP.routesPath);
  if (kubeName === undefined) return { action, admin, routesPath, timeoutMs };
  const kube = {
    name: kubeName,
    namespace: values.namespace ?? 'default',
    ...(values.kubeconfig ? { kubeconfig: resolve(cwd, values.kubeconfig) } : {}),
    ...(values.context ? { context: values.context } : {}),
    waitForAdmin: values.admin !== undefined,
  };
  return { action, admin, routesPath, timeoutMs, kube };
}

function parse(argv: readonly string[]) {
  return parseNodeArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
      canary: { type: 'string' },
      promote: { type: 'boolean' },
      rollback: { type: 'boolean' },
      status: { type: 'boolean' },
      admin: { type: 'string' },
      routes: { type: 'string' },
      'timeout-ms': { type: 'string' },
      'kube-configmap': { type: 'string' },
      namespace: { type: 'string' },
      kubeconfig: { type: 'string' },
      context: { type: 'string' },
    },
  });
}

function canaryPercent(raw: string): number {
  if (!/^\d{1,3}$/.test(raw.trim()) || Number(raw) > TOTAL_WEIGHT) {
    throw new UsageError(`--canary must be an integer from 0 to ${TOTAL_WEIGHT}, got "${raw}"`);
  }
  return Number(raw);
}

/** `stable 90% / canary 10%`. */
export function describeWeights(w: Weights | undefined): string {
  return w ? `stable ${w.stable}% / canary ${w.canary}%` : 'no weighted split found';
}

async function main(argv: readonly string[]): Promise<number> {
  let args: WeightsArgs;
  try {
    args = parseArgs(argv);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`weights: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    throw err;
  }
  const admin = new EnvoyAdmin(args.admin);
  const out = (s: string) => process.stdout.write(`${s}\n`);
  if (args.kube) return kubeMain(args, args.kube, admin, out);
  try {
    if (args.action.kind === 'status') {
      const live = await admin.liveRoutes();
      out(
        `Envoy ${admin.base}: ${describeWeights(live?.weights)} (routes version "${live?.version ?? '-'}")`,
      );
      return 0;
    }
    out(`Envoy admin ${admin.base}; routes file ${args.routesPath}`);
    const r = await switchWeights({
      admin,
      routesPath: args.routesPath,
      weights: args.action.weights,
      timeoutMs: args.timeoutMs,
    });
    out(`before: ${describeWeights(r.before.weights)}  (version "${r.before.version}")`);
    if (!r.changed) {
      out(`after:  ${describeWeights(r.after.weights)}  (already in force; nothing written)`);
    } else {
      out(
        `after:  ${describeWeights(r.after.weights)}  (version "${r.after.version}", accepted by Envoy in ${r.confirmMs} ms)`,
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof SwitchError || err instanceof AdminError) {
      process.stderr.write(`weights: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

/** The same actions on the routes ConfigMap (scripts/lib/deploy/routes-configmap.ts). */
async function kubeMain(
  args: WeightsArgs,
  kube: NonNullable<WeightsArgs['kube']>,
  admin: EnvoyAdmin,
  out: (s: string) => void,
): Promise<number> {
  const where = `configmap/${kube.name} in namespace ${kube.namespace}`;
  try {
    if (args.action.kind === 'status') {
      const r = await readRoutesConfigMap(kube);
      out(`${where}: ${describeWeights(r.weights)} (routes version "${r.version ?? '-'}")`);
      return 0;
    }
    const r = await switchWeightsInConfigMap({
      target: kube,
      weights: args.action.weights,
      admins: kube.waitForAdmin ? [admin] : [],
      timeoutMs: args.timeoutMs,
    });
    out(`${where}`);
    out(`before: ${describeWeights(r.before.weights)}  (version "${r.before.version ?? '-'}")`);
    if (!r.changed) out(`after:  ${describeWeights(r.before.weights)}  (already in force; nothing written)`);
    else if (r.confirmMs === undefined) {
      out(
        `after:  ${describeWeights(args.action.weights)}  (version "${r.version}" stored; Envoy not asked: no --admin)`,
      );
    } else {
      out(
        `after:  ${describeWeights(args.action.weights)}  (version "${r.version}", served by Envoy ${admin.base} after ${r.confirmMs} ms)`,
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof ConfigMapError || err instanceof AdminError) {
      process.stderr.write(`weights: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}

runIfMain(import.meta.url, 'weights', main);
