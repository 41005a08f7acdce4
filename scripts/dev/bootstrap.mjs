#!/usr/bin/env node
// `npm run bootstrap`: installs what is missing, idempotently (node_modules, the
// Python venv with Envoy, the Go tools). The steps and their stamps are in
// scripts/lib/dev/bootstrap.mjs; `--help` lists the options. `--deploy` adds what
// `npm run test:deploy` needs (scripts/lib/deploy/prerequisites.mjs).
import { deployPrerequisites } from '../lib/deploy/prerequisites.mjs';
import { USAGE as BOOTSTRAP_USAGE, bootstrap } from '../lib/dev/bootstrap.mjs';
import { flagsOrExit } from '../lib/dev/flags.mjs';
import { isMain } from '../lib/dev/project.mjs';

const USAGE = `${BOOTSTRAP_USAGE.trimEnd()}
  --deploy  also the deployment test's prerequisites (podman, etcd, promtool,
            kube-apiserver, kubectl, helm; Debian packages need root)
`;

if (isMain(import.meta.url)) {
  const flags = flagsOrExit('bootstrap', USAGE, ['--node', '--quiet', '--deploy']);
  if (typeof flags === 'number') {
    process.exitCode = flags;
  } else {
    const quiet = flags.has('--quiet');
    bootstrap({ nodeOnly: flags.has('--node'), quiet })
      .then(() => {
        if (flags.has('--deploy')) deployPrerequisites({ quiet });
      })
      .catch((err) => {
        process.stderr.write(`[bootstrap] failed: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = 1;
      });
  }
}
