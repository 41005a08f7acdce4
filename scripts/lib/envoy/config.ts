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
import type { AccessLogEntry } from './access-log-entry.js';

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
  /**
   * Put Envoy's real admin on this Unix socket (mode 0600: only the user that
   * runs Envoy, and root, can connect) and serve `admin` as a read-only view
   * (the same GET endpoints as `adminView`). For a machine shared by several
   * users; not combined with `adminView`.
   */
  readonly adminSocket?: string;
  /**
   * The QA listener: the only one that honours `x-ab-group` (the public
   * listener strips it before routing). Bind it where only QA can reach it.
   */
  readonly qaListener?: Endpoint;
  /**
   * Terminate TLS (HTTP/2 by ALPN) on the public and QA listeners with these
   * PEM files; with `clientCaPath`, mutual TLS (a client certificate is required).
   */
  readonly tls?: TlsFiles;
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
  /** Limits; each one defaults to DEFAULT_ENVOY_LIMITS. */
  readonly limits?: Partial<EnvoyLimits>;
}

/** PEM files for the listeners' TLS. */
export interface TlsFiles {
  readonly certChainPath: string;
  readonly privateKeyPath: string;
  /** The CA that client certificates must chain to; set = mutual TLS. */
  readonly clientCaPath?: string;
}

/**
 * Envoy's protections against slow, idle, oversized and abusive clients
 * (README "Limits and protections"). Field names follow the Envoy fields they
 * set.
 */
export interface EnvoyLimits {
  /** HCM http2_protocol_options.max_concurrent_streams: streams per client connection. */
  readonly maxConcurrentStreams: number;
  /** initial_stream_window_size: what a client may send on a stream before Envoy reads it (flow control). */
  readonly initialStreamWindowBytes: number;
  /** initial_connection_window_size: the same for the whole connection. */
  readonly initialConnectionWindowBytes: number;
  /** per_connection_buffer_limit_bytes of the listeners and clusters (and the retry buffer). */
  readonly connectionBufferBytes: number;
  /** max_request_headers_kb. */
  readonly maxRequestHeadersKb: number;
  /** request_headers_timeout: the headers must arrive within this of the first byte. */
  readonly requestHeadersTimeoutMs: number;
  /** request_timeout: the whole request must arrive within this (disarmed once the response starts). */
  readonly requestTimeoutMs: number;
  /** stream_idle_timeout: a stream with no activity either way for this long is reset. */
  readonly streamIdleTimeoutMs: number;
  /** common_http_protocol_options.idle_timeout: a connection without streams is closed after this. */
  readonly idleTimeoutMs: number;
  /** transport_socket_connect_timeout: the TLS handshake must finish within this. */
  readonly handshakeTimeoutMs: number;
  /** The overload manager's fixed_heap monitor: heap actions scale against this. */
  readonly maxHeapBytes: number;
  /** global_downstream_max_connections. */
  readonly maxDownstreamConnections: number;
  /** per_try_timeout: an upstream attempt that has not answered by then is retried (a hung host). */
  readonly perTryTimeoutMs: number;
  /** Runtime http.max_requests_per_io_cycle: new streams taken from one connection per event-loop turn. */
  readonly maxRequestsPerIoCycle: number;
}

export const DEFAULT_ENVOY_LIMITS: EnvoyLimits = Object.freeze({
  maxConcurrentStreams: 100,
  initialStreamWindowBytes: 64 * 1024,
  initialConnectionWindowBytes: 1024 * 1024,
  connectionBufferBytes: 1024 * 1024,
  maxRequestHeadersKb: 60,
  requestHeadersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  streamIdleTimeoutMs: 60_000,
  idleTimeoutMs: 300_000,
  handshakeTimeoutMs: 10_000,
  maxHeapBytes: 512 * 1024 * 1024,
  maxDownstreamConnections: 10_000,
  perTryTimeoutMs: 1000,
  maxRequestsPerIoCycle: 16,
});

function limitsOf(o: BootstrapOptions): EnvoyLimits {
  return { ...DEFAULT_ENVOY_LIMITS, ...o.limits };
}

