/**
 * Waiting until Envoy sees its upstreams healthy (its admin `/clusters`):
 * what the local stack, the benchmarks and the tests do before any call goes
 * through Envoy.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { HostHealth } from './admin.js';
import type { EnvoyProcess } from './process.js';

/** One cluster's hosts as a person reads them: `healthy, failed_active_health_check`, or `no hosts`. */
function describeHosts(hosts: readonly HostHealth[] | undefined): string {
  if (!hosts || hosts.length === 0) return 'no hosts';
  return hosts.map((h) => (h.healthy ? 'healthy' : h.flags.join('+') || 'unhealthy')).join(', ');
}

/**
 * Resolves once each cluster of `want` has at least that many hosts and every
 * one of them is healthy. `onState` hears each new state (`stable: healthy;
 * canary: no hosts`). Rejects when Envoy exits first or `timeoutMs` passes,
 * with the last state and Envoy's last log lines.
 */
export async function waitClustersHealthy(
  envoy: EnvoyProcess,
  want: Readonly<Record<string, number>>,
  o: { readonly timeoutMs: number; readonly intervalMs?: number; readonly onState?: (state: string) => void },
): Promise<void> {
  const deadline = Date.now() + o.timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    const clusters = await envoy.admin.clusters().catch(() => undefined);
    if (clusters) {
      const state = Object.keys(want)
        .map((c) => `${c}: ${describeHosts(clusters.get(c))}`)
        .join('; ');
      if (state !== last) o.onState?.(state);
      last = state;
      const ok = Object.entries(want).every(([c, n]) => {
        const hosts = clusters.get(c) ?? [];
        return hosts.length >= Math.max(1, n) && hosts.every((h) => h.healthy);
      });
      if (ok) return;
    }
    if (envoy.proc.exitCode !== null || envoy.proc.signalCode !== null) {
      throw new Error(`Envoy exited while waiting for healthy clusters:\n${envoy.log.slice(-10).join('\n')}`);
    }
    await sleep(o.intervalMs ?? 100);
  }
  throw new Error(
    `Envoy did not see every cluster healthy within ${o.timeoutMs / 1000} s (${last || 'no answer'}):\n` +
      envoy.log.slice(-10).join('\n'),
  );
}
