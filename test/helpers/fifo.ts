/** FIFOs (named pipes) where a regular file belongs: a reader's plain open() waits for a writer forever. */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, rmSync } from 'node:fs';

/** Replaces `file` with a FIFO. */
export function fifoInPlaceOf(file: string): void {
  rmSync(file, { force: true });
  execFileSync('mkfifo', [file]);
}

/**
 * Opens the FIFO for writing and closes it, so a reader stuck in open() (a
 * loader without the guard) gets EOF and the test process can still exit.
 */
export function releaseFifo(file: string): void {
  try {
    closeSync(openSync(file, constants.O_WRONLY | constants.O_NONBLOCK));
  } catch {
    // ENXIO: no reader is waiting; ENOENT: already gone.
  }
}
