#!/usr/bin/env node
// `npm run build`: compiles server/, scripts/ and test/ into dist/ when a source
// changed since the last build (scripts/lib/dev/build.mjs keeps the stamp).
//   node scripts/dev/build.mjs [--force] [--quiet]
import { ensureBuilt } from '../lib/dev/build.mjs';
import { flagsOrExit } from '../lib/dev/flags.mjs';
import { isMain } from '../lib/dev/project.mjs';

const USAGE = `Usage: node scripts/dev/build.mjs [--force] [--quiet]

Compiles server/, scripts/ and test/ into dist/ when a source changed since the
last build (a stamp of every source's size and mtime).

  --force   compile even when nothing changed
  --quiet   print nothing unless tsc fails
`;

if (isMain(import.meta.url)) {
  const flags = flagsOrExit('build', USAGE, ['--force', '--quiet']);
  if (typeof flags === 'number') {
    process.exitCode = flags;
  } else {
    try {
      ensureBuilt({ force: flags.has('--force'), quiet: flags.has('--quiet') });
    } catch (err) {
      process.stderr.write(`[build] ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  }
}