/** `npm start`'s stack: everything on loopback; paths relative to the repository root. */
export const LOCAL_BOOTSTRAP: BootstrapOptions = Object.freeze({
  listener: { host: '127.0.0.1', port: 8080 },
  // Read-only here: the real admin is the Unix socket below, for the user running `npm start` only.
  admin: { host: '127.0.0.1', port: 9901 },
  adminSocket: 'envoy/run/admin.sock',
  qaListener: { host: '127.0.0.1', port: 8081 },
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
  // The container's own loopback: only processes inside the Envoy container reach it.
  admin: { host: '127.0.0.1', port: 9901 },
  // Not published by docker-compose.yml: only containers on the Compose network reach it.
  qaListener: { host: '0.0.0.0', port: 8081 },
  stable: { host: 'stable', port: 50051 },
  canary: { host: 'canary', port: 50052 },
  discovery: 'dns',
  routesPath: '/etc/envoy/routes/routes.yaml',
  accessLog: 'stdout',
  healthCheckIntervalMs: 1000,
  adminView: { host: '0.0.0.0', port: 9902 },
});

/**
 * The container bootstrap for a production profile: the same, with mutual TLS
 * on the public and QA listeners. Certificates are mounted at /etc/envoy/tls
 * (server.crt, server.key, and ca.crt, the CA client certificates must chain to).
 */
