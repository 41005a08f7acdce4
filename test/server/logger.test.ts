import { EventEmitter } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import pino from 'pino';
import { loadConfig } from '../../server/config.js';
import { chunkBytes, createStreamLogger, type LogDestinationName, LogOutput } from '../../server/logger.js';
import { Metrics } from '../../server/metrics.js';
import { runCli } from '../helpers/cli.js';
import { LogSink, ROOT, SAMPLE_RECORD } from '../helpers/server.js';

/** One event-loop turn: LogOutput hands lines to its destinations at the end of the turn. */
const turn = () => new Promise<void>((r) => setImmediate(r));

/** A stand-in for SonicBoom: records lines (and the chunks they came in), and fails on demand like a full disk. */
class FakeSonic extends EventEmitter {
  fd = 99;
  readonly chunks: string[] = [];
  _writing = false;
  _len = 0;
  _bufs: string[] = [];
  _writingBuf = '';
  failing = false;
  readonly lines: string[] = [];

  write(line: string): boolean {
    this.chunks.push(line);
    this._bufs.push(line);
    this._len += line.length;
    if (this.failing) {
      queueMicrotask(() => this.emit('error', Object.assign(new Error('no space'), { code: 'ENOSPC' })));
      return true;
    }
    for (const b of this._bufs) for (const l of b.split(/(?<=\n)/)) this.lines.push(l);
    const n = this._len;
    this._bufs = [];
    this._len = 0;
    this.emit('write', n);
    return true;
  }

  flushSync(): void {}
  end(): void {}
}

/** A LogOutput over a fake `file` (or the one given) and a fake `stdout`, and the drops it counts. */
function twoDestinations(file = new FakeSonic()) {
  const stdout = new FakeSonic();
  const out = new LogOutput(1 << 20);
  out.add('file', file as never);
  out.add('stdout', stdout as never);
  const counted: [LogDestinationName, number][] = [];
  out.onDropped((d, n) => counted.push([d, n]));
  return { file, stdout, out, counted };
}

