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
