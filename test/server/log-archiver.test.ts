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

const DAY = 86_400_000;

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
    const archiver = new LogArchiver(
      {
        dir,
        archiveDir,
        stem: 'server',
        retainDays: 3,
        archiveRetainDays: 0,
        intervalMs: 60_000,
        now: () => now,
      },
      pino({ enabled: false }),
    );
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

  it('does not archive the newest file even when it is old', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'logs-'));
    const now = Date.UTC(2026, 10, 24);
    writeFileSync(join(dir, 'server.2026-11-01.1.log'), 'x\n');
    utimesSync(join(dir, 'server.2026-11-01.1.log'), (now - 20 * DAY) / 1000, (now - 20 * DAY) / 1000);
    const archiver = new LogArchiver(
      {
        dir,
        archiveDir: join(dir, 'archive'),
        stem: 'server',
        retainDays: 3,
        archiveRetainDays: 0,
        intervalMs: 60_000,
        now: () => now,
      },
      pino({ enabled: false }),
    );
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
    const archiver = new LogArchiver(
      {
        dir,
        archiveDir,
        stem: 'server',
        retainDays: 3,
        archiveRetainDays: 30,
        intervalMs: 60_000,
        now: () => now,
      },
      pino({ enabled: false }),
    );
    await archiver.runOnce();
    expect(readdirSync(archiveDir)).to.deep.equal(['server.2026-11-10.1.log.gz']);
  });
});
