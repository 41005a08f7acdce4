/**
 * Envoy in front of benchmark servers, as the real stack runs it: the
 * bootstrap rendered by scripts/lib/envoy/config.ts for their ports, the
 * routes inlined, registered with a `Processes` list.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type BootstrapOptions,
  bootstrap,
  DEFAULT_WEIGHTS,
  type Endpoint,
  type Weights,
} from '../envoy/config.js';
import { waitClustersHealthy } from '../envoy/health.js';
import { type EnvoyProcess, envoyBinary, startEnvoy } from '../envoy/process.js';
import { toYaml } from '../envoy/yaml.js';
import { PROJECT_ROOT } from '../paths.js';
import type { BenchServer, Processes } from './processes.js';

/** Envoy in front of servers. */
export interface BenchEnvoy {
  readonly envoy: EnvoyProcess;
  readonly pid: number;
  /** host:port of the gRPC listener. */
  readonly host: string;
  readonly configPath: string;
  stop(): Promise<void>;
}

/**
 * Adds endpoints to the `stable` cluster of a rendered bootstrap. The
 * renderer (scripts/lib/envoy/config.ts) takes one endpoint per arm; each extra
 * endpoint here is a copy of the rendered one (same arm metadata) at another
 * address, which is what Compose replicas look like to STRICT_DNS.
 */
export function withExtraStableEndpoints(config: ReturnType<typeof bootstrap>, extra: readonly Endpoint[]) {
  if (extra.length === 0) return config;
  const copy = JSON.parse(JSON.stringify(config)) as ReturnType<typeof bootstrap>;
  const cluster = (copy.static_resources.clusters as { name?: string; load_assignment?: unknown }[]).find(
    (c) => c.name === 'stable',
  );
  const group = (cluster?.load_assignment as { endpoints?: { lb_endpoints?: unknown[] }[] } | undefined)
    ?.endpoints?.[0];
  const first = group?.lb_endpoints?.[0] as { endpoint: { address: unknown } } | undefined;
  if (!group?.lb_endpoints || !first) throw new Error('rendered bootstrap has no stable endpoint to copy');
  for (const e of extra) {
    group.lb_endpoints.push({
      ...first,
      endpoint: { address: { socket_address: { address: e.host, port_value: e.port } } },
    });
  }
  return copy;
}

/**
 * Renders the bootstrap for these servers (stable: one or more; canary: one)
 * with the routes inlined at `weights` (default: the real stack's,
 * `DEFAULT_WEIGHTS`), starts Envoy and resolves once every server is healthy
 * in its cluster. The access log goes to a file, as in the local stack.
 */
export async function startEnvoyFor(
  procs: Processes,
  o: {
    workDir: string;
    name?: string;
    stable: readonly BenchServer[];
    canary: BenchServer;
    weights?: Weights;
    /** Envoy worker threads (its `--concurrency`). */
    concurrency: number;
    timeoutMs?: number;
    /** Changes a copy of the rendered bootstrap before it is written (the Envoy settings section). */
    tune?: (config: Record<string, unknown>) => Record<string, unknown>;
  },
): Promise<BenchEnvoy> {
  const name = o.name ?? 'envoy';
  const dir = join(o.workDir, name);
  mkdirSync(dir, { recursive: true });
  const [first, ...more] = o.stable;
  if (!first) throw new Error('Envoy needs at least one stable server');
  const options: BootstrapOptions = {
    listener: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    stable: { host: '127.0.0.1', port: first.grpcPort },
    canary: { host: '127.0.0.1', port: o.canary.grpcPort },
    discovery: 'static',
    // Unused: the routes are inlined (the same routeConfiguration() the RDS file holds).
    routesPath: join(dir, 'routes', 'routes.yaml'),
    inlineRoutes: o.weights ?? DEFAULT_WEIGHTS,
    accessLog: join(dir, 'access.log'),
    healthCheckIntervalMs: 1000,
  };
  const rendered = withExtraStableEndpoints(
    bootstrap(options),
    more.map((s) => ({ host: '127.0.0.1', port: s.grpcPort })),
  );
  const config = o.tune ? o.tune(JSON.parse(JSON.stringify(rendered)) as Record<string, unknown>) : rendered;
  const configPath = join(dir, 'envoy.yaml');
  writeFileSync(configPath, `# Rendered by scripts/lib/bench/envoy.ts\n${toYaml(config)}`);
  const envoy = await startEnvoy({
    binary: envoyBinary(PROJECT_ROOT),
    configPath,
    cwd: dir,
    adminAddressPath: join(dir, 'admin-address'),
    concurrency: o.concurrency,
    timeoutMs: o.timeoutMs ?? 30_000,
  });
  const stop = async () => {
    await envoy.stop(3000);
  };
  procs.add(name, stop);
  await waitClustersHealthy(
    envoy,
    { stable: o.stable.length, canary: 1 },
    { timeoutMs: o.timeoutMs ?? 30_000 },
  );
  const port = await envoy.admin.listenerPort('grpc_ingress');
  return { envoy, pid: envoy.proc.pid as number, host: `127.0.0.1:${port}`, configPath, stop };
}
