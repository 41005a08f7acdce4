/**
 * Publishes one trained version into a model repository that a server polls:
 *
 *     npm run publish-model -- <version dir> --to <model repository> [--dry-run]
 *
 * `<version dir>` is `…/<name>/<version>/` as the pipeline writes it. Steps:
 *
 * 1. Validate the source with the server's own loader (`ModelVersion.load`):
 *    manifest schema and name/version, sha256 of model.onnx, ONNX Runtime load,
 *    graph signature, golden replay to 1e-5. Publishing also requires
 *    golden.json (the server would otherwise only run a smoke row) and a
 *    well-formed qa.json when there is one. Only regular files and directories
 *    are published.
 * 2. Copy into a temp directory the server ignores, fsync the files, validate
 *    the copy again (so what goes live is exactly what passed), then rename it
 *    into place in one step. For an existing model the temp directory is
 *    `<repo>/<name>/.tmp-publish-<version>-<pid>-*`. For a model the
 *    repository does not have yet it is `<repo>/.tmp-publish-<name>-<version>-<pid>-*`
 *    holding `<version>/`, renamed to `<repo>/<name>`: the server counts every
 *    model directory it sees towards readiness, so an empty `<name>/` would mark
 *    it NOT_SERVING while the copy runs.
 * 3. Never overwrite: an existing `<repo>/<name>/<version>` is refused.
 *
 * Whatever fails, the temp directory is removed and the repository is left as
 * it was. Progress goes to stderr; on success the published directory is the
 * only line on stdout.
 *
 * Exit codes:
 *   0  published (or, with --dry-run, would be published)
 *   1  the version is invalid; nothing was written
 *   2  usage: bad arguments, or the source or repository is missing
 *   3  the version already exists in the repository; nothing was written
 *   4  I/O failure while copying or renaming; the temp directory was removed
 */
import { constants, rmSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { VERSION_PATTERN } from '../../server/model-manifest.js';
import { ModelLoadError, ModelVersion } from '../../server/model-version.js';
import { MODEL_NAME } from '../../server/request-validation.js';
import { parseCommandLine } from '../lib/args.js';
import { optionsOrExit, runIfMain, UsageError } from '../lib/cli.js';
import { parseQaFile, QaFileError } from '../lib/qa-file.js';

const EXIT = { ok: 0, invalid: 1, usage: 2, exists: 3, io: 4 } as const;

const USAGE = `usage: npm run publish-model -- <version dir> --to <model repository> [--dry-run]

  <version dir>   .../<name>/<YYYYMMDDTHHMMSSZ>/ as written by scripts/pipeline/train.py
  --to DIR        the repository root a server polls (MODEL_ROOT); must exist
  --dry-run       validate and check the target, write nothing

exit codes: 0 published, 1 invalid version, 2 usage, 3 version exists, 4 I/O failure`;

/** A failure with the exit code it maps to. */
class PublishError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'PublishError';
  }
}

function say(line: string): void {
  process.stderr.write(`publish-model: ${line}\n`);
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

interface Tree {
  /** Relative paths of directories (parents first) and of regular files. */
  readonly dirs: string[];
  readonly files: string[];
  readonly bytes: number;
}

/** Lists the version directory, refusing symlinks and special files: only plain files get published. */
async function listTree(root: string): Promise<Tree> {
  const tree: Tree = { dirs: [], files: [], bytes: 0 };
  let bytes = 0;
  const walk = async (rel: string): Promise<void> => {
    for (const ent of await readdir(join(root, rel), { withFileTypes: true })) {
      const r = rel === '' ? ent.name : join(rel, ent.name);
      if (ent.isDirectory()) {
        tree.dirs.push(r);
        await walk(r);
      } else if (ent.isFile()) {
        tree.files.push(r);
        bytes += (await stat(join(root, r))).size;
      } else {
        throw new PublishError(
          EXIT.invalid,
          `${r} is not a regular file or directory; refusing to publish it`,
        );
      }
    }
  };
  await walk('');
  return { ...tree, bytes };
}

/** fsync a file or directory. Directory fsync is not supported everywhere (Windows): best effort there. */
async function fsyncPath(path: string, isDir: boolean): Promise<void> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(path, 'r');
    await fh.sync();
  } catch (err) {
    if (!isDir) throw err;
  } finally {
    await fh?.close();
  }
}

