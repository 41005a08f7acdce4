/**
 * Writes the committed Envoy files (envoy/envoy.yaml, envoy/envoy.docker.yaml,
 * envoy/routes/routes.yaml) from scripts/envoy/config.ts, or with `--check`
 * reports which ones differ from a fresh rendering and exits 1.
 *
 *   node dist/scripts/envoy-config.js [--check]
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { committedEnvoyFiles, writeFileAtomic } from './envoy/files.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

async function main(): Promise<void> {
  const check = process.argv.includes('--check');
  const stale: string[] = [];
  for (const [rel, text] of Object.entries(committedEnvoyFiles())) {
    const path = join(ROOT, rel);
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
      `envoy files out of date: ${stale.join(', ')}; run: node dist/scripts/envoy-config.js\n`,
    );
    process.exit(1);
  }
  process.stdout.write(
    stale.length === 0
      ? 'envoy files are up to date\n'
      : `${check ? 'stale' : 'wrote'}: ${stale.join(', ')}\n`,
  );
}

await main();
