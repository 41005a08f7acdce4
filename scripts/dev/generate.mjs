#!/usr/bin/env node
// Regenerates server/generated/ from proto/ with buf + ts-proto (buf.gen.yaml),
// plus descriptors.binpb, the FileDescriptorSet that server reflection serves.
// The generated code is committed; `--check` regenerates into a temporary
// directory and fails if the committed copy differs, so the contract and the
// stubs cannot drift apart.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { flagsOrExit } from '../lib/dev/flags.mjs';
import { isMain, ROOT as root } from '../lib/dev/project.mjs';

const buf = join(root, 'node_modules', '.bin', 'buf');

const USAGE = `Usage: node scripts/dev/generate.mjs [--check]   (npm run generate)

Regenerates server/generated/ from proto/ with buf and ts-proto, and the
descriptor set server reflection serves.

  --check   regenerate into a temporary directory and exit 1 if the committed
            copy differs
`;

function listFiles(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...listFiles(p));
    else out.push(p);
  }
  return out.sort();
}

function generate(outBase) {
  const args = ['generate', '--template', 'buf.gen.yaml'];
  if (outBase) args.push('-o', outBase);
  execFileSync(buf, ['lint'], { cwd: root, stdio: 'inherit' });
  execFileSync(buf, args, { cwd: root, stdio: 'inherit' });
  // The exact descriptors (imports and well-known types included) for server
  // reflection; proto-loader's re-serialised descriptors lose map entries.
  const set = join(outBase ?? root, 'server', 'generated', 'descriptors.binpb');
  execFileSync(buf, ['build', '-o', set], { cwd: root, stdio: 'inherit' });
}

function main(check) {
  if (!check) {
    generate();
    console.log('generated server/generated/ from proto/');
  } else {
    const tmp = mkdtempSync(join(tmpdir(), 'gen-check-'));
    try {
      generate(tmp);
      const fresh = join(tmp, 'server', 'generated');
      const committed = join(root, 'server', 'generated');
      const a = listFiles(fresh).map((f) => relative(fresh, f));
      const b = listFiles(committed).map((f) => relative(committed, f));
      const differing = [...new Set([...a, ...b])].filter((f) => {
        try {
          return !readFileSync(join(fresh, f)).equals(readFileSync(join(committed, f)));
        } catch {
          return true;
        }
      });
      if (differing.length > 0) {
        console.error(
          `server/generated/ is stale (${differing.join(', ')}): run \`npm run generate\` and commit.`,
        );
        process.exit(1);
      }
      console.log('server/generated/ matches proto/');
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
}

if (isMain(import.meta.url)) {
  const flags = flagsOrExit('generate', USAGE, ['--check']);
  if (typeof flags === 'number') process.exitCode = flags;
  else main(flags.has('--check'));
}
