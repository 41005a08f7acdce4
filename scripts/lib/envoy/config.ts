/**
 * Envoy configuration for stage 1 of the A/B design: one function renders the
 * bootstrap (listener, admin, clusters) and one renders the routes that Envoy
 * reads from a file through RDS. The committed files under `envoy/` are
 * renderings of these functions (`node dist/scripts/ops/envoy-config.js`), and the
 * tests render the same functions with the ports of the servers they start.
 *
 * Field names follow the Envoy 1.40 v3 API reference
 * (https://www.envoyproxy.io/docs/envoy/v1.40.0/api-v3/api); every rendering is
 * checked with `envoy --mode validate` by test/envoy/envoy-config.test.ts.
 */

import { AB_ARM_HEADER, AB_OVERRIDE_HEADER, USER_ID_HEADER } from '../../../server/headers.js';

/** The route configuration's name; RDS stats are `http.<prefix>.rds.<name>.*`. */
export const ROUTE_CONFIG_NAME = 'ab_routes';
/** The HTTP connection manager's stat prefix. */
export const STAT_PREFIX = 'ingress_grpc';
/** Endpoint metadata namespace holding `arm`, read by the response header and the access log. */
export const ARM_METADATA_NAMESPACE = 'ab';

export const CLUSTER = {
  stable: 'stable',
  canary: 'canary',
  /** Aggregate [canary, stable]: the canary's weighted target, spilling to stable when the canary is unhealthy. */
  canaryWithFallback: 'canary_with_fallback',
  /** The local admin interface, behind the read-only admin view (containers only). */
  admin: 'envoy_admin',
} as const;

/** The arms' weights always sum to this, so moving the canary only moves stable users. */
export const TOTAL_WEIGHT = 100;

export interface Weights {
  readonly stable: number;
  readonly canary: number;
}

export const DEFAULT_WEIGHTS: Weights = Object.freeze({ stable: 90, canary: 10 });

/** An invalid weight, with a message for the operator. */
export class WeightsError extends Error {
  override name = 'WeightsError';
}

/** The weights for a canary percentage: integers 0–100, stable = 100 − canary. */
export function weightsForCanary(canary: number): Weights {
  if (!Number.isInteger(canary) || canary < 0 || canary > TOTAL_WEIGHT) {
    throw new WeightsError(`the canary weight must be an integer from 0 to ${TOTAL_WEIGHT}, got ${canary}`);
  }
  return Object.freeze({ stable: TOTAL_WEIGHT - canary, canary });
}

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

export interface BootstrapOptions {
  /** The gRPC listener; port 0 lets the kernel pick (tests read it back from /listeners). */
  readonly listener: Endpoint;
  /** The admin interface; keep it on loopback. */
  readonly admin: Endpoint;
  readonly stable: Endpoint;
  readonly canary: Endpoint;
  /** `static` for fixed addresses; `dns` (STRICT_DNS) for Compose service names with replicas. */
  readonly discovery: 'static' | 'dns';
  /** The RDS file. Envoy watches its directory and reloads when a file is renamed onto it. */
  readonly routesPath: string;
  /** Inline these routes instead of RDS: `--mode validate` does not read the RDS file. */
  readonly inlineRoutes?: Weights;
  /** A file path, or `stdout` for containers. */
  readonly accessLog: string;
  /** Active health check interval (and no-traffic interval). */
  readonly healthCheckIntervalMs: number;
  /** A listener exposing only admin GET endpoints (stats, config_dump, clusters), for containers. */
  readonly adminView?: Endpoint;
  /** Terminate TLS (HTTP/2 by ALPN) on the gRPC listener with these PEM files. */
  readonly tls?: { readonly certChainPath: string; readonly privateKeyPath: string };
  /**
   * Fault injection (tests and chaos drills only): abort a share of the calls bound for one
   * upstream cluster with a gRPC status, as a canary that fails for real would. After
   * grpc_stats in the chain, so Envoy's per-cluster counters see the aborted calls.
   */
  readonly fault?: {
    readonly upstreamCluster: string;
    readonly abortPercent: number;
    readonly grpcStatus: number;
  };
}

/** `npm start`'s stack: everything on loopback; paths relative to the repository root. */
export const LOCAL_BOOTSTRAP: BootstrapOptions = Object.freeze({
  listener: { host: '127.0.0.1', port: 8080 },
  admin: { host: '127.0.0.1', port: 9901 },
  stable: { host: '127.0.0.1', port: 50051 },
  canary: { host: '127.0.0.1', port: 50052 },
  discovery: 'static',
  routesPath: 'envoy/run/routes/routes.yaml',
  accessLog: 'logs/envoy/access.log',
  healthCheckIntervalMs: 1000,
});

