#!/usr/bin/env node
// `npm run build`: compiles server/, scripts/ and test/ into dist/ when a source
// changed since the last build (scripts/lib/dev/build.mjs keeps the stamp).
//   node scripts/dev/build.mjs [--force] [--quiet]
import { pathToFileURL } from 'node:url';
import { ensureBuilt } from '../lib/dev/build.mjs';

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(
      'Usage: node scripts/dev/build.mjs [--force] [--quiet]\n\nCompiles server/, scripts/ and test/ into dist/ when a source changed.\n',
    );
  } else {
    try {
      ensureBuilt({ force: argv.includes('--force'), quiet: argv.includes('--quiet') });
    } catch (err) {
      process.stderr.write(`[build] ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    }
  }
}
