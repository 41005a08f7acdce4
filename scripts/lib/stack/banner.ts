/**
 * What the local stack prints once it is ready: the endpoints, where the
 * logs are, and commands to try, with the options a shifted stack needs.
 */
import { join, resolve } from 'node:path';
import { AB_OVERRIDE_HEADER, USER_ID_HEADER } from '../../../server/headers.js';
import { DEFAULT_WEIGHTS } from '../envoy/config.js';
import { SEED_RECORD } from '../load/payload.js';
import { PROJECT_ROOT, TOOLS_BIN } from '../paths.js';
import { type Role, type StackLayout, shown } from './layout.js';

/** The last line of the banner, which tests and supervisors wait for. */
export const READY_LINE = 'Ctrl-C stops everything.';

/** The banner, ending with `READY_LINE` and a newline. */
export function readyBanner(
  layout: StackLayout,
  versions: Readonly<Record<Role, string>>,
  seconds: number,
): string {
  const { bootstrap, servers } = layout;
  // `npm start` runs the full bootstrap first, which builds grpcurl into .tools/bin/.
  const grpcurl = shown(join(TOOLS_BIN, 'grpcurl'));
  const request = JSON.stringify({ model: 'conversion', instances: [SEED_RECORD] });
  const admin = `127.0.0.1:${bootstrap.admin.port}`;
  const weightsOptions =
    layout.rendered === undefined
      ? ''
      : ` --admin ${admin} --routes ${shown(layout.routesPath)} --stable-metrics 127.0.0.1:${servers.stable.metricsPort} --canary-metrics 127.0.0.1:${servers.canary.metricsPort}`;
  const reportOptions =
    layout.rendered === undefined ? '' : ` -- --logs ${shown(join(servers.stable.logDir, '..'))}`;
  const server = (role: Role) => {
    const s = servers[role];
    return (
      `  ${role} server    127.0.0.1:${s.grpcPort}  conversion ${versions[role]}  ` +
      `metrics http://127.0.0.1:${s.metricsPort}/metrics  logs ${shown(s.logDir)}/`
    );
  };
  return [
    '',
    `[stack] ready in ${seconds.toFixed(1)} s`,
    `  gRPC via Envoy   127.0.0.1:${bootstrap.listener.port}   stable ${DEFAULT_WEIGHTS.stable}% / canary ${DEFAULT_WEIGHTS.canary}%, sticky per ${USER_ID_HEADER} (${AB_OVERRIDE_HEADER} is ignored here)`,
    ...(bootstrap.qaListener
      ? [
          `  QA via Envoy     127.0.0.1:${bootstrap.qaListener.port}   the same, plus ${AB_OVERRIDE_HEADER}: stable|canary forces an arm`,
        ]
      : []),
    server('stable'),
    server('canary'),
    `  Envoy admin      http://${admin}   read-only (/clusters, /stats, /config_dump)  access log ${shown(join(layout.envoyLogDir, 'access.log'))} (rotated)`,
    ...(bootstrap.adminSocket
      ? [
          `  Envoy admin, full: unix socket ${shown(resolve(PROJECT_ROOT, bootstrap.adminSocket))} (mode 0600: this user only)`,
        ]
      : []),
    '',
    'Try it:',
    `  ${grpcurl} -plaintext -H '${USER_ID_HEADER}: 42' -d '${request}' 127.0.0.1:${bootstrap.listener.port} inference.v1.InferenceService/Predict`,
    `  npm run rollout -- status${weightsOptions}`,
    `  npm run weights -- 25${weightsOptions}`,
    `  npm run ab-report${reportOptions}`,
    '',
    READY_LINE,
    '',
  ].join('\n');
}
