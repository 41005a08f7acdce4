/**
 * PipeStream on a real pipe (a FIFO) whose reader the test controls: it never
 * blocks while the reader stalls, caps what it holds, delivers everything
 * once the reader reads again, and reports the reader's going away.
 */
import { closeSync, constants, mkdtempSync, openSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { PipeStream } from '../../server/pipe-stream.js';
import { fifoInPlaceOf } from '../helpers/fifo.js';
import { waitFor } from '../helpers/server.js';

describe('PipeStream: the stdout destination on a pipe', function () {
  this.timeout(20_000);
  let dir: string;
  let reader: number;
  let stream: PipeStream;
  const drops: number[] = [];
  const errors: string[] = [];
  let drains = 0;
  let written = 0;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'pipe-stream-'));
    const fifo = join(dir, 'out');
    fifoInPlaceOf(fifo);
    reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    stream = new PipeStream(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK), 256 * 1024);
    drops.length = 0;
    errors.length = 0;
    drains = 0;
    written = 0;
    stream.on('drop', (chunk: string) => drops.push(chunk.length));
    stream.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
    stream.on('drain', () => drains++);
    stream.on('write', (n: number) => {
      written += n;
    });
  });
  afterEach(() => {
    stream.end();
    try {
      closeSync(reader);
    } catch {
      // closed by the test
    }
    rmSync(dir, { recursive: true, force: true });
  });

  /** Reads what the pipe holds now; returns the byte count. */
  const readAll = () => {
    const buf = Buffer.alloc(1 << 20);
    let n = 0;
    for (;;) {
      try {
        const got = readSync(reader, buf, 0, buf.length, null);
        if (got === 0) return n;
        n += got;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') return n;
        throw err;
      }
    }
  };

  it('holds what a stalled reader leaves, up to its cap, drops beyond it, and delivers the rest once read', async () => {
    const line = `${'x'.repeat(1023)}\n`;
    const chunk = line.repeat(32); // 32 KiB
    // The pipe takes 64 KiB; then up to 256 KiB wait in the stream; the rest is dropped.
    let accepted = 0;
    for (let i = 0; i < 20; i++) if (stream.write(chunk)) accepted += chunk.length;
    expect(stream._len, 'bytes held while the reader stalls').to.be.greaterThan(0);
    expect(stream._len).to.be.at.most(256 * 1024);
    expect(drops.length, 'chunks dropped past the cap').to.be.greaterThan(0);
    expect(accepted + drops.reduce((a, b) => a + b, 0)).to.equal(20 * chunk.length);
    // The reader comes back: everything accepted arrives, and the stream says it drained.
    let got = 0;
    await waitFor(
      'everything accepted to arrive',
      () => {
        got += readAll();
        return got === accepted && drains > 0;
      },
      10_000,
      5,
    );
    expect(stream._writing).to.equal(false);
    expect(written).to.equal(accepted);
    expect(errors).to.deep.equal([]);
  });

  it('counts the cap in UTF-8 bytes, not characters', () => {
    const line = `${'数'.repeat(1023)}\n`; // 3,070 bytes, 1,024 characters
    let accepted = 0;
    for (let i = 0; i < 200; i++) if (stream.write(line)) accepted += Buffer.byteLength(line);
    // At most the pipe's 64 KiB went out; what waits stays within the 256 KiB cap.
    expect(stream._len).to.be.at.most(256 * 1024);
    expect(accepted - stream._len).to.be.at.most(64 * 1024 + Buffer.byteLength(line));
    expect(drops.length).to.be.greaterThan(0);
  });

  it('delivers every line, in order, to a reader that keeps up only on average, with stalls', async () => {
    // 5 MB/s of lines; the reader takes 64 KiB every 3 ms but stalls for 8 ticks
    // in every 30 (about 24 ms), so the pipe fills now and then. SonicBoom on a
    // non-blocking pipe then waits a fixed 100 ms before it retries, 500 KB pile
    // up behind its 256 KiB cap, and lines are dropped.
    const lines = Array.from(
      { length: 4000 },
      (_, i) => `${String(i).padStart(6, '0')} ${'y'.repeat(500)}\n`,
    );
    const expected = lines.join('');
    let received = '';
    let tick = 0;
    const buf = Buffer.alloc(64 * 1024);
    const reading = setInterval(() => {
      if (tick++ % 30 >= 22) return; // stalled
      try {
        const n = readSync(reader, buf, 0, buf.length, null);
        received += buf.toString('latin1', 0, n);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      }
    }, 3);
    try {
      for (let i = 0; i < lines.length; i += 20) {
        stream.write(lines.slice(i, i + 20).join('')); // 10 KB every 2 ms
        await new Promise((r) => setTimeout(r, 2));
      }
      await waitFor('every line to arrive', () => received.length >= expected.length, 15_000, 10);
    } finally {
      clearInterval(reading);
    }
    expect(drops).to.deep.equal([]);
    expect(received === expected, 'every line, in order').to.equal(true);
  });

  it('counts queued lines as dropped when the reader goes away, and when abandoned at exit', async () => {
    const chunk = `${'z'.repeat(1023)}\n`.repeat(32);
    for (let i = 0; i < 4; i++) stream.write(chunk); // 64 KiB into the pipe, 64 KiB queued
    // The written chunks' callbacks come a tick later.
    await new Promise((r) => setImmediate(r));
    expect(stream._len).to.equal(64 * 1024);
    const queuedLines = stream._len / 1024;
    closeSync(reader); // the queued writes fail with EPIPE
    await waitFor('the queued chunks dropped', () => drops.length > 0 && stream._len === 0, 5000, 5);
    expect(drops.reduce((a, b) => a + b, 0) / 1024).to.equal(queuedLines);
    expect(errors).to.deep.equal(['EPIPE']);
  });

  it('drops, at once, every queued line an exit abandons, and none twice', async () => {
    const chunk = `${'w'.repeat(1023)}\n`.repeat(32);
    for (let i = 0; i < 4; i++) stream.write(chunk);
    const queued = stream._len / 1024;
    expect(queued).to.be.greaterThan(0);
    stream.abandon();
    expect(drops.reduce((a, b) => a + b, 0) / 1024).to.equal(queued);
    expect(stream._len).to.equal(0);
    // The destroyed socket's write callbacks come later, and count nothing again.
    await new Promise((r) => setImmediate(r));
    expect(drops.reduce((a, b) => a + b, 0) / 1024).to.equal(queued);
  });

  it('reports the reader going away once, as an error, and refuses further lines', async () => {
    stream.write('one\n');
    await waitFor('the first line written', () => written > 0, 5000, 5);
    closeSync(reader);
    stream.write('two\n'); // EPIPE
    await waitFor('the error', () => errors.length > 0, 5000, 5);
    expect(errors).to.deep.equal(['EPIPE']);
    expect(() => stream.write('three\n')).to.throw(/closed/);
  });
});
