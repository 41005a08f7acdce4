#!/usr/bin/env node
// `npm run bootstrap`: installs what is missing, idempotently (node_modules, the
// Python venv with Envoy, the Go tools). The steps and their stamps are in
// scripts/lib/dev/bootstrap.mjs; `--help` lists the options. `--deploy` adds what
// `npm run test:deploy` needs (scripts/lib/deploy/prerequisites.mjs).
import { pathToFileURL } from 'node:url';
import { deployPrerequisites } from '../lib/deploy/prerequisites.mjs';
import { USAGE as BOOTSTRAP_USAGE, bootstrap } from '../lib/dev/bootstrap.mjs';

const USAGE = `${BOOTSTRAP_USAGE}  --deploy  also the deployment test's prerequisites (podman, etcd, promtool,
            kube-apiserver, kubectl, helm; Debian packages need root)
`;

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2);
  const unknown = argv.filter((a) => !['--node', '--quiet', '--deploy', '--help', '-h'].includes(a));
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
  } else if (unknown.length > 0) {
    process.stderr.write(`bootstrap: unknown option ${unknown[0]}\n${USAGE}`);
    process.exitCode = 2;
  } else {
    const quiet = argv.includes('--quiet');
    bootstrap({ nodeOnly: argv.includes('--node'), quiet })
      .then(() => {
        if (argv.includes('--deploy')) deployPrerequisites({ quiet });
      })
      .catch((err) => {
        process.stderr.write(`[bootstrap] failed: ${err instanceof Error ? err.message : String(err)}\n`);
        process.exitCode = 1;
      });
  }
}
