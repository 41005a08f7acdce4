/**
 * The A/B routes in a Kubernetes ConfigMap (the Helm chart's `<release>-routes`)
 * instead of a local file: write them through the API server with kubectl, then
 * wait until Envoy serves them. Kubernetes projects the ConfigMap into Envoy's
 * pod by renaming a `..data` symlink, which Envoy's `watched_directory` sees;
 * the kubelet does so within its sync period plus its cache TTL (about a minute
 * by default), so waiting for Envoy takes longer than with a local file.
 *
 * `switchWeightsInConfigMap` is the one call a command needs (`npm run weights
 * -- --kube-configmap`, and a rollout that steps through weights).
 */
import { existsSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EnvoyAdmin } from '../envoy/admin.js';
import { routesVersion, type Weights } from '../envoy/config.js';
import { routesText } from '../envoy/files.js';
import { ExecError, execOk } from './exec.js';
import { tool } from './paths.js';

/** The key of the routes file in the ConfigMap (Envoy reads /etc/envoy/routes/<key>). */
export const ROUTES_KEY = 'routes.yaml';

export interface ConfigMapTarget {
  readonly name: string;
  readonly namespace: string;
  readonly kubeconfig?: string;
  readonly context?: string;
  /** kubectl to run; default .tools/bin/kubectl, else kubectl on PATH. */
  readonly kubectl?: string;
}

/** A routes ConfigMap as a command names it; with `waitForAdmin`, wait for the Envoy at --admin. */
export type KubeRoutesTarget = ConfigMapTarget & { readonly waitForAdmin: boolean };

/** The routes a ConfigMap holds, as far as this project's routes file says. */
export interface ConfigMapRoutes {
  readonly text: string;
  readonly version: string | undefined;
  readonly weights: Weights | undefined;
  readonly resourceVersion: string;
}

/** The ConfigMap is missing, is not a routes ConfigMap, or the API refused the change. */
export class ConfigMapError extends Error {
  override name = 'ConfigMapError';
}

function kubectlArgs(t: ConfigMapTarget, rest: readonly string[]): string[] {
  return [
    ...(t.kubeconfig ? ['--kubeconfig', t.kubeconfig] : []),
    ...(t.context ? ['--context', t.context] : []),
    '--namespace',
    t.namespace,
    ...rest,
  ];
}

function kubectlBinary(t: ConfigMapTarget): string {
  return t.kubectl ?? (existsSync(tool('kubectl')) ? tool('kubectl') : 'kubectl');
}

async function kubectl(t: ConfigMapTarget, args: readonly string[], input?: string): Promise<string> {
  try {
    return await execOk(kubectlBinary(t), kubectlArgs(t, args), { input, timeoutMs: 60_000 });
  } catch (err) {
    if (err instanceof ExecError) {
      throw new ConfigMapError(
        `kubectl ${args[0]} configmap/${t.name} in ${t.namespace}: ${err.result.stderr.trim()}`,
      );
    }
    throw err;
  }
}

/** Weights and version read back from a routes file this project rendered (scripts/envoy/files.ts). */
export function parseRoutesText(text: string): { version: string | undefined; weights: Weights | undefined } {
  const version = /^version_info: "([^"]*)"/m.exec(text)?.[1];
  const weight = (cluster: string) => new RegExp(`- name: "${cluster}"\\n\\s+weight: (\\d+)`).exec(text)?.[1];
  const stable = weight('stable');
  const canary = weight('canary_with_fallback');
  return {
    version,
    weights:
      stable !== undefined && canary !== undefined
        ? { stable: Number(stable), canary: Number(canary) }
        : undefined,
  };
}

interface ConfigMapObject {
  metadata: { resourceVersion?: string; annotations?: Record<string, string> };
  data?: Record<string, string>;
}

async function getConfigMap(t: ConfigMapTarget): Promise<ConfigMapObject> {
  return JSON.parse(await kubectl(t, ['get', 'configmap', t.name, '-o', 'json'])) as ConfigMapObject;
}

export async function readRoutesConfigMap(t: ConfigMapTarget): Promise<ConfigMapRoutes> {
  const cm = await getConfigMap(t);
  const text = cm.data?.[ROUTES_KEY];
  if (text === undefined)
    throw new ConfigMapError(`configmap/${t.name} in ${t.namespace} has no ${ROUTES_KEY}`);
  return { text, ...parseRoutesText(text), resourceVersion: cm.metadata.resourceVersion ?? '' };
}

/**
 * Replaces the routes in the ConfigMap, keeping everything else. The object is
 * sent with the resourceVersion that was read, so a concurrent change fails
 * (409 Conflict) instead of being overwritten.
 */
export async function writeRoutesConfigMap(t: ConfigMapTarget, text: string): Promise<string> {
  const cm = await getConfigMap(t);
  const next = { ...cm, data: { ...(cm.data ?? {}), [ROUTES_KEY]: text } };
  const out = JSON.parse(
    await kubectl(t, ['replace', '-o', 'json', '-f', '-'], JSON.stringify(next)),
  ) as ConfigMapObject;
  return out.metadata.resourceVersion ?? '';
}

