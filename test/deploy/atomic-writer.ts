/**
 * How the kubelet projects a ConfigMap volume into a pod (its AtomicWriter,
 * pkg/volume/util/atomic_writer.go): the files live in a timestamped directory
 * `..<timestamp>`, `..data` links to it, and each key is a link `<key> ->
 * ..data/<key>`. An update writes a new timestamped directory, points a link
 * `..data_tmp` at it, renames `..data_tmp` over `..data` (one atomic rename in
 * the watched directory), then removes the old directory.
 *
 * This stands in for the kubelet only (no kubelet runs here); the files Envoy
 * reads and the rename it must notice are the same.
 */
import { mkdirSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

let counter = 0;

function timestampDir(): string {
  const t = new Date().toISOString().replace(/[-:]/g, '_').replace('T', '_').replace('Z', '');
  return `..${t}.${process.pid}${counter++}`;
}

/** Writes (or replaces) the projected files of a ConfigMap in `dir`. */
export function projectConfigMap(dir: string, data: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  const next = timestampDir();
  mkdirSync(join(dir, next));
  for (const [key, text] of Object.entries(data)) writeFileSync(join(dir, next, key), text);
  let previous: string | undefined;
  try {
    previous = readlinkSync(join(dir, '..data'));
  } catch {
    previous = undefined;
  }
  symlinkSync(next, join(dir, '..data_tmp'));
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  for (const key of Object.keys(data)) {
    try {
      symlinkSync(join('..data', key), join(dir, key));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  if (previous) rmSync(join(dir, previous), { recursive: true, force: true });
}
