/**
 * Reading the files an operator puts in the model repository (model.json,
 * model.onnx, golden.json, labels.json) without ever blocking on them.
 *
 * A plain `open(path, 'r')` of a FIFO waits for a writer forever, on one of
 * libuv's four pool threads: the repository scan never finished, no later
 * version ever loaded, and SIGTERM could not end the process (Node's exit
 * waits for its pool threads), so only SIGKILL did. Opening with O_NONBLOCK
 * returns at once for a FIFO (and changes nothing for a regular file), and
 * the descriptor's own fstat says what was opened, with no window between a
 * check and the open.
 */
import { constants, type Stats } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';

/** The file exists but is not a regular file (a FIFO, a socket, a device, a directory). */
export class NotRegularFileError extends Error {}

/** Exceeds the size limit named by `limitName`; the message says both sizes. */
export class FileTooLargeError extends Error {}

/** What kind of file `fstat` found, for the error message. */
function kindOf(s: Stats): string {
  if (s.isFIFO()) return 'a FIFO (named pipe)';
  if (s.isSocket()) return 'a socket';
  if (s.isCharacterDevice() || s.isBlockDevice()) return 'a device';
  if (s.isDirectory()) return 'a directory';
  return 'a special file';
}

/**
 * Opens `path` for reading if it is a regular file (after symlinks, which a
 * Kubernetes ConfigMap mount uses); else throws NotRegularFileError. ENOENT
 * and other errors of `stat` and `open` pass through.
 *
 * `stat` first, so a device node is never opened (opening one can act: a
 * tty, a tape, a watchdog); then O_NONBLOCK and `fstat` on the descriptor, for
 * a file swapped for a FIFO in between. O_NONBLOCK changes nothing for reads
 * of a regular file (local file systems and NFS ignore it there).
 */
export async function openRegularFile(path: string): Promise<{ file: FileHandle; size: number }> {
  refuseUnlessRegular(await stat(path));
  const file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  let s: Stats;
  try {
    s = await file.stat();
    refuseUnlessRegular(s);
  } catch (err) {
    await file.close().catch(() => undefined); // the reason is `err`, not the close
    throw err;
  }
  return { file, size: s.size };
}

function refuseUnlessRegular(s: Stats): void {
  if (!s.isFile()) throw new NotRegularFileError(`${kindOf(s)}, not a regular file`);
}

/** "N bytes; the limit is M (SETTING)": the one wording of every size refusal. */
export function tooLarge(bytes: number, maxBytes: number, limitName?: string): FileTooLargeError {
  return new FileTooLargeError(
    `${bytes} bytes; the limit is ${maxBytes}${limitName ? ` (${limitName})` : ''}`,
  );
}

/**
 * Reads a regular file of at most `maxBytes`: checked before reading, and
 * while reading, never more than `maxBytes + 1` bytes (a file that grew past
 * the limit meanwhile is refused, not read whole). The message of
 * FileTooLargeError names `limitName`, the setting that sets the limit, if given.
 */
export async function readRegularFile(path: string, maxBytes: number, limitName?: string): Promise<Buffer> {
  const { file, size } = await openRegularFile(path);
  try {
    if (size > maxBytes) throw tooLarge(size, maxBytes, limitName);
    // Room for the size seen, and for a file that grew: up to one byte past the limit.
    let buf = Buffer.allocUnsafe(Math.min(maxBytes + 1, size + 1));
    let length = 0;
    for (;;) {
      if (length === buf.length) {
        if (buf.length > maxBytes) throw tooLarge(length, maxBytes, limitName);
        const bigger = Buffer.allocUnsafe(Math.min(maxBytes + 1, buf.length * 2));
        buf.copy(bigger, 0, 0, length);
        buf = bigger;
      }
      const { bytesRead } = await file.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    return buf.subarray(0, length);
  } finally {
    await file.close().catch(() => undefined);
  }
}
