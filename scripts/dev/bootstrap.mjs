#!/usr/bin/env node
// `npm run bootstrap`: installs what is missing, idempotently (node_modules, the
// Python venv with Envoy, the Go tools). The steps and their stamps are in
// scripts/lib/dev/bootstrap.mjs; `--help` lists the options.
import { bootstrap, USAGE } from '../lib/dev/bootstrap.mjs';
import { flagsOrExit } from '../lib/dev/flags.mjs';
import { isMain } from '../lib/dev/project.mjs';

if (isMain(import.meta.url)) {
  const flags = flagsOrExit('bootstrap', USAGE, ['--node', '--quiet']);
  if (typeof flags === 'number') {
    process.exitCode = flags;
  } else {
    bootstrap({ nodeOnly: flags.has('--node'), quiet: flags.has('--quiet') }).catch((err) => {
      process.stderr.write(`[bootstrap] failed: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    });
  }
}
