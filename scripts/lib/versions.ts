/**
 * Model versions as the scripts see them in a repository on disk
 * (`<root>/<model>/<YYYYMMDDTHHMMSSZ>/`). The name pattern is the server's
 * (server/model-manifest.ts); this module only lists and orders.
 */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { VERSION_PATTERN } from '../../server/model-manifest.js';

export { VERSION_PATTERN };

/** A version name for `d`: `20261124T042428Z` (UTC, seconds). */
export function versionStamp(d: Date): string {
  return d
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
}

/**
 * The version directories of `modelDir`, oldest first (the names sort by
 * time). Throws naming the directory when it cannot be read.
 */
export function versionsIn(modelDir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(modelDir);
  } catch (err) {
    throw new Error(`cannot list ${modelDir}: ${(err as Error).message}`);
  }
  return names.filter((d) => VERSION_PATTERN.test(d)).sort();
}

/** The newest version of `modelDir`; throws when there is none. */
export function newestVersion(modelDir: string): string {
  const v = versionsIn(modelDir).at(-1);
  if (!v) throw new Error(`${modelDir} has no version directories`);
  return v;
}

/**
 * The two newest versions of a model: the older one for the stable arm, the
 * newer one for the canary. With `requireTwo` false a single version serves
 * both; otherwise fewer than two is an error naming the directory.
 */
export function olderAndNewer(
  modelRoot: string,
  model: string,
  requireTwo = true,
): { older: string; newer: string } {
  const dir = join(modelRoot, model);
  const versions = versionsIn(dir);
  const newer = versions.at(-1);
  const older = versions.at(-2) ?? (requireTwo ? undefined : newer);
  if (!newer || !older) {
    throw new Error(
      `${dir} holds ${versions.length} version(s); the A/B stack needs two (older = stable, newer = canary)`,
    );
  }
  return { older, newer };
}
