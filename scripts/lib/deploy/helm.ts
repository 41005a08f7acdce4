/** Helm (built by scripts/dev/bootstrap.mjs --deploy) on the project's chart. */
import { type ExecOptions, exec, execOk } from './exec.js';
import { CHART_DIR, tool } from './paths.js';

export const KUBE_VERSION = 'v1.37.2';

export function helm(args: readonly string[], o: ExecOptions = {}): Promise<string> {
  return execOk(tool('helm'), args, { timeoutMs: 120_000, ...o });
}

export function helmResult(args: readonly string[], o: ExecOptions = {}) {
  return exec(tool('helm'), args, { timeoutMs: 120_000, ...o });
}

/** `helm template <release> <chart> -n <ns> [-f values…] [--set …]` rendered for Kubernetes 1.37. */
export function helmTemplate(
  release: string,
  namespace: string,
  o: {
    readonly values?: readonly string[];
    readonly set?: readonly string[];
    readonly apiVersions?: readonly string[];
  } = {},
): Promise<string> {
  return helm([
    'template',
    release,
    CHART_DIR,
    '--namespace',
    namespace,
    '--kube-version',
    KUBE_VERSION,
    ...(o.values ?? []).flatMap((f) => ['-f', f]),
    ...(o.set ?? []).flatMap((s) => ['--set', s]),
    ...(o.apiVersions ?? []).flatMap((a) => ['--api-versions', a]),
  ]);
}