/** Copies `tree` from `src` into `dst`, which must exist and be empty, then fsyncs what it wrote. */
async function copyTree(src: string, dst: string, tree: Tree): Promise<void> {
  for (const d of tree.dirs) await mkdir(join(dst, d));
  for (const f of tree.files) {
    await copyFile(join(src, f), join(dst, f), constants.COPYFILE_EXCL);
    await fsyncPath(join(dst, f), false);
  }
  for (const d of [...tree.dirs].reverse()) await fsyncPath(join(dst, d), true);
  await fsyncPath(dst, true);
}

interface Validated {
  family: string;
  threshold: number;
  auc: number | undefined;
  goldenCases: number;
  qaCases: number | undefined;
}

/** Every check the server makes on load, plus the ones publishing adds. Throws PublishError(invalid). */
async function validate(dir: string, name: string, version: string): Promise<Validated> {
  let goldenCases: number;
  try {
    const golden = JSON.parse(await readFile(join(dir, 'golden.json'), 'utf8')) as { cases?: unknown };
    goldenCases = Array.isArray(golden.cases) ? golden.cases.length : 0;
  } catch (err) {
    const why =
      (err as NodeJS.ErrnoException).code === 'ENOENT'
        ? 'golden.json is missing; publishing requires golden vectors for the server to replay'
        : `golden.json is unreadable: ${(err as Error).message}`;
    throw new PublishError(EXIT.invalid, why);
  }

  let qaCases: number | undefined;
  try {
    const qa = parseQaFile(JSON.parse(await readFile(join(dir, 'qa.json'), 'utf8')));
    if (qa.model !== name || qa.version !== version) {
      throw new QaFileError(`it is for ${qa.model} ${qa.version}, not ${name} ${version}`);
    }
    qaCases = qa.cases.length;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new PublishError(EXIT.invalid, `qa.json is invalid: ${(err as Error).message}`);
    }
  }

  let loaded: ModelVersion;
  try {
    // One intra-op thread, as the server's default: validation must not starve a shared machine.
    loaded = await ModelVersion.load(dir, { name, version }, { intraOpThreads: 1 });
  } catch (err) {
    const why = err instanceof ModelLoadError ? err.message : `loading failed: ${String(err)}`;
    throw new PublishError(EXIT.invalid, why);
  }
  const m = loaded.manifest;
  await loaded.retire();
  return { family: m.family, threshold: m.threshold, auc: m.metrics.auc, goldenCases, qaCases };
}

/** The temp directory of the publish in progress, so every exit path (and a signal) can remove it. */
let staging: string | undefined;

