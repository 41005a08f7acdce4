import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { expect } from 'chai';
import pino from 'pino';
import { LogArchiver } from '../../server/log-archiver.js';
import { fifoInPlaceOf, releaseFifo } from '../helpers/fifo.js';

const DAY = 86_400_000;

/** The archiver of `server.*.log` files in `dir`, keeping 3 days, at a fixed `now`. */
function archiverOf(dir: string, now: number, o: { archiveDir?: string; archiveRetainDays?: number } = {}) {
  return new LogArchiver(
    {
      dir,
      archiveDir: o.archiveDir ?? join(dir, 'archive'),
      stem: 'server',
      retainDays: 3,
      archiveRetainDays: o.archiveRetainDays ?? 0,
      intervalMs: 60_000,
      now: () => now,
    },
    pino({ enabled: false }),
  );
}

describe('log archiver', () => {
  it('keeps the last N days, gzips older files into the archive, never touches the active file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'logs-'));
    const archiveDir = join(dir, 'archive');
    const now = Date.UTC(2026, 10, 24, 12);
    const files = {
      'server.2026-11-19.1.log': now - 5 * DAY,
      'server.2026-11-20.2.log': now - 4 * DAY,
      'server.2026-11-22.3.log': now - 2 * DAY,
      'server.2026-11-24.4.log': now - 1000,
      'unrelated.txt': now - 10 * DAY,
    };
    for (const [name, mtime] of Object.entries(files)) {
      writeFileSync(join(dir, name), `{"msg":"${name}"}\n`);
      utimesSync(join(dir, name), mtime / 1000, mtime / 1000);
    }
    const archiver = archiverOf(dir, now, { archiveDir });
    const archived = await archiver.runOnce();
    expect(archived.sort()).to.deep.equal(['server.2026-11-19.1.log', 'server.2026-11-20.2.log']);
    expect(readdirSync(dir).sort()).to.deep.equal([
      'archive',
      'server.2026-11-22.3.log',
      'server.2026-11-24.4.log',
      'unrelated.txt',
    ]);
    const gz = readFileSync(join(archiveDir, 'server.2026-11-19.1.log.gz'));
    expect(gunzipSync(gz).toString()).to.equal('{"msg":"server.2026-11-19.1.log"}\n');
  });

  it('leaves alone a FIFO named like an old log file, and archives the files around it', async function () {
    this.timeout(20_000);
    const dir = mkdtempSync(join(tmpdir(), 'logs-'));
    const now = Date.UTC(2026, 10, 24, 12);
    const fifo = join(dir, 'server.2026-11-18.1.log');
    fifoInPlaceOf(fifo);
    utimesSync(fifo, (now - 6 * DAY) / 1000, (now - 6 * DAY) / 1000);
    for (const [name, age] of [
      ['server.2026-11-19.2.log', 5 * DAY],
      ['server.2026-11-24.3.log', 1000],
    ] as const) {
      writeFileSync(join(dir, name), 'x\n');
      utimesSync(join(dir, name), (now - age) / 1000, (now - age) / 1000);
    }
    const archiver = archiverOf(dir, now);
    // Reading the FIFO would wait for a writer forever: a writer comes after 5 s
    // regardless, so an archiver that opened it ends (and archives it), and the test says so.
    const writer = setTimeout(() => releaseFifo(fifo), 5000);
    try {
      expect(await archiver.runOnce()).to.deep.equal(['server.2026-11-19.2.log']);
      expect(readdirSync(dir).sort()).to.deep.equal([
        'archive',
        'server.2026-11-18.1.log',
        'server.2026-11-24.3.log',
      ]);
    } finally {
      clearTimeout(writer);
      releaseFifo(fifo);
    }
  });

  it('does not archive the newest file even when it is old', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'logs-'));
    const now = Date.UTC(2026, 10, 24);
    writeFileSync(join(dir, 'server.2026-11-01.1.log'), 'x\n');
    utimesSync(join(dir, 'server.2026-11-01.1.log'), (now - 20 * DAY) / 1000, (now - 20 * DAY) / 1000);
    const archiver = archiverOf(dir, now);
    expect(await archiver.runOnce()).to.deep.equal([]);
    expect(existsSync(join(dir, 'server.2026-11-01.1.log'))).to.equal(true);
  });

  it('deletes archives older than the archive retention', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'logs-'));
    const archiveDir = join(dir, 'archive');
    mkdirSync(archiveDir);
    const now = Date.UTC(2026, 10, 24);
    for (const [name, age] of [
      ['server.2026-09-01.1.log.gz', 60],
      ['server.2026-11-10.1.log.gz', 10],
    ] as const) {
      writeFileSync(join(archiveDir, name), 'x');
      utimesSync(join(archiveDir, name), (now - age * DAY) / 1000, (now - age * DAY) / 1000);
    }
    const archiver = archiverOf(dir, now, { archiveDir, archiveRetainDays: 30 });
    await archiver.runOnce();
    expect(readdirSync(archiveDir)).to.deep.equal(['server.2026-11-10.1.log.gz']);
  });
});
