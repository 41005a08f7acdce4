import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Logger } from 'pino';

const DAY_MS = 86_400_000;

export interface LogArchiverOptions {
  /** Where pino-roll writes `<stem>.<date>.<n>.log`. */
  readonly dir: string;
  readonly archiveDir: string;
  readonly stem: string;
  /** Rotated files stay in `dir` this long (by last write), then are archived. */
  readonly retainDays: number;
  /** Archives are deleted after this long; 0 keeps them forever. */
  readonly archiveRetainDays: number;
  readonly intervalMs: number;
  /** Epoch ms; injected so tests can move time. */
  readonly now: () => number;
}

/**
 * Keeps the last `retainDays` of logs on disk, as the seed notes ask ("服务器上一般
 * 只保留3天的日志信息，定期将多余的日志存档"), and moves older files, gzip-compressed,
 * into the archive directory. The newest file is never touched: pino-roll may
 * still be writing it.
 */
export class LogArchiver {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<string[]> | undefined;

  constructor(
    private readonly options: LogArchiverOptions,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.timer = setInterval(() => void this.runOnce(), this.options.intervalMs);
    this.timer.unref();
    void this.runOnce();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /** One pass; resolves with the names of the files archived. */
  runOnce(): Promise<string[]> {
    this.running ??= this.pass()
      .catch((err: unknown) => {
        this.logger.error({ err }, 'log archiving failed');
        return [];
      })
      .finally(() => {
        this.running = undefined;
      });
    return this.running;
  }

  private async pass(): Promise<string[]> {
    const { dir, archiveDir, stem, retainDays, archiveRetainDays, now } = this.options;
    const pattern = new RegExp(`^${stem}\\.\\d{4}-\\d{2}-\\d{2}\\.\\d+\\.log$`);
    let names: string[];
    try {
      names = (await readdir(dir)).filter((n) => pattern.test(n));
    } catch {
      return [];
    }
    // Regular files only: reading a FIFO that happens to match would block a pool thread for good.
    const files = (
      await Promise.all(
        names.map(async (name) => {
          const s = await stat(join(dir, name));
          return s.isFile() ? [{ name, mtime: s.mtimeMs }] : [];
        }),
      )
    ).flat();
    files.sort((a, b) => a.mtime - b.mtime || a.name.localeCompare(b.name));
    files.pop(); // the active file
    const cutoff = now() - retainDays * DAY_MS;
    const archived: string[] = [];
    for (const f of files.filter((x) => x.mtime < cutoff)) {
      await mkdir(archiveDir, { recursive: true });
      const target = join(archiveDir, `${f.name}.gz`);
      const tmp = `${target}.tmp`;
      await pipeline(createReadStream(join(dir, f.name)), createGzip(), createWriteStream(tmp));
      await rename(tmp, target);
      await unlink(join(dir, f.name));
      archived.push(f.name);
    }
    if (archived.length > 0) this.logger.info({ files: archived, archiveDir }, 'archived old log files');
    if (archiveRetainDays > 0) {
      const old = now() - archiveRetainDays * DAY_MS;
      for (const name of await readdir(archiveDir).catch(() => [] as string[])) {
        const p = join(archiveDir, name);
        if ((await stat(p)).mtimeMs < old) await unlink(p);
      }
    }
    return archived;
  }
}