export interface ConfigMapSwitchOptions {
  readonly target: ConfigMapTarget;
  readonly weights: Weights;
  /** Envoy admins to wait for (every replica that should serve the routes); none: do not wait. */
  readonly admins?: readonly EnvoyAdmin[];
  /** How long to wait for every Envoy to serve the new version (default 120 s: the kubelet's sync). */
  readonly timeoutMs?: number;
  readonly now?: () => Date;
}

export interface ConfigMapSwitchResult {
  readonly before: ConfigMapRoutes;
  readonly version: string;
  readonly changed: boolean;
  readonly resourceVersion: string;
  /** From the API write to the last Envoy serving the version; undefined when not waited for. */
  readonly confirmMs: number | undefined;
}

/**
 * Writes `weights` into the routes ConfigMap and waits until each admin's Envoy
 * serves that version. If an Envoy rejects it (update_rejected or
 * update_failure moves), the previous routes are written back and a
 * ConfigMapError says so.
 */
export async function switchWeightsInConfigMap(o: ConfigMapSwitchOptions): Promise<ConfigMapSwitchResult> {
  const before = await readRoutesConfigMap(o.target);
  if (before.weights?.stable === o.weights.stable && before.weights?.canary === o.weights.canary) {
    return {
      before,
      version: before.version ?? '',
      changed: false,
      resourceVersion: before.resourceVersion,
      confirmMs: 0,
    };
  }
  const admins = o.admins ?? [];
  const counters = await Promise.all(admins.map((a) => a.rds()));
  const version = routesVersion(o.weights, (o.now ?? (() => new Date()))());
  const resourceVersion = await writeRoutesConfigMap(o.target, routesText(o.weights, version));
  if (admins.length === 0) return { before, version, changed: true, resourceVersion, confirmMs: undefined };

  const t0 = Date.now();
  const timeoutMs = o.timeoutMs ?? 120_000;
  const pending = new Set(admins.keys());
  while (Date.now() - t0 < timeoutMs) {
    await sleep(100);
    for (const i of [...pending]) {
      const admin = admins[i] as EnvoyAdmin;
      try {
        const live = await admin.liveRoutes();
        if (live?.version === version) {
          pending.delete(i);
          continue;
        }
        const now = await admin.rds();
        const was = counters[i];
        if (was && (now.updateRejected > was.updateRejected || now.updateFailure > was.updateFailure)) {
          await writeRoutesConfigMap(o.target, before.text);
          throw new ConfigMapError(
            `Envoy at ${admin.base} rejected routes version "${version}"; the previous routes were written back to configmap/${o.target.name}. Envoy's log has the reason.`,
          );
        }
      } catch (err) {
        if (err instanceof ConfigMapError) throw err;
        // a slow admin answer: keep polling until the deadline
      }
    }
    if (pending.size === 0)
      return { before, version, changed: true, resourceVersion, confirmMs: Date.now() - t0 };
  }
  const late = [...pending].map((i) => admins[i]?.base).join(', ');
  throw new ConfigMapError(
    `configmap/${o.target.name} holds version "${version}", but ${late} did not serve it within ${timeoutMs} ms ` +
      '(the kubelet refreshes mounted ConfigMaps within its sync period; check that Envoy mounts the ConfigMap as a directory, not with subPath).',
  );
}

/**
 * `npm run weights -- N --kube-configmap NAME …`: the whole command for a
 * ConfigMap target, printing what it did. Exit 0 applied (or already in force),
 * 1 refused or not served in time.
 */
export async function runConfigMapWeights(
  target: KubeRoutesTarget,
  weights: Weights,
  admin: EnvoyAdmin,
  timeoutMs: number,
  out: (line: string) => void,
): Promise<number> {
  const where = `configmap/${target.name} in namespace ${target.namespace}`;
  const describe = (w: Weights | undefined) =>
    w ? `stable ${w.stable}% / canary ${w.canary}%` : 'no weighted split found';
  try {
    const r = await switchWeightsInConfigMap({
      target,
      weights,
      admins: target.waitForAdmin ? [admin] : [],
      timeoutMs,
    });
    out(where);
    out(`before: ${describe(r.before.weights)}  (version "${r.before.version ?? '-'}")`);
    if (!r.changed) out(`after:  ${describe(r.before.weights)}  (already in force; nothing written)`);
    else if (r.confirmMs === undefined) {
      out(`after:  ${describe(weights)}  (version "${r.version}" stored; Envoy not asked: no --admin)`);
    } else {
      out(
        `after:  ${describe(weights)}  (version "${r.version}", served by Envoy ${admin.base} after ${r.confirmMs} ms)`,
      );
    }
    return 0;
  } catch (err) {
    if (err instanceof ConfigMapError) {
      process.stderr.write(`weights: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
