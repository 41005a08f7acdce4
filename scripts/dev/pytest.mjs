#!/usr/bin/env node
// Runs the Python pipeline's pytest suite (test/pipeline/) in the project venv; part of `npm test`.
//   node scripts/dev/pytest.mjs [pytest args...]
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const root = new URL('../..', import.meta.url).pathname;

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const r = spawnSync(
    join(root, '.venv', 'bin', 'python'),
    ['-m', 'pytest', '-q', 'test/pipeline', ...process.argv.slice(2)],
    { cwd: root, stdio: 'inherit' },
  );
  process.exit(r.status ?? 1);
}
