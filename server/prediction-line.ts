/**
 * The prediction log line (call-log.ts's `PredictionRecord`), serialised by
 * hand instead of through pino's generic path. pino, for every prediction,
 * spreads the call record and the prediction fields into one object, walks
 * its keys, clones each logged instance to redact it, then stringifies the
 * clone: about a tenth of a call's CPU on this service. Here the record's
 * shape is known, so the line is one string concatenation in pino's own
 * field order, with the redacted fields replaced as the instance is written.
 *
 * The output is the line pino would write for the same record, byte for
 * byte: the same level, time format and bindings (taken from the logger
 * itself), the same keys in the same order, the same escaping. The test
 * (test/server/prediction-line.test.ts) compares the two on real and
 * generated records; the A/B readout parses either with
 * `asPredictionRecord`.
 *
 * It writes to the logger's own destination, with the level gating and the
 * metadata pino's multistream reads, through the internals pino exports as
 * `pino.symbols`; a logger without them (another implementation, a stub)
 * gets `undefined` from `PredictionLine.for`, and the caller logs through
 * pino as before.
 */
import pino, { type Logger } from 'pino';
import type { CallRecord, PredictionFields, PredictionOutput } from './call-log.js';

const S = pino.symbols;
/** pino 10 has it at run time; its typings do not list it. */
const MSG_PREFIX: symbol | undefined = (pino.symbols as unknown as Record<string, symbol | undefined>)
  .msgPrefixSym;

/** What the line writer reads of a pino logger (pino 10's internals, exported as `pino.symbols`). */
interface PinoInternals {
  readonly [S.lsCacheSym]: Record<number, string>;
  readonly [S.chindingsSym]: string;
  readonly [S.timeSym]: () => string;
  readonly [S.timeSliceIndexSym]: number;
  readonly [S.endSym]: string;
  readonly [S.streamSym]: {
    write(line: string): unknown;
    [S.needsMetadataGsym]?: boolean;
    lastLevel?: number;
    lastObj?: unknown;
    lastMsg?: string;
    lastTime?: string;
    lastLogger?: unknown;
  };
  readonly [S.formattersSym]: { readonly log?: unknown };
  readonly [S.hooksSym]: { readonly streamWrite?: unknown };
  readonly [S.mixinSym]: unknown;
  readonly [S.nestedKeySym]: unknown;
}

const str = JSON.stringify;

/** A number as pino writes a top-level one: non-finite values become null. */
const num = (n: number) => (Number.isFinite(n) ? String(n) : 'null');

function outputJson(o: PredictionOutput): string {
  // JSON.stringify's order is the object's, which the pipeline builds as score, label, group, action, user.
  return str(o);
}

/** Writes prediction lines for one logger; see the module comment. */
export class PredictionLine {
  private readonly redact: ReadonlySet<string>;
  private readonly censor: string;

  private constructor(
    private readonly logger: Logger,
    private readonly internals: PinoInternals,
    redactFields: readonly string[],
  ) {
    this.redact = new Set(redactFields);
    this.censor = str('[redacted]');
  }

  /**
   * The writer for `logger`, or undefined when the logger is not a pino
   * logger this code knows how to write for exactly (a log formatter, a
   * mixin, a stream hook or a nested key would change the line).
   */
  static for(logger: Logger, redactFields: readonly string[]): PredictionLine | undefined {
    const p = logger as unknown as Partial<PinoInternals>;
    if (
      typeof p[S.timeSym] !== 'function' ||
      typeof p[S.chindingsSym] !== 'string' ||
      typeof p[S.endSym] !== 'string' ||
      typeof p[S.lsCacheSym] !== 'object' ||
      typeof p[S.streamSym]?.write !== 'function' ||
      p[S.formattersSym]?.log !== undefined ||
      p[S.hooksSym]?.streamWrite !== undefined ||
      p[S.mixinSym] !== undefined ||
      (MSG_PREFIX !== undefined && ((p as Record<symbol, unknown>)[MSG_PREFIX] ?? '') !== '') ||
      p[S.nestedKeySym] != null
    )
      return undefined;
    return new PredictionLine(logger, p as PinoInternals, redactFields);
  }

  /** The line (with its newline) for a successful call's record, at `level`. */
  format(level: number, record: CallRecord, fields: PredictionFields, msg: string): string {
    const p = this.internals;
    return this.serialize(p[S.lsCacheSym][level] as string, p[S.timeSym](), record, fields, msg);
  }

  /** Writes the line at `level` (`info` for predictions) if the logger logs that level. */
  write(levelName: 'info' | 'debug', record: CallRecord, fields: PredictionFields, msg: string): void {
    const logger = this.logger;
    if (!logger.isLevelEnabled(levelName)) return;
    const level = logger.levels.values[levelName] as number;
    const p = this.internals;
    const time = p[S.timeSym]();
    const line = this.serialize(p[S.lsCacheSym][level] as string, time, record, fields, msg);
    const stream = p[S.streamSym];
    if (stream[S.needsMetadataGsym] === true) {
      // What pino's own write sets for multistream, which picks destinations by lastLevel.
      stream.lastLevel = level;
      stream.lastObj = record;
      stream.lastMsg = msg;
      stream.lastTime = time.slice(p[S.timeSliceIndexSym]);
      stream.lastLogger = logger;
    }
    stream.write(line);
  }

  private serialize(
    levelPart: string,
    time: string,
    r: CallRecord,
    f: PredictionFields,
    msg: string,
  ): string {
    let s =
      levelPart +
      time +
      this.internals[S.chindingsSym] +
      ',"requestId":' +
      str(r.requestId) +
      ',"method":' +
      str(r.method) +
      ',"model":' +
      str(r.model) +
      ',"version":' +
      str(r.version) +
      ',"arm":' +
      str(r.arm) +
      ',"code":' +
      str(r.code) +
      ',"latencyMs":' +
      num(r.latencyMs);
    if (r.message !== undefined) s += `,"message":${str(r.message)}`;
    s += `,"event":${str(f.event)},"experiment":${str(f.experiment)}`;
    if (f.user !== undefined) s += `,"user":${str(f.user)}`;
    s += ',"outputs":[';
    const outputs = f.outputs;
    for (let i = 0; i < outputs.length; i++) {
      if (i > 0) s += ',';
      s += outputJson(outputs[i] as PredictionOutput);
    }
    s += ']';
    const inputs = f.inputs;
    if (inputs !== undefined) {
      s += ',"inputs":[';
      for (let i = 0; i < inputs.length; i++) {
        if (i > 0) s += ',';
        s += this.instance(inputs[i] as Readonly<Record<string, unknown>>);
      }
      s += ']';
    }
    return `${s},"msg":${str(msg)}${this.internals[S.endSym]}`;
  }

  /** One raw record as JSON.stringify writes it, with the redacted fields' values replaced. */
  private instance(rec: Readonly<Record<string, unknown>>): string {
    let s = '{';
    let first = true;
    for (const key in rec) {
      if (!Object.hasOwn(rec, key)) continue;
      const v = rec[key];
      let json: string | undefined;
      if (this.redact.has(key)) json = this.censor;
      else if (typeof v === 'string') json = str(v);
      else if (typeof v === 'number') json = num(v);
      else json = str(v);
      // JSON.stringify leaves out undefined and functions; the Struct decoder makes neither.
      if (json === undefined) continue;
      s += first ? `${str(key)}:${json}` : `,${str(key)}:${json}`;
      first = false;
    }
    return `${s}}`;
  }
}