export const CONTAINER_TLS_BOOTSTRAP: BootstrapOptions = Object.freeze({
  ...CONTAINER_BOOTSTRAP,
  tls: {
    certChainPath: '/etc/envoy/tls/server.crt',
    privateKeyPath: '/etc/envoy/tls/server.key',
    clientCaPath: '/etc/envoy/tls/ca.crt',
  },
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
  fileLog: 'type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog',
  stdoutLog: 'type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog',
  httpOptions: 'type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions',
  aggregate: 'type.googleapis.com/envoy.extensions.clusters.aggregate.v3.ClusterConfig',
  previousHosts: 'type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate',
  routeConfig: 'type.googleapis.com/envoy.config.route.v3.RouteConfiguration',
  downstreamConnections:
    'type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig',
  fixedHeap: 'type.googleapis.com/envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig',
  earlyHeaderMutation:
    'type.googleapis.com/envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation',
  downstreamTls: 'type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext',
  fault: 'type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault',
} as const;

const ARM = `%UPSTREAM_METADATA(${ARM_METADATA_NAMESPACE}:arm)%`;

function seconds(ms: number): string {
  return `${ms / 1000}s`;
}

function socketAddress(e: Endpoint) {
  return { socket_address: { address: e.host, port_value: e.port } };
}

/** A Unix socket only its owner can connect to. */
function pipeAddress(path: string) {
  return { pipe: { path, mode: 0o600 } };
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
 * 15 s default. Envoy does not enforce the client's `grpc-timeout` itself (no
 * `max_stream_duration`): the client and the server both do, and when Envoy's
 * own timer fired after the response had started it could only reset the
 * stream, which the client saw as RST_STREAM INTERNAL instead of
 * DEADLINE_EXCEEDED (1–3 ms deadlines, a few calls in 500). A hung upstream is
 * bounded by the per-try timeout (retried elsewhere) and `stream_idle_timeout`.
 */
const ROUTE_TIMEOUTS = { timeout: '0s' };

/**
 * `x-user-id` as the server accepts it (server/request-validation.ts
 * `isUserId`: 1–128 printable ASCII characters, spaces allowed), in RE2
 * syntax. Envoy hashes the header's raw bytes while grpc-js drops values it
 * cannot decode, so a call whose header does not match is answered
 * INVALID_ARGUMENT by Envoy itself, before any hash: both layers agree on
 * every key. test/envoy/exposure.test.ts holds the two definitions together.
 */
export const USER_ID_PATTERN = '^[\\x20-\\x7e]{1,128}$';

/** gRPC status INVALID_ARGUMENT, for Envoy's own answer to a malformed `x-user-id`. */
const GRPC_INVALID_ARGUMENT = '3';

/** The message of that answer; like the server's, it never echoes the value. */
export const INVALID_USER_ID_MESSAGE = `${USER_ID_HEADER} must be one value of 1 to 128 printable ASCII characters`;

function responseHeader(key: string, value: string) {
  return { header: { key, value }, append_action: 'OVERWRITE_IF_EXISTS_OR_ADD' };
}

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
export function routeConfiguration(weights: Weights, perTryTimeoutMs = DEFAULT_ENVOY_LIMITS.perTryTimeoutMs) {
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
            // Matched first, so a malformed A/B key is never hashed (see USER_ID_PATTERN).
            name: 'invalid_user_id',
            match: {
              prefix: '/',
              grpc: {},
              headers: [
                {
                  name: USER_ID_HEADER,
                  string_match: { safe_regex: { regex: USER_ID_PATTERN } },
                  invert_match: true,
                },
              ],
            },
            direct_response: { status: 200 },
            response_headers_to_add: [
              responseHeader('grpc-status', GRPC_INVALID_ARGUMENT),
              // Percent-encoded as grpc-message is, and each % doubled: header values are Envoy format strings.
              responseHeader(
                'grpc-message',
                encodeURIComponent(INVALID_USER_ID_MESSAGE).replaceAll('%', '%%'),
              ),
            ],
          },
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
          // A hung host (SIGSTOP, a stuck event loop) answers nothing: retried elsewhere after this.
          per_try_timeout: seconds(perTryTimeoutMs),
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

/** Which listener a request came in on, as the access log names it. */
export type ListenerKind = 'public' | 'qa';

/** The listeners' names (`/listeners`, stats). */
export const LISTENER = { public: 'grpc_ingress', qa: 'grpc_qa', adminView: 'admin_view' } as const;

/**
 * One JSON object per request: which listener, who asked, which route cluster
 * and arm answered, with what status. Every request header is cut to a
 * bounded length (`%REQ(X):N%`): the log must not grow with what a client
 * sends (a 60 KB x-user-id once meant a 60 KB access log line).
 */
function accessLog(target: string, listener: ListenerKind) {
  const log_format = {
    json_format: {
      time: '%START_TIME%',
      listener,
      user: `%REQ(${USER_ID_HEADER}):128%`,
      override: `%REQ(${AB_OVERRIDE_HEADER}):16%`,
      method: '%REQ(:PATH):256%',
      // The route that matched: ab_split, qa_override_stable / qa_override_canary (QA
      // listener only), invalid_user_id.
      route: '%ROUTE_NAME%',
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
      request_id: '%REQ(X-REQUEST-ID):128%',
    } satisfies Record<keyof AccessLogEntry, string>,
  };
  if (target === 'stdout') {
    return { name: 'envoy.access_loggers.stdout', typed_config: { '@type': TYPE.stdoutLog, log_format } };
  }
  return {
    name: 'envoy.access_loggers.file',
    typed_config: { '@type': TYPE.fileLog, path: target, log_format },
  };
}

/** The listener-side TLS (DownstreamTlsContext), mutual when a client CA is given. */
function downstreamTls(tls: TlsFiles) {
  return {
    name: 'envoy.transport_sockets.tls',
    typed_config: {
      '@type': TYPE.downstreamTls,
      common_tls_context: {
        tls_params: { tls_minimum_protocol_version: 'TLSv1_2' },
        tls_certificates: [
          {
            certificate_chain: { filename: tls.certChainPath },
            private_key: { filename: tls.privateKeyPath },
          },
        ],
        alpn_protocols: ['h2'],
        ...(tls.clientCaPath ? { validation_context: { trusted_ca: { filename: tls.clientCaPath } } } : {}),
      },
      ...(tls.clientCaPath ? { require_client_certificate: true } : {}),
    },
  };
}

/**
 * The gRPC listeners. Both serve the same RDS route configuration; they
 * differ in one step: the public listener removes `x-ab-group` before any
 * routing (an early header mutation, so the QA override routes can never
 * match there), the QA listener keeps it.
 */
function ingressListener(o: BootstrapOptions, kind: ListenerKind) {
  const l = limitsOf(o);
  const routes = o.inlineRoutes
    ? { route_config: routeConfiguration(o.inlineRoutes, l.perTryTimeoutMs) }
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
  const at = kind === 'public' ? o.listener : (o.qaListener as Endpoint);
  return {
    name: LISTENER[kind],
    address: socketAddress(at),
    per_connection_buffer_limit_bytes: l.connectionBufferBytes,
    filter_chains: [
      {
        ...(o.tls
          ? {
              transport_socket: downstreamTls(o.tls),
              transport_socket_connect_timeout: seconds(l.handshakeTimeoutMs),
            }
          : {}),
        filters: [
          {
            name: 'envoy.filters.network.http_connection_manager',
            typed_config: {
              '@type': TYPE.hcm,
              stat_prefix: kind === 'public' ? STAT_PREFIX : `${STAT_PREFIX}_qa`,
              codec_type: 'AUTO',
              use_remote_address: true,
              ...(kind === 'public'
                ? {
                    early_header_mutation_extensions: [
                      {
                        name: 'envoy.http.early_header_mutation.header_mutation',
                        typed_config: {
                          '@type': TYPE.earlyHeaderMutation,
                          mutations: [{ remove: AB_OVERRIDE_HEADER }],
                        },
                      },
                    ],
                  }
                : {}),
              ...routes,
              access_log: [accessLog(o.accessLog, kind)],
              max_request_headers_kb: l.maxRequestHeadersKb,
              request_headers_timeout: seconds(l.requestHeadersTimeoutMs),
              request_timeout: seconds(l.requestTimeoutMs),
              stream_idle_timeout: seconds(l.streamIdleTimeoutMs),
              common_http_protocol_options: {
                idle_timeout: seconds(l.idleTimeoutMs),
                headers_with_underscores_action: 'REJECT_REQUEST',
              },
              http2_protocol_options: {
                max_concurrent_streams: l.maxConcurrentStreams,
                initial_stream_window_size: l.initialStreamWindowBytes,
                initial_connection_window_size: l.initialConnectionWindowBytes,
              },
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
      },
    ],
  };
}

/**
 * Admin GET endpoints only, on a listener of its own: Prometheus, `npm start`
 * and `npm run weights` read through it (the weights command reads
 * /clusters, /stats, /config_dump and /server_info and writes only the
 * routes file); nobody can change anything through it.
 */
function adminViewListener(view: Endpoint) {
  const readOnly = ['/stats', '/config_dump', '/clusters', '/listeners', '/ready', '/server_info'];
  return {
    name: LISTENER.adminView,
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
  const l = limitsOf(o);
  return {
    name,
    type: o.discovery === 'dns' ? 'STRICT_DNS' : 'STATIC',
    per_connection_buffer_limit_bytes: l.connectionBufferBytes,
    // STRICT_DNS re-resolves every 5 s by default (dns_refresh_rate is deprecated on Cluster in 1.40).
    ...(o.discovery === 'dns' ? { dns_lookup_family: 'V4_ONLY' } : {}),
    connect_timeout: '1s',
    lb_policy: 'ROUND_ROBIN',
    typed_extension_protocol_options: {
      'envoy.extensions.upstreams.http.v3.HttpProtocolOptions': {
        '@type': TYPE.httpOptions,
        explicit_http_config: {
          http2_protocol_options: {
            initial_stream_window_size: l.initialStreamWindowBytes,
            initial_connection_window_size: l.initialConnectionWindowBytes,
          },
        },
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

/**
 * Runtime overrides (layered_runtime), each with its reason.
 *
 * - `http.max_requests_per_io_cycle`: Envoy's defence against HTTP/2 rapid
 *   reset (CVE-2023-44487): new streams taken from one connection per
 *   event-loop turn, so a flood of opened-and-reset streams cannot starve
 *   other connections.
 * - `overload.premature_reset_total_stream_count`: its other defence closes a
 *   connection once half of 500 streams were reset by the client within a
 *   second; a client whose short deadlines expire does exactly that, and lost
 *   every call in flight on the connection (RST_STREAM / GOAWAY INTERNAL).
 *   Off (a count never reached); the per-cycle cap, the stream cap and the
 *   overload manager bound the attack instead.
 * - `http2_use_oghttp2`: nghttp2 has its own RST_STREAM rate limit (1000, then
 *   33/s) that closed such a client's connection with GOAWAY INTERNAL_ERROR;
 *   oghttp2, Envoy's other HTTP/2 codec, leaves that decision to the above.
 * - `re2.max_program_size.*`: room for USER_ID_PATTERN.
 */
function runtime(l: EnvoyLimits) {
  return {
    layers: [
      {
        name: 'static',
        static_layer: {
          'http.max_requests_per_io_cycle': l.maxRequestsPerIoCycle,
          'overload.premature_reset_total_stream_count': 4294967295,
          'envoy.reloadable_features.http2_use_oghttp2': true,
          // USER_ID_PATTERN's {1,128} compiles to a 257-instruction RE2 program (the default cap is 100).
          're2.max_program_size.error_level': 1024,
          're2.max_program_size.warn_level': 1024,
        },
      },
    ],
  };
}

/**
 * The overload manager: a cap on downstream connections, and heap-based
 * actions against `maxHeapBytes` (Envoy 1.40 overload manager): shrink the
 * heap from 90%, reset the streams holding the most buffered memory from
 * 85% (more of them as the heap nears 95%), shorten idle timeouts from 80%,
 * and refuse new requests (503) from 95%.
 */
function overloadManager(l: EnvoyLimits) {
  const heap = 'envoy.resource_monitors.fixed_heap';
  return {
    refresh_interval: '0.25s',
    resource_monitors: [
      {
        name: 'envoy.resource_monitors.global_downstream_max_connections',
        typed_config: {
          '@type': TYPE.downstreamConnections,
          max_active_downstream_connections: l.maxDownstreamConnections,
        },
      },
      { name: heap, typed_config: { '@type': TYPE.fixedHeap, max_heap_size_bytes: l.maxHeapBytes } },
    ],
    actions: [
      {
        name: 'envoy.overload_actions.shrink_heap',
        triggers: [{ name: heap, threshold: { value: 0.9 } }],
      },
      {
        name: 'envoy.overload_actions.reset_high_memory_stream',
        triggers: [{ name: heap, scaled: { scaling_threshold: 0.85, saturation_threshold: 0.95 } }],
      },
      {
        name: 'envoy.overload_actions.reduce_timeouts',
        triggers: [{ name: heap, scaled: { scaling_threshold: 0.8, saturation_threshold: 0.95 } }],
        typed_config: {
          '@type': 'type.googleapis.com/envoy.config.overload.v3.ScaleTimersOverloadActionConfig',
          timer_scale_factors: [
            { timer: 'HTTP_DOWNSTREAM_CONNECTION_IDLE', min_scale: { value: 10 } },
            { timer: 'HTTP_DOWNSTREAM_STREAM_IDLE', min_scale: { value: 10 } },
          ],
        },
      },
      {
        name: 'envoy.overload_actions.stop_accepting_requests',
        triggers: [{ name: heap, threshold: { value: 0.95 } }],
      },
    ],
    // Track per-stream buffer memory from 1 MiB up, for reset_high_memory_stream.
    buffer_factory_config: { minimum_account_to_track_power_of_two: 20 },
  };
}

/** The Envoy bootstrap for the given addresses and paths. */
export function bootstrap(o: BootstrapOptions) {
  if (o.adminSocket && o.adminView) {
    throw new Error('adminSocket serves `admin` as the read-only view; do not also set adminView');
  }
  const l = limitsOf(o);
  const view = o.adminSocket ? o.admin : o.adminView;
  const listeners = [
    ingressListener(o, 'public'),
    ...(o.qaListener ? [ingressListener(o, 'qa')] : []),
    ...(view ? [adminViewListener(view)] : []),
  ];
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
  const adminAddress = o.adminSocket ? pipeAddress(o.adminSocket) : socketAddress(o.admin);
  if (view) {
    clusters.push({
      name: CLUSTER.admin,
      type: 'STATIC',
      connect_timeout: '1s',
      load_assignment: {
        cluster_name: CLUSTER.admin,
        endpoints: [{ lb_endpoints: [{ endpoint: { address: adminAddress } }] }],
      },
    });
  }
  return {
    node: { id: 'inference-ab', cluster: 'inference-ab' },
    admin: { address: adminAddress },
    static_resources: { listeners, clusters },
    layered_runtime: runtime(l),
    overload_manager: overloadManager(l),
  };
}

function dirnameOf(path: string): string {
  const i = path.lastIndexOf('/');
  if (i < 0) return '.';
  return i === 0 ? '/' : path.slice(0, i);
}