async function publish(sourceArg: string, repoArg: string, dryRun: boolean): Promise<string> {
  const t0 = performance.now();
  const source = resolve(sourceArg);
  const repo = resolve(repoArg);
  const version = basename(source);
  const name = basename(dirname(source));
  if (!VERSION_PATTERN.test(version)) {
    throw new PublishError(
      EXIT.usage,
      `${sourceArg}: the directory name "${version}" is not a version (YYYYMMDDTHHMMSSZ); pass .../<name>/<version>`,
    );
  }
  if (!MODEL_NAME.test(name)) {
    throw new PublishError(
      EXIT.usage,
      `${sourceArg}: the parent directory "${name}" is not a valid model name`,
    );
  }
  if (!(await isDirectory(source))) throw new PublishError(EXIT.usage, `${sourceArg} is not a directory`);
  if (!(await isDirectory(repo))) {
    throw new PublishError(EXIT.usage, `--to ${repoArg} is not a directory; create the repository first`);
  }
  const modelDir = join(repo, name);
  const target = join(modelDir, version);
  if (await exists(target)) {
    throw new PublishError(
      EXIT.exists,
      `${target} already exists; versions are immutable, retrain to publish anew`,
    );
  }

  const tree = await listTree(source);
  say(
    `source  ${source} (${name} ${version}, ${tree.files.length} files, ${(tree.bytes / 1024).toFixed(0)} KiB)`,
  );
  say(`target  ${target}`);
  say('validating: manifest, sha256, ONNX Runtime load, signature, golden replay, qa.json');
  const v = await validate(source, name, version);
  say(
    `valid: family ${v.family}, threshold ${v.threshold}, auc ${v.auc ?? 'n/a'}, ` +
      `${v.goldenCases} golden vectors reproduced to 1e-5, ` +
      (v.qaCases === undefined ? 'no qa.json' : `qa.json with ${v.qaCases} cases`),
  );
  if (dryRun) {
    say('dry run: nothing written');
    return target;
  }

  const newModel = !(await isDirectory(modelDir));
  let stagedVersion: string;
  let from: string;
  let to: string;
  try {
    if (newModel) {
      staging = await mkdtemp(join(repo, `.tmp-publish-${name}-${version}-${process.pid}-`));
      stagedVersion = join(staging, version);
      await mkdir(stagedVersion);
      [from, to] = [staging, modelDir];
    } else {
      staging = await mkdtemp(join(modelDir, `.tmp-publish-${version}-${process.pid}-`));
      stagedVersion = staging;
      [from, to] = [staging, target];
    }
    say(`copying into ${relative(repo, stagedVersion)}`);
    await copyTree(source, stagedVersion, tree);
  } catch (err) {
    throw err instanceof PublishError
      ? err
      : new PublishError(EXIT.io, `copy failed: ${(err as Error).message}`);
  }

  say('validating the copy');
  try {
    await validate(stagedVersion, name, version);
  } catch (err) {
    const why = err instanceof PublishError ? err.message : String(err);
    throw new PublishError(
      EXIT.invalid,
      `the copy failed validation (was the source modified meanwhile?): ${why}`,
    );
  }

  const refuseRace = () =>
    new PublishError(EXIT.exists, `${target} appeared while publishing; refusing to overwrite it`);
  const taken = (err: unknown) => ['ENOTEMPTY', 'EEXIST'].includes((err as NodeJS.ErrnoException).code ?? '');
  try {
    await rename(from, to);
    staging = undefined; // renamed into place: nothing left to clean up
  } catch (err) {
    if (!taken(err)) throw new PublishError(EXIT.io, `rename failed: ${(err as Error).message}`);
    // Another publish created the model directory (or this very version) meanwhile.
    if (!newModel) throw refuseRace();
    try {
      await rename(stagedVersion, target); // the emptied temp directory is removed in main's finally
    } catch (err2) {
      if (taken(err2)) throw refuseRace();
      throw new PublishError(EXIT.io, `rename failed: ${(err2 as Error).message}`);
    }
  }
  await fsyncPath(modelDir, true);
  if (newModel) await fsyncPath(repo, true);
  say(`published ${name} ${version} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return target;
}

interface Options {
  readonly source: string;
  readonly to: string;
  readonly dryRun: boolean;
  readonly help: boolean;
}

function parseCli(argv: readonly string[]): Options {
  const { values, positionals } = parseCommandLine(
    argv,
    { to: { type: 'string' }, 'dry-run': { type: 'boolean' } },
    true,
  );
  const help = values.help === true;
  const [source, ...extra] = positionals;
  if (!help) {
    if (source === undefined) throw new UsageError('missing <version dir>.');
    if (extra.length > 0) throw new UsageError(`unexpected ${extra.join(' ')}: give one <version dir>.`);
    if (values.to === undefined) throw new UsageError('missing --to <model repository>.');
  }
  return { source: source ?? '', to: values.to ?? '', dryRun: values['dry-run'] === true, help };
}

async function main(argv: readonly string[]): Promise<number> {
  const opts = optionsOrExit({ name: 'publish-model', usage: USAGE, parse: parseCli }, argv);
  if (typeof opts === 'number') return opts;

  // A Ctrl-C mid-copy must not leave a temp directory behind.
  const onSignal = (signal: NodeJS.Signals) => {
    if (staging) rmSync(staging, { recursive: true, force: true });
    say(`interrupted by ${signal}; nothing published`);
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    const target = await publish(opts.source, opts.to, opts.dryRun);
    process.stdout.write(`${target}\n`);
    return EXIT.ok;
  } catch (err) {
    const code = err instanceof PublishError ? err.exitCode : EXIT.io;
    const verb = code === EXIT.usage ? 'error' : code === EXIT.io ? 'failed' : 'refused';
    say(`${verb}: ${err instanceof PublishError ? err.message : String(err)}`);
    say(code === EXIT.io ? 'the repository was left as it was' : 'nothing was written to the repository');
    return code;
  } finally {
    if (staging) await rm(staging, { recursive: true, force: true }).catch(() => undefined);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

runIfMain(import.meta.url, 'publish-model', main);