/** docker-compose.yml's Envoy: Compose service names, RDS directory mounted at /etc/envoy/routes. */
export const CONTAINER_BOOTSTRAP: BootstrapOptions = Object.freeze({
  listener: { host: '0.0.0.0', port: 8080 },
  admin: { host: '127.0.0.1', port: 9901 },
  stable: { host: 'stable', port: 50051 },
  canary: { host: 'canary', port: 50052 },
  discovery: 'dns',
  routesPath: '/etc/envoy/routes/routes.yaml',
  accessLog: 'stdout',
  healthCheckIntervalMs: 1000,
  adminView: { host: '0.0.0.0', port: 9902 },
});

/**
 * Host names the Helm chart replaces with its headless Services' names
 * (deploy/helm/inference-ab/templates/envoy-config.yaml), which depend on the release.
 */
export const KUBE_HOST_PLACEHOLDER = Object.freeze({ stable: '__STABLE_HOST__', canary: '__CANARY_HOST__' });

/**
 * The Helm chart's Envoy: STRICT_DNS on the arms' headless Services (one
 * address per ready pod), both arms on 50051 (one pod each), routes from the
 * ConfigMap mounted at /etc/envoy/routes. Kubernetes updates a mounted
 * ConfigMap by renaming a `..data` symlink inside that directory, which
 * `watched_directory` sees as a move.
 */
export const KUBE_BOOTSTRAP: BootstrapOptions = Object.freeze({
  ...CONTAINER_BOOTSTRAP,
  stable: { host: KUBE_HOST_PLACEHOLDER.stable, port: 50051 },
  canary: { host: KUBE_HOST_PLACEHOLDER.canary, port: 50051 },
});

/** KUBE_BOOTSTRAP terminating TLS with the certificate of a kubernetes.io/tls Secret mounted at /etc/envoy/tls. */
export const KUBE_TLS_BOOTSTRAP: BootstrapOptions = Object.freeze({
  ...KUBE_BOOTSTRAP,
  tls: { certChainPath: '/etc/envoy/tls/tls.crt', privateKeyPath: '/etc/envoy/tls/tls.key' },
});

const TYPE = {
  hcm: 'type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager',
  router: 'type.googleapis.com/envoy.extensions.filters.http.router.v3.Router',
  grpcStats: 'type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig',
  fault: 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault',
  fileLog: 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog',
  stdoutLog: 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
  httpOptions: 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
  aggregate: 'type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig',
  previousHosts: 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
  routeConfig: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  downstreamTls: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
  downstreamConnections:
    'type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig',
} as const;

const ARM = `%UPSTREAM_METADATA(${ARM_METADATA_NAMESPACE}:arm)%`;

function seconds(ms: number): string {
  return `${ms / 1000}s`;
}

function socketAddress(e: Endpoint) {
  return { socket_address: { address: e.host, port_value: e.port } };
}

/** Matches gRPC requests only (content-type application/grpc), optionally with a header value. */
function grpcMatch(header?: { name: string; value: string }) {
  return {
    prefix: '/',
    grpc: {},
    ...(header ? { headers: [{ name: header.name, string_match: { exact: header.value } }] } : {}),
  };
}

/**
 * Per-route settings shared by every route. `timeout: 0s` disables Envoy's
 * 15 s default, and `grpc_timeout_header_max: 0s` makes the client's
 * `grpc-timeout` the stream's limit, uncapped (RouteAction.MaxStreamDuration).
 */
const ROUTE_TIMEOUTS = { timeout: '0s', max_stream_duration: { grpc_timeout_header_max: '0s' } };

/**
 * The route configuration: QA overrides first, then the sticky weighted split.
 *
 * - `weighted_clusters.use_hash_policy` (Envoy ≥ 1.36) picks the arm from the
 *   route's `hash_policy`, a hash of `x-user-id`, so a user keeps their arm;
 *   without the header there is no hash and the pick is random.
 * - The canary is listed last and the weights always sum to 100: the hash
 *   selects a point in [0, 100), stable owns the bottom, canary the top, so
 *   raising the canary only moves stable users onto it.
 * - The canary's target is the aggregate `canary_with_fallback` cluster:
 *   weighted clusters are not health-aware, but an aggregate cluster sends
 *   its share to stable while the canary's host is unhealthy (NOT_SERVING,
 *   failing checks or ejected).
 * - The retry policy covers the moment before a health check notices: a dead
 *   canary fails with connect-failure or reset, and `refresh_cluster_on_retry`
 *   (Envoy ≥ 1.39) re-picks the weighted cluster for the retry, choosing an
 *   entry not yet tried, which is stable.
 */
