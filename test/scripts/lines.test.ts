import { PassThrough } from 'node:stream';
import { expect } from 'chai';
import { LineSplitter, onLines } from '../../scripts/lib/lines.js';

describe('line splitting (scripts/lib/lines.ts)', () => {
  it('hands out whole lines across chunks, without \\n or \\r\\n', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    s.push('one\ntw');
    expect(lines).to.deep.equal(['one']);
    s.push(Buffer.from('o\r\n\nthr'));
    s.push('ee');
    expect(lines).to.deep.equal(['one', 'two', '']);
    s.end();
    expect(lines).to.deep.equal(['one', 'two', '', 'three']);
  });

  it('decodes a UTF-8 character cut between two chunks', () => {
    const lines: string[] = [];
    const s = new LineSplitter((l) => lines.push(l));
    const bytes = Buffer.from('µs → ok\n');
    s.push(bytes.subarray(0, 1));
    s.push(bytes.subarray(1, 5));
    s.push(bytes.subarray(5));
    expect(lines).to.deep.equal(['µs → ok']);
  });

  it('reads a stream to its end, the unterminated last line included', async () => {
    const stream = new PassThrough();
    const lines: string[] = [];
    onLines(stream, (l) => lines.push(l));
    const ended = new Promise((r) => stream.once('end', r));
    stream.write('a\nb');
    stream.end('\nc');
    await ended;
    expect(lines).to.deep.equal(['a', 'b', 'c']);
  });
});
