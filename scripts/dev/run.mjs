#!/usr/bin/env node
// The launcher behind every `npm run <command>`: installs what is missing
// (scripts/dev/bootstrap.mjs, stamped), compiles when a source changed
// (scripts/dev/build.mjs, stamped), then runs the compiled command in this
// same process, so a command on a built tree starts in well under a second.
//
//   node scripts/dev/run.mjs [--full] <dir/command> [args...]
//     --full   also the venv and the Go tools (Envoy, ghz, hey, Python), not only node_modules
//
// package.json starts it with `exec`, so the shell npm spawns is replaced by
// this process and a SIGTERM that a supervisor sends to `npm` reaches the
// command itself (npm forwards SIGINT and SIGTERM to its child).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { bootstrap } from '../lib/dev/bootstrap.mjs';
import { ensureBuilt } from '../lib/dev/build.mjs';
import { ROOT } from '../lib/dev/project.mjs';

const USAGE = `Usage: node scripts/dev/run.mjs [--full] <dir/command> [args...]

Checks the bootstrap's stamps, compiles when a source changed, then runs
dist/scripts/<dir>/<command>.js in this process with the arguments (every
\`npm run <command>\` goes through here; package.json names the command).

  --full   also the venv and the Go tools (Envoy, ghz, hey, Python), not only node_modules
`;

const argv = process.argv.slice(2);
if (argv[0] === '--help' || argv[0] === '-h') {
  process.stdout.write(USAGE);
  process.exit(0);
}
const full = argv[0] === '--full';
const [command, ...args] = full ? argv.slice(1) : argv;
if (!command || !/^[a-z]+\/[a-z0-9-]+$/.test(command)) {
  process.stderr.write(
    `run: ${command === undefined ? 'missing <dir/command>' : `"${command}" is not a <dir/command>`}.\n` +
      'See: node scripts/dev/run.mjs --help\n',
  );
  process.exit(2);
}
try {
  await bootstrap({ nodeOnly: !full, quiet: true });
  ensureBuilt();
} catch (err) {
  process.stderr.write(`[${command}] cannot start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
const script = join(ROOT, 'dist', 'scripts', `${command}.js`);
if (!existsSync(script)) {
  process.stderr.write(`[${command}] no such command: ${script} does not exist after the build\n`);
  process.exit(2);
}
// The command checks `process.argv[1]` to know it is the program being run.
process.argv = [process.argv[0], script, ...args];
await import(pathToFileURL(script).href);