export function routeConfiguration(weights: Weights) {
  const w = weightsForCanary(weights.canary);
  if (w.stable !== weights.stable) {
    throw new WeightsError(`weights must sum to ${TOTAL_WEIGHT}, got ${weights.stable} + ${weights.canary}`);
  }
  return {
    name: ROUTE_CONFIG_NAME,
    virtual_hosts: [
      {
        name: 'inference',
        domains: ['*'],
        routes: [
          {
            name: 'qa_override_stable',
            match: grpcMatch({ name: AB_OVERRIDE_HEADER, value: 'stable' }),
            route: { cluster: CLUSTER.stable, ...ROUTE_TIMEOUTS },
          },
          {
            name: 'qa_override_canary',
            match: grpcMatch({ name: AB_OVERRIDE_HEADER, value: 'canary' }),
            route: { cluster: CLUSTER.canary, ...ROUTE_TIMEOUTS },
          },
          {
            name: 'ab_split',
            match: grpcMatch(),
            route: {
              weighted_clusters: {
                clusters: [
                  { name: CLUSTER.stable, weight: w.stable },
                  { name: CLUSTER.canaryWithFallback, weight: w.canary },
                ],
                use_hash_policy: true,
              },
              hash_policy: [{ header: { header_name: USER_ID_HEADER } }],
              ...ROUTE_TIMEOUTS,
            },
          },
        ],
        retry_policy: {
          retry_on: 'connect-failure,refused-stream,unavailable,reset',
          num_retries: 2,
          retry_back_off: { base_interval: '0.01s', max_interval: '0.1s' },
          // Another replica of the same cluster first, when there is one (Compose --scale).
          retry_host_predicate: [
            {
              name: 'envoy.retry_host_predicates.previous_hosts',
              typed_config: { '@type': TYPE.previousHosts },
            },
          ],
          host_selection_retry_max_attempts: 3,
          refresh_cluster_on_retry: true,
        },
        include_attempt_count_in_response: true,
        // The arm comes from the endpoint that answered, so it stays true after a fallback.
        response_headers_to_add: [
          { header: { key: AB_ARM_HEADER, value: ARM }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' },
        ],
      },
    ],
  };
}

/** A unique, readable routes version: the weights and the time of the change. */
export function routesVersion(weights: Weights, at: Date): string {
  const stamp = at.toISOString().replace(/[-:]/g, '');
  return `stable-${weights.stable}-canary-${weights.canary}-${stamp}`;
}

/**
 * The RDS file: a DiscoveryResponse holding the one route configuration.
 * Envoy reports `version_info` as the route config's version in
 * `/config_dump` and as `rds.<name>.version_text` in `/stats`.
 */
export function routesFile(weights: Weights, version: string) {
  return {
    version_info: version,
    resources: [{ '@type': TYPE.routeConfig, ...routeConfiguration(weights) }],
  };
}

/** The weights a route configuration (as rendered above, or from `/config_dump`) carries. */
export function weightsOf(routeConfig: unknown): Weights | undefined {
  const vhosts = (routeConfig as { virtual_hosts?: unknown[] })?.virtual_hosts;
  for (const vh of Array.isArray(vhosts) ? vhosts : []) {
    const routes = (vh as { routes?: unknown[] }).routes;
    for (const r of Array.isArray(routes) ? routes : []) {
      const clusters = (r as { route?: { weighted_clusters?: { clusters?: unknown[] } } }).route
        ?.weighted_clusters?.clusters;
      if (!Array.isArray(clusters)) continue;
      const weightOf = (name: string) => {
        const c = clusters.find((x) => (x as { name?: string }).name === name) as
          | { weight?: number | string }
          | undefined;
        // config_dump writes UInt32Value as a number; absent means 0.
        return Number(c?.weight ?? 0);
      };
      return { stable: weightOf(CLUSTER.stable), canary: weightOf(CLUSTER.canaryWithFallback) };
    }
  }
  return undefined;
}

function accessLog(target: string) {
  // One JSON object per request: who asked, which route cluster and arm answered, with what status.
  const log_format = {
    json_format: {
      time: '%START_TIME%',
      user: `%REQ(${USER_ID_HEADER})%`,
      override: `%REQ(${AB_OVERRIDE_HEADER})%`,
      method: '%REQ(:PATH)%',
      // The route's cluster (canary_with_fallback for the canary's share; after a
      // cross-cluster retry, the cluster that was retried) and the arm that answered.
      cluster: '%UPSTREAM_CLUSTER%',
      arm: ARM,
      upstream_host: '%UPSTREAM_HOST%',
      grpc_status: '%GRPC_STATUS(SNAKE_STRING)%',
      // 200 once upstream response headers were forwarded downstream: from then on
      // an upstream reset can no longer be retried.
      response_code: '%RESPONSE_CODE%',
      attempts: '%UPSTREAM_REQUEST_ATTEMPT_COUNT%',
      response_flags: '%RESPONSE_FLAGS%',
      duration_ms: '%DURATION%',
      request_id: '%REQ(X-REQUEST-ID)%',
    },
  };
  if (target === 'stdout') {
    return { name: 'envoy.access_loggers.stdout', typed_config: { '@type': TYPE.stdoutLog, log_format } };
  }
  return {
    name: 'envoy.access_loggers.file',
    typed_config: { '@type': TYPE.fileLog, path: target, log_format },
  };
}

function ingressListener(o: BootstrapOptions) {
  const routes = o.inlineRoutes
    ? { route_config: routeConfiguration(o.inlineRoutes) }
    : {
        rds: {
          route_config_name: ROUTE_CONFIG_NAME,
          config_source: {
            resource_api_version: 'V3',
            path_config_source: {
              path: o.routesPath,
              // Envoy reloads `path` when a file is moved into this directory, so
              // writers rename a complete temp file onto it (never edit in place).
              watched_directory: { path: dirnameOf(o.routesPath) },
            },
          },
        },
      };
  return {
    name: 'grpc_ingress',
    address: socketAddress(o.listener),
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': TYPE.hcm,
              stat_prefix: STAT_PREFIX,
              codec_type: 'AUTO',
              use_remote_address: true,
              ...routes,
              access_log: [accessLog(o.accessLog)],
              http_filters: [
                {
                  name: 'envoy.filters.http.grpc_stats',
                  typed_config: {
                    '@type': TYPE.grpcStats,
                    // Per-method counters and upstream latency (cluster.<name>.grpc.<service>.<method>.*).
                    stats_for_all_methods: true,
                    enable_upstream_stats: true,
                  },
                },
                ...(o.fault
                  ? [
                      {
                        name: 'envoy.filters.http.fault',
                        typed_config: {
                          '@type': TYPE.fault,
                          upstream_cluster: o.fault.upstreamCluster,
                          abort: {
                            grpc_status: o.fault.grpcStatus,
                            percentage: { numerator: o.fault.abortPercent, denominator: 'HUNDRED' },
                          },
                        },
                      },
                    ]
                  : []),
                { name: 'envoy.filters.http.router', typed_config: { '@type': TYPE.router } },
              ],
            },
          },
        ],
        ...(o.tls ? { transport_socket: downstreamTls(o.tls) } : {}),
      },
    ],
  };
}

