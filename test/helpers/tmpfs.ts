/**
 * A small tmpfs for tests of a full disk (`mount -t tmpfs`, so the tests need
 * root, which the development machines and CI give them), and a filler that
 * takes every free byte and gives it back.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statfsSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Tmpfs {
  readonly dir: string;
  /** Takes every free byte (a filler file, written until ENOSPC). */
  fill(): void;
  /** Removes the filler. */
  free(): void;
  /** Free bytes now. */
  available(): number;
  unmount(): void;
}

/** True when this process may mount file systems (root). */
export function canMount(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** Mounts a tmpfs of `sizeBytes` at a fresh temp dir. */
export function mountTmpfs(sizeBytes: number): Tmpfs {
  const dir = mkdtempSync(join(tmpdir(), 'tmpfs-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=1777`, 'tmpfs', dir], {
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`mount -t tmpfs failed: ${r.stderr || r.error?.message}`);
  const filler = join(dir, '.filler');
  return {
    dir,
    fill() {
      const fd = openSync(filler, 'a');
      const chunk = Buffer.alloc(64 * 1024, 0x2e);
      try {
        for (;;) writeSync(fd, chunk);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      }
      // The last partial chunk: byte by byte, so not even a short line fits.
      try {
        for (;;) writeSync(fd, chunk.subarray(0, 1));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
      } finally {
        closeSync(fd);
      }
    },
    free() {
      rmSync(filler, { force: true });
    },
    available() {
      const s = statfsSync(dir);
      return s.bavail * s.bsize;
    },
    unmount() {
      spawnSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
