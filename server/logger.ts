import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pino, { type DestinationStream, type Logger, type StreamEntry } from 'pino';
import roll from 'pino-roll';
import { inputRedactPaths } from './call-log.js';
import type { Config } from './config.js';

/** The file name stem of rotated logs: `<dir>/server.<yyyy-MM-dd>.<n>.log`. */
export const LOG_FILE_STEM = 'server';

function options(log: Config['log']): pino.LoggerOptions {
  return {
    level: log.level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: inputRedactPaths(log.redactFields), censor: '[redacted]' },
  };
}

/**
 * Builds the root logger: JSON lines with level names (debug, info, warn,
 * error), to daily files rotated by pino-roll (older ones archived by
 * `LogArchiver`) and to stdout for containers.
 *
 * Both destinations are asynchronous SonicBoom streams: a log call serialises
 * and appends to a buffer, and the bytes reach the disk later, off the request
 * path. `logger.flush()` before exit writes what is pending.
 */
export async function createLogger(log: Config['log']): Promise<Logger> {
  const streams: StreamEntry[] = [];
  if (log.dir !== '') {
    // pino-roll creates the directory asynchronously but links current.log
    // synchronously, so a missing LOG_DIR would crash start-up with ENOENT.
    mkdirSync(log.dir, { recursive: true });
    const file = await roll({
      file: join(log.dir, LOG_FILE_STEM),
      extension: '.log',
      frequency: log.rotate,
      dateFormat: 'yyyy-MM-dd',
      mkdir: true,
      symlink: true,
    });
    streams.push({ level: log.level, stream: file });
  }
  if (log.stdout) streams.push({ level: log.level, stream: pino.destination({ dest: 1, sync: false }) });
  if (streams.length === 0) return pino({ ...options(log), enabled: false });
  return pino(options(log), pino.multistream(streams));
}

/** A logger writing to an injected stream (tests and benchmarks capture logs this way). */
export function createStreamLogger(log: Config['log'], destination: DestinationStream): Logger {
  return pino(options(log), destination);
}