/** TLS on the listener, HTTP/2 only (gRPC): envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext. */
function downstreamTls(tls: NonNullable<BootstrapOptions['tls']>) {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': TYPE.downstreamTls,
      common_tls_context: {
        alpn_protocols: ['h2'],
        tls_certificates: [
          {
            certificate_chain: { filename: tls.certChainPath },
            private_key: { filename: tls.privateKeyPath },
          },
        ],
      },
    },
  };
}

/** Admin GET endpoints only: Prometheus and `npm run weights` can read, nobody can change. */
function adminViewListener(view: Endpoint) {
  const readOnly = ['/stats', '/config_dump', '/clusters', '/listeners', '/ready', '/server_info'];
  return {
    name: 'admin_view',
    address: socketAddress(view),
    filter_chains: [
      {
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': TYPE.hcm,
              stat_prefix: 'admin_view',
              codec_type: 'AUTO',
              route_config: {
                name: 'admin_view',
                virtual_hosts: [
                  {
                    name: 'admin_view',
                    domains: ['*'],
                    routes: readOnly.map((prefix) => ({
                      match: { prefix, headers: [{ name: ':method', string_match: { exact: 'GET' } }] },
                      route: { cluster: CLUSTER.admin },
                    })),
                  },
                ],
              },
              http_filters: [{ name: 'envoy.filters.http.router', typed_config: { '@type': TYPE.router } }],
            },
          },
        ],
      },
    ],
  };
}

