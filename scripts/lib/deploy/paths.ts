/** Where the deployment tooling finds its tools and keeps its state (beside scripts/lib/paths.ts). */
import { join } from 'node:path';
import { PROJECT_ROOT, TOOLS_BIN } from '../paths.js';

export { PROJECT_ROOT, TOOLS_BIN };
/** Downloads and build contexts of the deployment tooling (not committed). */
export const DEPLOY_CACHE = join(PROJECT_ROOT, '.tools', 'deploy');
/** The Helm chart. */
export const CHART_DIR = join(PROJECT_ROOT, 'deploy', 'helm', 'inference-ab');

/** A tool built by scripts/dev/bootstrap.mjs (kubectl, helm, kube-apiserver, docker-compose, grpcurl). */
export function tool(name: string): string {
  return join(TOOLS_BIN, name);
}
