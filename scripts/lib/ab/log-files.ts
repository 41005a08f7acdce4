/**
 * Which files the readout reads: the servers' rotated logs and their gzip
 * archives (`logs/<arm>/server.<date>.<n>.log`, `logs/<arm>/archive/*.log.gz`),
 * given as directories or files, and standard input staged to a file so
 * DuckDB can scan it like any other.
 */
import { createWriteStream, lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** Log files under `dir`, recursively: *.log, *.jsonl and their .gz archives; symlinks are skipped. */
export function findLogFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      const st = lstatSync(p);
      // pino-roll keeps a `current.log` symlink to the active file: reading it would count twice.
      if (st.isSymbolicLink()) continue;
      if (st.isDirectory()) walk(p);
      else if (/\.(log|jsonl)(\.gz)?$/.test(name)) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Every log file named by `paths`: directories are walked, files are taken as they are. */
export function expandLogPaths(paths: readonly string[]): string[] {
  const out: string[] = [];
  for (const p of paths) {
    if (lstatSync(p).isDirectory()) out.push(...findLogFiles(p));
    else out.push(p);
  }
  return out;
}

/** Copies `input` to `path` (gzip stays gzip: name the file accordingly). */
export async function stage(input: Readable, path: string): Promise<string> {
  await pipeline(input, createWriteStream(path));
  return path;
}
