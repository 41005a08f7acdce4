// Fails the image build when `npm install` left node_modules incomplete. Seen
// here: with TLS re-signed by an egress CA the build did not trust, npm printed
// "npm error Exit handler never called!" and exited 0, and the image built.
//
//   node deploy/images/verify-install.mjs [--omit=dev]
//
// Checks every package package-lock.json says this install needs (all but
// optional ones, and dev ones under --omit=dev) at its locked version, then
// imports each production dependency, which loads onnxruntime-node's native
// binding for this platform.
import { existsSync, readFileSync } from 'node:fs';

const omitDev = process.argv.includes('--omit=dev');
const lock = JSON.parse(readFileSync('package-lock.json', 'utf8'));
const problems = [];
let checked = 0;
for (const [path, entry] of Object.entries(lock.packages ?? {})) {
  if (path === '' || entry.optional || entry.link) continue;
  if (omitDev && (entry.dev || entry.devOptional)) continue;
  checked++;
  const manifest = `${path}/package.json`;
  if (!existsSync(manifest)) {
    problems.push(`${path} is missing`);
    continue;
  }
  const { version } = JSON.parse(readFileSync(manifest, 'utf8'));
  if (entry.version && version !== entry.version)
    problems.push(`${path} is ${version}, the lock says ${entry.version}`);
}
if (problems.length > 0) {
  console.error(
    `node_modules is incomplete (${problems.length} of ${checked} packages):\n  ${problems.slice(0, 20).join('\n  ')}`,
  );
  process.exit(1);
}
const { dependencies = {} } = JSON.parse(readFileSync('package.json', 'utf8'));
for (const name of Object.keys(dependencies)) {
  try {
    await import(name);
  } catch (err) {
    console.error(`node_modules: cannot import ${name}: ${err.message}`);
    process.exit(1);
  }
}
console.log(
  `node_modules: ${checked} packages at their locked versions; ${Object.keys(dependencies).length} dependencies import`,
);
