/**
 * `npm run envoy-config`: writes the committed Envoy files (envoy/envoy.yaml,
 * envoy/envoy.docker.yaml, envoy/routes/routes.yaml) from
 * scripts/lib/envoy/config.ts, or with `--check` reports which ones differ
 * from a fresh rendering and exits 1.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseCommandLine } from '../lib/args.js';
import { optionsOrExit, runIfMain } from '../lib/cli.js';
import { committedEnvoyFiles, writeFileAtomic } from '../lib/envoy/files.js';
import { PROJECT_ROOT } from '../lib/paths.js';

const USAGE = `Usage: npm run envoy-config [-- --check]

Renders the committed Envoy files (envoy/envoy.yaml, envoy/envoy.docker.yaml,
envoy/routes/routes.yaml) from scripts/lib/envoy/config.ts and writes the ones
that changed.

  --check      write nothing; exit 1 naming the files that are out of date
  -h, --help   this text`;

function parse(argv: readonly string[]): { check: boolean; help: boolean } {
  const { values } = parseCommandLine(argv, { check: { type: 'boolean' } });
  return { check: values.check === true, help: values.help === true };
}

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'envoy-config', usage: USAGE, parse }, argv);
  if (typeof opts === 'number') return opts;
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
    if (!opts.check) await writeFileAtomic(path, text);
  }
  if (opts.check && stale.length > 0) {
    process.stderr.write(`envoy files out of date: ${stale.join(', ')}; run: npm run envoy-config\n`);
    return 1;
  }
  process.stdout.write(
    stale.length === 0
      ? 'envoy files are up to date\n'
      : `${opts.check ? 'stale' : 'wrote'}: ${stale.join(', ')}\n`,
  );
  return 0;
}

runIfMain(import.meta.url, 'envoy-config', main);
