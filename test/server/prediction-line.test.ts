import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { expect } from 'chai';
import pino from 'pino';
import {
  asPredictionRecord,
  type CallRecord,
  type PredictionFields,
  type PredictionOutput,
} from '../../server/call-log.js';
import { loadConfig } from '../../server/config.js';
import { createStreamLogger, LogOutput } from '../../server/logger.js';
import { PredictionLine } from '../../server/prediction-line.js';
import { Rng } from '../helpers/record-corpus.js';
import { SAMPLE_RECORD } from '../helpers/server.js';

/** Keeps each written chunk as it came. */
class Capture extends Writable {
  readonly chunks: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(chunk.toString('utf8'));
    cb();
  }
}

const config = loadConfig({ LOG_DIR: '' });
const redactFields = config.log.redactFields;

/** The time is the one field two writes cannot share. */
const untimed = (line: string) => line.replace(/"time":"[^"]*"/, '"time":"T"');

/** The line pino writes for the record, and the line PredictionLine writes, from the same logger. */
function bothLines(
  record: CallRecord,
  fields: PredictionFields,
  log: typeof config.log = config.log,
): { pino: string; fast: string } {
  const sink = new Capture();
  const logger = createStreamLogger(log, sink).child({ component: 'rpc' });
  const fast = PredictionLine.for(logger, redactFields);
  if (!fast) throw new Error('PredictionLine.for refused the server logger');
  logger.info({ ...record, ...fields }, record.method);
  fast.write('info', record, fields, record.method);
  expect(sink.chunks).to.have.length(2);
  return { pino: untimed(sink.chunks[0] as string), fast: untimed(sink.chunks[1] as string) };
}

const CALL: CallRecord = {
  requestId: 'r-1',
  method: 'Predict',
  model: 'conversion',
  version: '20261124T041754Z',
  arm: 'canary',
  code: 'OK',
  latencyMs: 0.123,
};

function outputs(n: number, rng: Rng, perInstanceUser: boolean): PredictionOutput[] {
  const groups = ['baseline', 'experiment', 'control', 'canary_negative'] as const;
  return Array.from({ length: n }, (_, i) => {
    const label = rng.next() < 0.5 ? 0 : 1;
    const o = {
      score: Math.fround(rng.next()),
      label,
      group: groups[Math.floor(rng.next() * 4)] as (typeof groups)[number],
      action: label,
    } as const;
    return perInstanceUser ? { ...o, user: `p_user${i}` } : o;
  });
}

/** Values a Struct can carry, including the ones JSON escapes or writes as null. */
function value(rng: Rng, depth: number): unknown {
  const r = rng.next();
  if (r < 0.2)
    return ['plain', 'quote " and \\ back', 'tab\tnew\nline\u0001', 'ünïcødé ✓ 𝄞', '', '\u2028'][
      Math.floor(rng.next() * 6)
    ];
  if (r < 0.4)
    return [0, -0, 1.5, -1e21, 2 ** 53 + 2, Number.NaN, Number.POSITIVE_INFINITY, 1e-7][
      Math.floor(rng.next() * 8)
    ];
  if (r < 0.5) return rng.next() < 0.5;
  if (r < 0.6) return null;
  if (depth > 2) return 'deep';
  if (r < 0.8) return Array.from({ length: Math.floor(rng.next() * 3) }, () => value(rng, depth + 1));
  const o: Record<string, unknown> = {};
  for (let i = 0; i < 3; i++) o[`k${i}`] = value(rng, depth + 1);
  return o;
}

function instance(rng: Rng): Record<string, unknown> {
  const rec: Record<string, unknown> = { ...SAMPLE_RECORD };
  // Keys JSON must escape, integer-like keys (which objects order first) and the redacted ones.
  const keys = ['odd "key"', '10', '2', 'userId', 'birthday', 'deviceName', 'naïve', 'x'];
  for (const k of keys) if (rng.next() < 0.5) rec[k] = value(rng, 0);
  if (rng.next() < 0.3) delete rec.userId;
  return rec;
}

