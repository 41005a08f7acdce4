/**
 * Where everything of one local stack (`npm start`) lives and on which
 * ports: the committed layout at the repository root, or a shifted one (a
 * port offset, a state directory) for a second stack or a test.
 */
import { isAbsolute, join, relative, resolve } from 'node:path';
import { type BootstrapOptions, LOCAL_BOOTSTRAP } from '../envoy/config.js';
import { bootstrapText } from '../envoy/files.js';
import { PROJECT_ROOT } from '../paths.js';

/** The arms of the A/B stack, in the order they start. */
export const ROLES = ['stable', 'canary'] as const;
export type Role = (typeof ROLES)[number];

/** One server of the stack. */
export interface ServerSlot {
  readonly role: Role;
  readonly grpcPort: number;
  readonly metricsPort: number;
  readonly logDir: string;
}

export interface StackLayout {
  /** The Envoy bootstrap to run: the committed envoy/envoy.yaml, or a rendering for other ports. */
  readonly envoyConfig: string;
  /** Written to `envoyConfig` when set; undefined when the committed file is used as is. */
  readonly rendered?: string;
  readonly bootstrap: BootstrapOptions;
  readonly routesPath: string;
  readonly adminAddressPath: string;
  /** Envoy's access log goes here. */
  readonly envoyLogDir: string;
  readonly servers: Readonly<Record<Role, ServerSlot>>;
}

/** The highest port offset that keeps every port of the stack at most 65535. */
export const MAX_PORT_OFFSET = 65535 - 50052;

/**
 * The default stack runs the committed envoy/envoy.yaml from the repository
 * root, with the live routes in envoy/run/routes/ and logs in logs/. With a
 * port offset or a state directory (tests, a second stack next to the first),
 * every port moves by the offset and the bootstrap is rendered into the state
 * directory with absolute paths.
 */
export function stackLayout(o: { portOffset: number; stateDir?: string }): StackLayout {
  const committed = o.portOffset === 0 && o.stateDir === undefined;
  const dir = committed
    ? PROJECT_ROOT
    : resolve(PROJECT_ROOT, o.stateDir ?? join('envoy', 'run', `offset-${o.portOffset}`));
  const logs = join(dir, 'logs');
  const slot = (role: Role, i: number): ServerSlot => ({
    role,
    grpcPort: 50051 + i + o.portOffset,
    metricsPort: 9464 + i + o.portOffset,
    logDir: join(logs, role),
  });
  const servers = { stable: slot('stable', 0), canary: slot('canary', 1) };
  if (committed) {
    return {
      envoyConfig: join(PROJECT_ROOT, 'envoy', 'envoy.yaml'),
      bootstrap: LOCAL_BOOTSTRAP,
      routesPath: join(PROJECT_ROOT, LOCAL_BOOTSTRAP.routesPath),
      adminAddressPath: join(PROJECT_ROOT, 'envoy', 'run', 'admin-address'),
      envoyLogDir: join(logs, 'envoy'),
      servers,
    };
  }
  const bootstrap: BootstrapOptions = {
    ...LOCAL_BOOTSTRAP,
    listener: { host: '127.0.0.1', port: LOCAL_BOOTSTRAP.listener.port + o.portOffset },
    admin: { host: '127.0.0.1', port: LOCAL_BOOTSTRAP.admin.port + o.portOffset },
    qaListener: { host: '127.0.0.1', port: (LOCAL_BOOTSTRAP.qaListener?.port ?? 8081) + o.portOffset },
    adminSocket: join(dir, 'admin.sock'),
    stable: { host: '127.0.0.1', port: servers.stable.grpcPort },
    canary: { host: '127.0.0.1', port: servers.canary.grpcPort },
    routesPath: join(dir, 'routes', 'routes.yaml'),
    accessLog: join(logs, 'envoy', 'access.log'),
  };
  return {
    envoyConfig: join(dir, 'envoy.yaml'),
    rendered: bootstrapText(bootstrap, `npm start -- --port-offset ${o.portOffset}`),
    bootstrap,
    routesPath: bootstrap.routesPath,
    adminAddressPath: join(dir, 'admin-address'),
    envoyLogDir: join(logs, 'envoy'),
    servers,
  };
}

/** Every port the stack binds, with what it is for (for the busy-port check). */
export function stackPorts(layout: StackLayout): { port: number; what: string }[] {
  return [
    { port: layout.bootstrap.listener.port, what: 'Envoy gRPC listener' },
    ...(layout.bootstrap.qaListener
      ? [{ port: layout.bootstrap.qaListener.port, what: 'Envoy QA listener' }]
      : []),
    { port: layout.bootstrap.admin.port, what: 'Envoy admin (read-only view)' },
    ...ROLES.flatMap((role) => [
      { port: layout.servers[role].grpcPort, what: `${role} server gRPC` },
      { port: layout.servers[role].metricsPort, what: `${role} server metrics` },
    ]),
  ];
}

/** A path as the operator should type it: relative to the repository when inside it. */
export function shown(path: string): string {
  const rel = relative(PROJECT_ROOT, path);
  return rel.startsWith('..') || isAbsolute(rel) ? path : rel;
}
