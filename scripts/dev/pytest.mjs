#!/usr/bin/env node
// Runs the Python pipeline's pytest suite (test/pipeline/) in the project venv; part of `npm test`.
//   node scripts/dev/pytest.mjs [pytest args...]
// Every argument goes to pytest; `--help` prints this line, then pytest's own help.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { isMain, ROOT } from '../lib/dev/project.mjs';

if (isMain(import.meta.url)) {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(
      "Usage: node scripts/dev/pytest.mjs [pytest args...]\n\nRuns test/pipeline with the venv's pytest; the arguments are pytest's:\n\n",
    );
  }
  const r = spawnSync(
    join(ROOT, '.venv', 'bin', 'python'),
    ['-m', 'pytest', '-q', 'test/pipeline', ...args],
    {
      cwd: ROOT,
      stdio: 'inherit',
    },
  );
  process.exit(r.status ?? 1);
}
