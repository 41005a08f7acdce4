/**
 * Writes the committed Envoy files (envoy/envoy.yaml, envoy/envoy.docker.yaml,
 * envoy/routes/routes.yaml) from scripts/lib/envoy/config.ts, or with `--check`
 * reports which ones differ from a fresh rendering and exits 1.
 *
 *   node dist/scripts/ops/envoy-config.js [--check]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runIfMain } from '../lib/cli.js';
import { committedEnvoyFiles, writeFileAtomic } from '../lib/envoy/files.js';
import { PROJECT_ROOT } from '../lib/paths.js';

async function main(): Promise<void> {
  const check = process.argv.includes('--check');
  const stale: string[] = [];
  for (const [rel, text] of Object.entries(committedEnvoyFiles())) {
    const path = join(PROJECT_ROOT, rel);
    let current = '';
    try {
      current = readFileSync(path, 'utf8');
    } catch {
      // missing: stale
    }
    if (current === text) continue;
    stale.push(rel);
    if (!check) await writeFileAtomic(path, text);
  }
  if (check && stale.length > 0) {
    process.stderr.write(
      `envoy files out of date: ${stale.join(', ')}; run: node dist/scripts/ops/envoy-config.js\n`,
    );
    process.exit(1);
  }
  process.stdout.write(
    stale.length === 0
      ? 'envoy files are up to date\n'
      : `${check ? 'stale' : 'wrote'}: ${stale.join(', ')}\n`,
  );
}

runIfMain(import.meta.url, 'envoy-config', async () => {
  await main();
  return 0;
});