describe('log line bounds', () => {
  const config = loadConfig({ LOG_DIR: '', LOG_MAX_FIELD_CHARS: '32', LOG_MAX_LINE_BYTES: '8192' });

  it('cuts long strings in logged inputs and leaves out instances beyond the budget, saying how many', () => {
    const sink = new LogSink();
    const logger = createStreamLogger(config.log, sink);
    const inputs = Array.from({ length: 256 }, () => ({ ...SAMPLE_RECORD, screenSize: 'y'.repeat(10_000) }));
    logger.info({ requestId: 'r-1', inputs }, 'Predict');
    const [line] = sink.lines as { inputs: Record<string, unknown>[]; inputsOmitted?: number }[];
    expect(line?.inputs[0]?.screenSize).to.equal(`${'y'.repeat(32)}…[+${10_000 - 32} chars]`);
    expect((line?.inputs.length ?? 0) + (line?.inputsOmitted ?? 0)).to.equal(256);
    expect(line?.inputsOmitted).to.be.greaterThan(0);
    expect(JSON.stringify(line).length).to.be.lessThan(8192);
    // Redaction still applies to what is kept.
    expect(line?.inputs[0]?.userId).to.equal('[redacted]');
  });

  it('bounds nested values: depth, items and keys', () => {
    const sink = new LogSink();
    const logger = createStreamLogger(config.log, sink);
    const deep = { a: { b: { c: { d: 1 } } }, list: Array.from({ length: 100 }, (_, i) => i) };
    logger.info({ inputs: [deep] }, 'Predict');
    const [line] = sink.lines as { inputs: { a: { b: { c: unknown } }; list: unknown[] }[] }[];
    expect(line?.inputs[0]?.a.b.c).to.equal('[nested]');
    expect(line?.inputs[0]?.list).to.have.length(33);
  });

  it('replaces a line over LOG_MAX_LINE_BYTES by a short notice with its request id and size', async () => {
    const sonic = new FakeSonic();
    const out = new LogOutput(8192);
    out.add('stdout', sonic as never);
    const logger = createStreamLogger(config.log, out);
    logger.warn({ requestId: 'big-1', message: 'z'.repeat(20_000) }, 'Predict');
    await turn();
    const notice = JSON.parse(sonic.lines[0] as string) as Record<string, unknown>;
    expect(notice).to.include({ level: 'warn', requestId: 'big-1', limit: 8192 });
    expect(notice.bytes).to.be.greaterThan(20_000);
  });

  it('drops and counts the lines of a failing destination, warns on the other, and recovers', async () => {
    const { file, stdout, out, counted } = twoDestinations();
    file.failing = true;
    out.write('{"msg":"a"}\n');
    await turn(); // handed over: the fake fails it
    await turn(); // its error is out: the file is failing
    for (let i = 0; i < 10; i++) out.write(`{"msg":"b${i}"}\n`);
    await turn();
    expect(counted.reduce((n, [d, k]) => n + (d === 'file' ? k : 0), 0)).to.equal(10);
    const warn = stdout.lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.level === 'warn');
    expect(warn).to.include({ destination: 'file', code: 'ENOSPC' });
    // The disk has room again: the next probe (a second later) gets through.
    file.failing = false;
    const probe = (out as unknown as { destinations: { lastProbe: number }[] }).destinations[0];
    if (probe) probe.lastProbe = 0;
    out.write('{"msg":"c"}\n');
    await turn();
    const recovered = stdout.lines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.msg === 'log destination recovered');
    expect(recovered).to.include({ destination: 'file', dropped: 10 });
    // The line that failed first was kept and written on recovery.
    expect(file.lines).to.include('{"msg":"a"}\n');
  });

  it('hands each turn’s lines to every destination as one chunk, in order, and at once on flushSync', async () => {
    const { file, stdout, out } = twoDestinations();
    for (let i = 0; i < 5; i++) out.write(`{"msg":"a${i}"}\n`);
    expect(file.chunks, 'nothing before the turn ends').to.deep.equal([]);
    await turn();
    const turnOne = ['a0', 'a1', 'a2', 'a3', 'a4'].map((m) => `{"msg":"${m}"}\n`);
    expect(file.chunks).to.deep.equal([turnOne.join('')]);
    expect(stdout.chunks).to.deep.equal([turnOne.join('')]);
    out.write('{"msg":"b"}\n');
    out.flushSync(); // pino's exit and fatal hook: no turn to wait for
    expect(file.lines).to.deep.equal([...turnOne, '{"msg":"b"}\n']);
    await turn();
    expect(file.chunks, 'nothing handed over twice').to.have.length(2);
  });

  it('hands a busy turn’s lines over in chunks within a quarter of the destination buffer, none lost or reordered', async () => {
    const file = new FakeSonic();
    const out = new LogOutput(1 << 20, 64 * 1024);
    out.add('file', file as never);
    const lines = Array.from({ length: 2000 }, (_, i) => `{"msg":"${i}","pad":"${'x'.repeat(i % 200)}"}\n`);
    for (const l of lines) out.write(l);
    expect(file.chunks.length, 'handed over before the turn ended').to.be.greaterThan(1);
    await turn();
    for (const c of file.chunks) expect(Buffer.byteLength(c)).to.be.at.most(chunkBytes(64 * 1024));
    expect(file.lines).to.deep.equal(lines);
  });

  it('drops only what overflows a real SonicBoom with the smallest buffer allowed (64 KiB), never a whole turn', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'log-chunks-'));
    try {
      const path = join(dir, 'out.log');
      const out = new LogOutput(1 << 20, 64 * 1024);
      out.add('file', pino.destination({ dest: path, sync: false, maxLength: 64 * 1024 }) as never);
      let dropped = 0;
      out.onDropped((_d, n) => {
        dropped += n;
      });
      // 570 lines of 116 bytes (66 KB) in one turn: as one chunk, SonicBoom would drop it whole;
      // line by line, only what is past its 64 KiB is dropped (6 lines).
      const line = `${JSON.stringify({ level: 'info', msg: 'x'.repeat(90) })}\n`;
      for (let i = 0; i < 570; i++) out.write(line);
      await out.flush(5000);
      expect(dropped).to.be.at.most(Math.ceil((570 * line.length - 64 * 1024) / line.length));
      expect(readFileSync(path, 'utf8').split('\n').length - 1).to.equal(570 - dropped);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('counts the lines of a destination that throws as dropped, and still writes the other one', async () => {
    const broken = new FakeSonic();
    broken.write = () => {
      throw new Error('SonicBoom destroyed');
    };
    const { stdout, out, counted } = twoDestinations(broken);
    for (let i = 0; i < 3; i++) out.write(`{"msg":"${i}"}\n`);
    await turn(); // a throw here would be an uncaught exception in the setImmediate
    expect(counted).to.deep.equal([['file', 3]]);
    expect(stdout.lines).to.have.length(3);
  });

  for (const how of ['throw', 'exit'] as const) {
    it(`writes the lines of the last turn to the log file when the process ends by ${how === 'throw' ? 'an uncaught exception' : 'process.exit'}`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'log-at-exit-'));
      try {
        const script = [
          `import { loadConfig } from ${JSON.stringify(join(ROOT, 'dist/server/config.js'))};`,
          `import { createLogger } from ${JSON.stringify(join(ROOT, 'dist/server/logger.js'))};`,
          `const { logger } = await createLogger(loadConfig({ LOG_DIR: ${JSON.stringify(dir)}, LOG_STDOUT: 'false' }).log);`,
          'setTimeout(() => {',
          "  logger.info('the last line');",
          how === 'throw' ? "  throw new Error('boom');" : '  process.exit(3);',
          '}, 20);',
        ].join('\n');
        const run = await runCli(process.execPath, ['--input-type=module', '-e', script], {
          cwd: ROOT,
          name: 'node',
        });
        expect(run.code).to.equal(how === 'throw' ? 1 : 3);
        const files = readdirSync(dir).filter((f) => /^server\..*\.log$/.test(f));
        const text = files.map((f) => readFileSync(join(dir, f), 'utf8')).join('');
        expect(text).to.contain('"msg":"the last line"');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  it('counts every line of a dropped chunk while a destination is failing', async () => {
    const file = new FakeSonic();
    const out = new LogOutput(1 << 20);
    out.add('file', file as never);
    const counted: number[] = [];
    out.onDropped((_d, n) => counted.push(n));
    file.failing = true;
    out.write('{"msg":"first"}\n');
    await turn();
    await turn();
    for (let i = 0; i < 7; i++) out.write(`{"msg":"x${i}"}\n`);
    await turn();
    expect(counted).to.deep.equal([7]);
  });

  it('counts dropped lines in inference_log_write_errors_total, including those before anyone listened', async () => {
    const out = new LogOutput(1 << 20);
    out.dropped('file', 3);
    const m = new Metrics();
    out.onDropped((destination, lines) => m.logWriteErrors.inc({ destination }, lines));
    out.dropped('stdout', 2);
    const text = await m.registry.metrics();
    expect(text).to.match(/inference_log_write_errors_total\{destination="file"\} 3/);
    expect(text).to.match(/inference_log_write_errors_total\{destination="stdout"\} 2/);
  });
});
