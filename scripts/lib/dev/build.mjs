// Compiling the TypeScript (server/, scripts/, test/) into dist/ with tsc, only
// when a source changed since the last build. The stamp in dist/.build-stamp is
// a hash of every input's path, size and modification time, so checking a built
// tree costs a few milliseconds and an operator command starts without tsc.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from './project.mjs';

const STAMP = join(ROOT, 'dist', '.build-stamp');
/** What tsconfig.json compiles, plus what changes how it compiles. */
const SOURCE_DIRS = ['server', 'scripts', 'test'];
const CONFIG_FILES = ['tsconfig.json', 'package-lock.json'];

/** Appends to `out` the files below `dir` whose name `want` accepts (TypeScript sources by default). */
function walk(dir, out, want = (name) => name.endsWith('.ts')) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'fixtures' && e.name !== '__pycache__') walk(p, out, want);
    } else if (want(e.name)) out.push(p);
  }
}

/** A hash of every input's path, size and mtime. */
function sourceFingerprint() {
  const files = [];
  for (const d of SOURCE_DIRS) walk(join(ROOT, d), files);
  files.push(...CONFIG_FILES.map((f) => join(ROOT, f)));
  files.sort();
  const h = createHash('sha256');
  for (const f of files) {
    let s;
    try {
      s = statSync(f);
    } catch {
      continue;
    }
    h.update(`${relative(ROOT, f)}\0${s.size}\0${s.mtimeMs}\n`);
  }
  return h.digest('hex');
}

/** What tsc writes for one source: the module, its map, and declarations if any. */
const OUTPUT_SUFFIXES = ['.js', '.js.map', '.d.ts', '.d.ts.map'];

/**
 * Removes what tsc wrote for sources that no longer exist (a moved or deleted
 * .ts file leaves its .js behind, and a test or command could go on running the
 * stale copy). Returns the paths removed, relative to the root.
 */
export function pruneStaleOutputs(root = ROOT) {
  const outputs = [];
  for (const d of SOURCE_DIRS) {
    walk(join(root, 'dist', d), outputs, (name) => OUTPUT_SUFFIXES.some((x) => name.endsWith(x)));
  }
  const removed = [];
  for (const p of outputs) {
    const suffix = OUTPUT_SUFFIXES.find((x) => p.endsWith(x)) ?? '';
    const source = join(root, relative(join(root, 'dist'), p)).slice(0, -suffix.length);
    if (!existsSync(`${source}.ts`)) {
      rmSync(p, { force: true });
      removed.push(relative(root, p));
    }
  }
  return removed;
}

function readStamp() {
  try {
    return readFileSync(STAMP, 'utf8').trim();
  } catch {
    return '';
  }
}

/**
 * Runs tsc when the sources changed since the last successful build (or
 * always with `force`). Returns true when it compiled. Throws when tsc fails,
 * after tsc has printed its errors.
 */
export function ensureBuilt({ force = false, quiet = false } = {}) {
  const want = sourceFingerprint();
  if (!force && readStamp() === want) return false;
  const t0 = Date.now();
  if (!quiet) process.stderr.write('[build] compiling TypeScript (tsc)…\n');
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.json')], {
    cwd: ROOT,
    stdio: 'inherit',
  });
  if (r.status !== 0) throw new Error(`tsc failed (${r.signal ?? `exit ${r.status}`})`);
  mkdirSync(join(ROOT, 'dist'), { recursive: true });
  const stale = pruneStaleOutputs();
  if (stale.length > 0 && !quiet) {
    process.stderr.write(
      `[build] removed ${stale.length} output(s) of deleted sources: ${stale.join(', ')}\n`,
    );
  }
  writeFileSync(STAMP, `${want}\n`);
  if (!quiet) process.stderr.write(`[build] done in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  return true;
}
