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
import { type FileHandle, open } from 'node:fs/promises';

/** The file exists but is not a regular file (a FIFO, a socket, a device, a directory). */
export class NotRegularFileError extends Error {
  readonly code = 'ENOTREG';
}

/** Exceeds the size limit named by `limitName`; the message says both sizes. */
export class FileTooLargeError extends Error {
  readonly code = 'EFBIG';
}

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
 * Kubernetes ConfigMap mount uses); else closes it and throws
 * NotRegularFileError. ENOENT and other errors of `open` pass through.
 */
export async function openRegularFile(path: string): Promise<{ file: FileHandle; size: number }> {
  const file = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const s = await file.stat();
    if (!s.isFile()) throw new NotRegularFileError(`${kindOf(s)}, not a regular file`);
    return { file, size: s.size };
  } catch (err) {
    await file.close();
    throw err;
  }
}

/**
 * Reads a regular file of at most `maxBytes` (checked before reading, and
 * again on what was read, for a file that grew meanwhile). The message of
 * FileTooLargeError names `limitName`, the setting that sets the limit, if given.
 */
export async function readRegularFile(path: string, maxBytes: number, limitName?: string): Promise<Buffer> {
  const limit = `the limit is ${maxBytes}${limitName ? ` (${limitName})` : ''}`;
  const { file, size } = await openRegularFile(path);
  try {
    if (size > maxBytes) throw new FileTooLargeError(`${size} bytes; ${limit}`);
    const bytes = await file.readFile();
    if (bytes.length > maxBytes) throw new FileTooLargeError(`${bytes.length} bytes; ${limit}`);
    return bytes;
  } finally {
    await file.close();
  }
}