function serverCluster(name: 'stable' | 'canary', at: Endpoint, o: BootstrapOptions) {
  const interval = seconds(o.healthCheckIntervalMs);
  return {
    name,
    type: o.discovery === 'dns' ? 'STRICT_DNS' : 'STATIC',
    // STRICT_DNS re-resolves every 5 s by default (dns_refresh_rate is deprecated on Cluster in 1.40).
    ...(o.discovery === 'dns' ? { dns_lookup_family: 'V4_ONLY' } : {}),
    connect_timeout: '1s',
    lb_policy: 'ROUND_ROBIN',
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': TYPE.httpOptions,
        explicit_http_config: { http2_protocol_options: {} },
      },
    },
    load_assignment: {
      cluster_name: name,
      endpoints: [
        {
          lb_endpoints: [
            {
              endpoint: { address: socketAddress(at) },
              metadata: { filter_metadata: { [ARM_METADATA_NAMESPACE]: { arm: name } } },
            },
          ],
        },
      ],
    },
    health_checks: [
      {
        timeout: '1s',
        interval,
        // Envoy checks idle clusters only every 60 s by default; the canary is often idle.
        no_traffic_interval: interval,
        // NOT_SERVING marks the host unhealthy at once; two failures cover a lost check.
        unhealthy_threshold: 2,
        healthy_threshold: 1,
        grpc_health_check: { service_name: 'inference.v1.InferenceService' },
      },
    ],
    outlier_detection: {
      consecutive_5xx: 5,
      consecutive_gateway_failure: 3,
      enforcing_consecutive_gateway_failure: 100,
      interval: '1s',
      base_ejection_time: '10s',
      // The default (10%) never ejects the only host of a one-replica cluster.
      max_ejection_percent: 100,
    },
    circuit_breakers: { thresholds: [CIRCUIT_BREAKER] },
  };
}

/**
 * The default `max_retries` is 3 concurrent retries per cluster: a dying canary
 * under load needs more than that to retry every request onto stable.
 */
const CIRCUIT_BREAKER = {
  priority: 'DEFAULT',
  max_connections: 1024,
  max_pending_requests: 1024,
  max_requests: 1024,
  max_retries: 256,
  track_remaining: true,
};

/** The Envoy bootstrap for the given addresses and paths. */
export function bootstrap(o: BootstrapOptions) {
  const listeners = [ingressListener(o), ...(o.adminView ? [adminViewListener(o.adminView)] : [])];
  const clusters: unknown[] = [
    serverCluster('stable', o.stable, o),
    serverCluster('canary', o.canary, o),
    {
      name: CLUSTER.canaryWithFallback,
      connect_timeout: '1s',
      lb_policy: 'CLUSTER_PROVIDED',
      cluster_type: {
        name: 'envoy.clusters.aggregate',
        // Priority order: the canary while it has a healthy host, then stable.
        typed_config: { '@type': TYPE.aggregate, clusters: [CLUSTER.canary, CLUSTER.stable] },
      },
      circuit_breakers: { thresholds: [CIRCUIT_BREAKER] },
    },
  ];
  if (o.adminView) {
    clusters.push({
      name: CLUSTER.admin,
      type: 'STATIC',
      connect_timeout: '1s',
      load_assignment: {
        cluster_name: CLUSTER.admin,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: socketAddress(o.admin) } }] }],
      },
    });
  }
  return {
    node: { id: 'inference-ab', cluster: 'inference-ab' },
    admin: { address: socketAddress(o.admin) },
    static_resources: { listeners, clusters },
    // Envoy warns at start-up unless downstream connections are capped.
    overload_manager: {
      resource_monitors: [
        {
          name: 'envoy.resource_monitors.global_downstream_max_connections',
          typed_config: { '@type': TYPE.downstreamConnections, max_active_downstream_connections: 10000 },
        },
      ],
    },
  };
}

function dirnameOf(path: string): string {
  const i = path.lastIndexOf('/');
  if (i < 0) return '.';
  return i === 0 ? '/' : path.slice(0, i);
}
