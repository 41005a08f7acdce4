/**
 * Where the deployment tooling finds the project and keeps its state. Compiled
 * to dist/scripts/lib/deploy/, four levels below the repository root.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const PROJECT_ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
/** Tools built by scripts/bootstrap.mjs (kubectl, helm, kube-apiserver, docker-compose, grpcurl). */
export const TOOLS_BIN = join(PROJECT_ROOT, '.tools', 'bin');
/** Downloads and build contexts of the deployment tooling (not committed). */
export const DEPLOY_CACHE = join(PROJECT_ROOT, '.tools', 'deploy');
/** The Helm chart. */
export const CHART_DIR = join(PROJECT_ROOT, 'deploy', 'helm', 'inference-ab');

export function tool(name: string): string {
  return join(TOOLS_BIN, name);
}
