/**
 * A client for the few Envoy admin endpoints the stack, `npm run weights` and
 * the tests read (https://www.envoyproxy.io/docs/envoy/v1.40.0/operations/admin):
 * `/ready`, `/stats?format=json`, `/config_dump`, `/clusters?format=json`,
 * `/listeners?format=json` and `/server_info`. Every call has a timeout, and
 * every one is a GET: the same client works against the read-only admin view.
 * The admin may be at host:port or on a Unix socket (an absolute path).
 */
import { request } from 'node:http';
import { ROUTE_CONFIG_NAME, STAT_PREFIX, type Weights, weightsOf } from './config.js';

/** Envoy's admin did not answer, or answered with an error status. */
export class AdminError extends Error {
  override name = 'AdminError';
}

/** Counters of the RDS subscription for the A/B routes. */
export interface RdsCounters {
  readonly updateSuccess: number;
  readonly updateRejected: number;
  readonly updateFailure: number;
  readonly versionText: string;
}

/** The route configuration Envoy serves right now. */
export interface LiveRoutes {
  readonly version: string;
  readonly weights: Weights | undefined;
}

/** One upstream host as the admin reports it. */
export interface HostHealth {
  readonly address: string;
  /** No failed active check, no outlier ejection, EDS status healthy. */
  readonly healthy: boolean;
  readonly flags: readonly string[];
}

export class EnvoyAdmin {
  /** `address` is host:port, a full http:// URL, or the absolute path of a Unix socket. */
  constructor(
    address: string,
    private readonly timeoutMs = 2000,
  ) {
    this.socketPath = address.startsWith('/') ? address : undefined;
    this.base = this.socketPath
      ? `unix:${this.socketPath}`
      : /^https?:\/\//.test(address)
        ? address.replace(/\/$/, '')
        : `http://${address}`;
  }

  readonly base: string;
  private readonly socketPath: string | undefined;

  async text(path: string): Promise<string> {
    let status: number;
    let body: string;
    try {
      ({ status, body } = this.socketPath
        ? await this.overSocket(this.socketPath, path)
        : await this.overTcp(path));
    } catch (err) {
      const cause =
        (err as { cause?: { code?: string } }).cause?.code ??
        (err as NodeJS.ErrnoException).code ??
        (err as Error).name;
      throw new AdminError(`Envoy admin at ${this.base} did not answer ${path} (${cause})`);
    }
    if (status < 200 || status >= 300)
      throw new AdminError(`Envoy admin ${path} answered HTTP ${status}: ${body.trim()}`);
    return body;
  }

  private async overTcp(path: string): Promise<{ status: number; body: string }> {
    const res = await fetch(`${this.base}${path}`, { signal: AbortSignal.timeout(this.timeoutMs) });
    return { status: res.status, body: await res.text() };
  }

  private overSocket(socketPath: string, path: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = request({ socketPath, path, method: 'GET', timeout: this.timeoutMs }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
        );
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
      req.on('error', reject);
      req.end();
    });
  }

  async json<T>(path: string): Promise<T> {
    return JSON.parse(await this.text(path)) as T;
  }

  /** True once Envoy has initialised (clusters warmed, listeners open). */
  async ready(): Promise<boolean> {
    try {
      return (await this.text('/ready')).trim() === 'LIVE';
    } catch {
      return false;
    }
  }

  /** Counter and gauge values whose names match the regex `filter`. */
  async stats(filter: string): Promise<Map<string, number | string>> {
    const body = await this.json<{ stats?: { name?: string; value?: number | string }[] }>(
      `/stats?format=json&filter=${encodeURIComponent(filter)}`,
    );
    const out = new Map<string, number | string>();
    for (const s of body.stats ?? []) {
      if (typeof s.name === 'string' && s.value !== undefined) out.set(s.name, s.value);
    }
    return out;
  }

  /** The RDS counters of the A/B route configuration (`http.<prefix>.rds.<name>.*`). */
  async rds(): Promise<RdsCounters> {
    const prefix = `http.${STAT_PREFIX}.rds.${ROUTE_CONFIG_NAME}.`;
    const s = await this.stats(`^${prefix.replace(/\./g, '\\.')}`);
    const n = (k: string) => Number(s.get(prefix + k) ?? 0);
    return {
      updateSuccess: n('update_success'),
      updateRejected: n('update_rejected'),
      updateFailure: n('update_failure'),
      versionText: String(s.get(`${prefix}version_text`) ?? ''),
    };
  }

  /** The A/B route configuration from `/config_dump`, or undefined if Envoy has none yet. */
  async liveRoutes(): Promise<LiveRoutes | undefined> {
    const dump = await this.json<{
      configs?: { version_info?: string; route_config?: { name?: string } }[];
    }>('/config_dump?resource=dynamic_route_configs');
    const entry = (dump.configs ?? []).find((c) => c.route_config?.name === ROUTE_CONFIG_NAME);
    if (!entry) return undefined;
    return { version: entry.version_info ?? '', weights: weightsOf(entry.route_config) };
  }

  /** The RDS file Envoy watches, from its bootstrap, when it can be found there. */
  async watchedRoutesPath(): Promise<string | undefined> {
    const text = await this.text('/config_dump?resource=static_listeners');
    return /"path_config_source":\s*{\s*"path":\s*"([^"]+)"/.exec(text)?.[1];
  }

  /** Host health per cluster (`/clusters?format=json`). */
  async clusters(): Promise<Map<string, HostHealth[]>> {
    const body = await this.json<{
      cluster_statuses?: {
        name: string;
        host_statuses?: {
          address?: { socket_address?: { address?: string; port_value?: number } };
          health_status?: Record<string, unknown>;
        }[];
      }[];
    }>('/clusters?format=json');
    const out = new Map<string, HostHealth[]>();
    for (const c of body.cluster_statuses ?? []) {
      out.set(
        c.name,
        (c.host_statuses ?? []).map((h) => {
          const status = h.health_status ?? {};
          const flags = Object.entries(status)
            .filter(([k, v]) => v === true && k !== 'eds_health_status')
            .map(([k]) => k);
          const eds = status.eds_health_status;
          return {
            address: `${h.address?.socket_address?.address}:${h.address?.socket_address?.port_value}`,
            healthy: flags.length === 0 && (eds === undefined || eds === 'HEALTHY'),
            flags,
          };
        }),
      );
    }
    return out;
  }

  /** True when `cluster` has at least one host and every host is healthy. */
  async clusterHealthy(cluster: string): Promise<boolean> {
    const hosts = (await this.clusters()).get(cluster) ?? [];
    return hosts.length > 0 && hosts.every((h) => h.healthy);
  }

  /** The bound port of a listener (useful when the bootstrap asked for port 0). */
  async listenerPort(name: string): Promise<number> {
    const body = await this.json<{
      listener_statuses?: { name: string; local_address?: { socket_address?: { port_value?: number } } }[];
    }>('/listeners?format=json');
    const port = body.listener_statuses?.find((l) => l.name === name)?.local_address?.socket_address
      ?.port_value;
    if (typeof port !== 'number') throw new AdminError(`Envoy has no listener named ${name}`);
    return port;
  }
}
