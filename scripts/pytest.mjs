#!/usr/bin/env node
// Runs the Python pipeline's pytest suite in the project venv (part of `npm test`).
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const r = spawnSync(join(root, '.venv', 'bin', 'python'), ['-m', 'pytest', '-q', 'scripts/tests'], {
  cwd: root,
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