describe('prediction log line (server/prediction-line.ts)', () => {
  it('matches pino, time included, from one writer across 400 lines whose call fields, event and clock repeat or change', () => {
    // The writer keeps the last line's time (per ms) and call and event parts: a stale one must show.
    const rng = new Rng(2026);
    const sink = new Capture();
    const logger = createStreamLogger(config.log, sink).child({ component: 'rpc' });
    const fast = PredictionLine.for(logger, redactFields);
    if (!fast) throw new Error('PredictionLine.for refused the server logger');
    const realNow = Date.now;
    let now = Date.UTC(2026, 11, 1, 12, 0, 0, 999);
    Date.now = () => now;
    try {
      for (let i = 0; i < 400; i++) {
        if (rng.chance(0.3)) now += rng.int(1, 1500);
        const record: CallRecord = {
          ...CALL,
          requestId: `req-${i}`,
          method: rng.chance(0.2) ? 'ModelInfer' : 'Predict',
          model: rng.chance(0.2) ? 'other' : CALL.model,
          version: rng.chance(0.2) ? '20261201T000000Z' : CALL.version,
          arm: rng.chance(0.2) ? 'stable' : CALL.arm,
        };
        const fields: PredictionFields = {
          event: 'prediction',
          experiment: rng.chance(0.2) ? 'other-v2' : 'positives-v1',
          outputs: outputs(1, rng, false),
          inputs: [{ ...SAMPLE_RECORD }],
        };
        logger.info({ ...record, ...fields }, record.method);
        fast.write('info', record, fields, record.method);
        const [viaPino, viaFast] = sink.chunks.splice(0);
        expect(viaFast, `line ${i}`).to.equal(viaPino);
      }
    } finally {
      Date.now = realNow;
    }
  });

  it("writes the seed record's line byte for byte as pino does, redaction included", () => {
    const fields: PredictionFields = {
      event: 'prediction',
      experiment: 'positives-v1',
      user: 'p_ORYW6mICQ-rlm6BPqwKA9F',
      outputs: [{ score: 0.0038510560989379883, label: 0, group: 'baseline', action: 0 }],
      inputs: [{ ...SAMPLE_RECORD }],
    };
    const { pino: expected, fast } = bothLines(CALL, fields);
    expect(fast).to.equal(expected);
    const parsed = asPredictionRecord(JSON.parse(fast));
    expect(parsed).to.not.equal(undefined);
    const { time: _time, level, pid, component, msg, ...rest } = parsed as unknown as Record<string, unknown>;
    expect({ level, pid, component, msg }).to.deep.equal({
      level: 'info',
      pid: process.pid,
      component: 'rpc',
      msg: 'Predict',
    });
    expect(rest).to.deep.equal({
      ...CALL,
      ...fields,
      inputs: [{ ...SAMPLE_RECORD, userId: '[redacted]', birthday: '[redacted]', deviceName: '[redacted]' }],
    });
  });

  it('matches pino on 500 generated records: batches, users per instance, forced and pinned calls, odd keys and values, no inputs, a message', () => {
    const rng = new Rng(14);
    for (let i = 0; i < 500; i++) {
      const n = 1 + Math.floor(rng.next() * 4);
      const requestUser = rng.next() < 0.5;
      const record: CallRecord = {
        ...CALL,
        requestId: `req-${i}-"q"`,
        method: rng.next() < 0.5 ? 'Predict' : 'ModelInfer',
        latencyMs: Math.round(rng.next() * 1e6) / 1e3,
        ...(rng.next() < 0.1 ? { message: 'note\n"x"' } : {}),
      };
      const fields: PredictionFields = {
        event: 'prediction',
        experiment: rng.next() < 0.5 ? 'positives-v1' : 'exp "2"',
        ...(requestUser ? { user: `p_${i}` } : {}),
        ...(rng.next() < 0.2 ? { forced: rng.next() < 0.5 ? ('stable' as const) : ('canary' as const) } : {}),
        ...(rng.next() < 0.2 ? { pinned: true as const } : {}),
        outputs: outputs(n, rng, !requestUser),
        ...(rng.next() < 0.8 ? { inputs: Array.from({ length: n }, () => instance(rng)) } : {}),
      };
      const { pino: expected, fast } = bothLines(record, fields);
      expect(fast, `record ${i}`).to.equal(expected);
    }
  });

  describe('under the logging caps (LOG_MAX_FIELD_CHARS, LOG_MAX_LINE_BYTES)', () => {
    // The smallest caps config accepts: 16 characters per field, 4096-byte lines (2048 for the inputs).
    const tight = loadConfig({ LOG_DIR: '', LOG_MAX_FIELD_CHARS: '16', LOG_MAX_LINE_BYTES: '4096' }).log;
    const long = (rng: Rng) => 'x"\\é'.repeat(1 + Math.floor(rng.next() * 12));

    /** An instance that the caps may cut: long strings and keys, many fields, nested values. */
    function oversized(rng: Rng): Record<string, unknown> {
      const rec = instance(rng);
      const r = rng.next();
      if (r < 0.25) rec.note = long(rng);
      else if (r < 0.4) rec[`a key longer than sixteen ${Math.floor(rng.next() * 3)}`] = 1;
      else if (r < 0.5) for (let k = 0; k < 70; k++) rec[`f${k}`] = k;
      else if (r < 0.6)
        rec.deep = { a: { b: { c: { d: long(rng) } } }, list: Array.from({ length: 40 }, (_, k) => k) };
      return rec;
    }

    it('matches pino on 300 generated records, bounded: cut strings and keys, 70 fields, nesting, instances past the budget', () => {
      const rng = new Rng(1411);
      let omitted = 0;
      let cut = 0;
      for (let i = 0; i < 300; i++) {
        const n = 1 + Math.floor(rng.next() * 40);
        const fields: PredictionFields = {
          event: 'prediction',
          experiment: 'positives-v1',
          user: `p_${i}`,
          outputs: outputs(Math.min(n, 3), rng, false),
          inputs: Array.from({ length: n }, () => (rng.next() < 0.5 ? instance(rng) : oversized(rng))),
        };
        const { pino: expected, fast } = bothLines({ ...CALL, requestId: `cap-${i}` }, fields, tight);
        expect(fast, `record ${i}`).to.equal(expected);
        if (fast.includes('"inputsOmitted":')) omitted++;
        if (fast.includes('…[+')) cut++;
      }
      // The generator reaches both bounds, or this test would prove nothing about them.
      expect(omitted, 'lines with instances left out').to.be.greaterThan(20);
      expect(cut, 'lines with a cut string').to.be.greaterThan(20);
    });

    it('leaves a record within every bound as it is, and leaves out instances once the budget is spent', () => {
      const small = bothLines(
        CALL,
        { event: 'prediction', experiment: 'e', outputs: [], inputs: [{ ...SAMPLE_RECORD }] },
        tight,
      );
      expect(small.fast).to.equal(small.pino);
      expect(small.fast).to.not.include('inputsOmitted');
      const many = Array.from({ length: 200 }, () => ({ ...SAMPLE_RECORD }));
      const big = bothLines(CALL, { event: 'prediction', experiment: 'e', outputs: [], inputs: many }, tight);
      expect(big.fast).to.equal(big.pino);
      const parsed = JSON.parse(big.fast) as { inputs: unknown[]; inputsOmitted: number };
      expect(parsed.inputs.length + parsed.inputsOmitted).to.equal(200);
      expect(parsed.inputsOmitted).to.be.greaterThan(0);
    });

    it('gives an oversized line the same stand-in as pino, through the line cap of the destination', async () => {
      /** A SonicBoom stand-in: what LogOutput's guarded destination needs of one. */
      class Sonic extends EventEmitter {
        readonly chunks: string[] = [];
        write(line: string): boolean {
          this.chunks.push(line);
          return true;
        }
        flushSync(): void {}
        end(): void {}
      }
      const sonic = new Sonic();
      const output = new LogOutput(tight.maxLineBytes);
      output.add('file', sonic as unknown as Parameters<LogOutput['add']>[1]);
      const logger = createStreamLogger(tight, output).child({ component: 'rpc' });
      const fast = PredictionLine.for(logger, redactFields);
      // 200 outputs: far past 4096 bytes whatever the inputs bound leaves.
      const fields: PredictionFields = {
        event: 'prediction',
        experiment: 'e',
        outputs: outputs(200, new Rng(7), true),
        inputs: [{ ...SAMPLE_RECORD }],
      };
      logger.info({ ...CALL, ...fields }, 'Predict');
      fast?.write('info', CALL, fields, 'Predict');
      // LogOutput hands a turn's lines over as one chunk.
      await new Promise((r) => setImmediate(r));
      const lines = sonic.chunks.join('').split(/(?<=\n)/);
      expect(lines).to.have.length(2);
      const [viaPino, viaFast] = lines.map((l) => untimed(l));
      expect(viaFast).to.equal(viaPino);
      expect(JSON.parse(viaFast as string)).to.include({
        msg: 'log line over LOG_MAX_LINE_BYTES; dropped',
        limit: 4096,
      });
    });
  });

  it('keeps the level gate: nothing is written when the level is off', () => {
    const sink = new Capture();
    const logger = createStreamLogger({ ...config.log, level: 'warn' }, sink);
    PredictionLine.for(logger, redactFields)?.write(
      'info',
      CALL,
      { event: 'prediction', experiment: 'e', outputs: [] },
      'Predict',
    );
    expect(sink.chunks).to.deep.equal([]);
  });

  it('declines loggers whose lines it could not reproduce (another log formatter, a mixin, a nested key)', () => {
    const sink = new Capture();
    expect(PredictionLine.for(pino({ formatters: { log: (o) => o } }, sink), [])).to.equal(undefined);
    expect(PredictionLine.for(pino({ mixin: () => ({ a: 1 }) }, sink), [])).to.equal(undefined);
    expect(PredictionLine.for(pino({ nestedKey: 'payload' }, sink), [])).to.equal(undefined);
    expect(PredictionLine.for(pino({}, sink), [])).to.not.equal(undefined);
  });

  it("routes by level through pino's multistream as pino's own write does", () => {
    const info = new Capture();
    const warn = new Capture();
    const logger = pino(
      { level: 'info' },
      pino.multistream([
        { level: 'info', stream: info },
        { level: 'warn', stream: warn },
      ]),
    );
    PredictionLine.for(logger, [])?.write(
      'info',
      CALL,
      { event: 'prediction', experiment: 'e', outputs: [] },
      'Predict',
    );
    expect(info.chunks).to.have.length(1);
    expect(warn.chunks).to.have.length(0);
  });
});
