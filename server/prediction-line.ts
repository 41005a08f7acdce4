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
 * The raw records are bounded as the root logger's log formatter bounds them
 * (logger.ts, `boundInputs`: LOG_MAX_FIELD_CHARS per string, instances past
 * half of LOG_MAX_LINE_BYTES left out and counted in `inputsOmitted`), read
 * from the formatter itself. Records within every bound (the usual case) are
 * written in one pass with the same accounting; any other goes through
 * `boundInputs` itself. The line cap is the destination's (LogOutput), so it
 * applies to these lines as to pino's.
 *
 * It writes to the logger's own destination, with the level gating and the
 * metadata pino's multistream reads, through the internals pino exports as
 * `pino.symbols`; a logger without them (another implementation, a stub)
 * gets `undefined` from `PredictionLine.for`, and the caller logs through
 * pino as before.
 */
import pino, { type Logger } from 'pino';
import type { CallRecord, PredictionFields, PredictionOutput } from './call-log.js';
import { boundInputs, INPUT_LIMITS, type InputLimits } from './logger.js';

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
  readonly [S.formattersSym]: { readonly log?: { readonly [INPUT_LIMITS]?: InputLimits } };
  readonly [S.hooksSym]: { readonly streamWrite?: unknown };
  readonly [S.mixinSym]: unknown;
  readonly [S.nestedKeySym]: unknown;
}

const str = JSON.stringify;

/** How many input keys PredictionLine keeps quoted before it starts over, and the longest it keeps. */
const QUOTED_KEYS_MAX = 1024;
const QUOTED_KEY_MAX_CHARS = 64;

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
  /** What `boundInputs` counted for the last instance `simpleInstance` wrote. */
  private used = 0;
  /** The logger's time function is pino's `isoTime`, so one string serves every line of a millisecond. */
  private readonly isoTime: boolean;
  private timeMs = Number.NaN;
  private timePart = '';
  /** The last call's method, model, version, arm and code, and their part of the line (constant under load). */
  private callKey: readonly string[] = [];
  private callPart = '';
  /** The same for the event and experiment. */
  private eventKey: readonly string[] = [];
  private eventPart = '';
  /** Input keys as JSON (`"userId"`): the same few in every request. Cleared when full. */
  private readonly quotedKeys = new Map<string, string>();

  private constructor(
    private readonly logger: Logger,
    private readonly internals: PinoInternals,
    redactFields: readonly string[],
    /** The logger's input bounds; undefined: its lines are not bounded. */
    private readonly limits: InputLimits | undefined,
  ) {
    this.redact = new Set(redactFields);
    this.censor = str('[redacted]');
    this.isoTime = internals[S.timeSym] === pino.stdTimeFunctions.isoTime;
  }

  /** `JSON.stringify(key)`, remembered for the keys seen lately. */
  private quoted(key: string): string {
    // Only short keys are kept: a client's long distinct keys must not pin memory.
    if (key.length > QUOTED_KEY_MAX_CHARS) return str(key);
    let q = this.quotedKeys.get(key);
    if (q === undefined) {
      if (this.quotedKeys.size >= QUOTED_KEYS_MAX) this.quotedKeys.clear();
      q = str(key);
      this.quotedKeys.set(key, q);
    }
    return q;
  }

  /** What the logger's time function returns now; pino's `isoTime` is computed once per millisecond. */
  private time(): string {
    if (!this.isoTime) return this.internals[S.timeSym]();
    const now = Date.now();
    if (now !== this.timeMs) {
      this.timeMs = now;
      this.timePart = `,"time":"${new Date(now).toISOString()}"`;
    }
    return this.timePart;
  }

  /** `,"method":…,"code":…` for the call, from the last line's when the five values are the same. */
  private callFields(r: CallRecord): string {
    const k = this.callKey;
    if (k[0] === r.method && k[1] === r.model && k[2] === r.version && k[3] === r.arm && k[4] === r.code) {
      return this.callPart;
    }
    this.callKey = [r.method, r.model, r.version, r.arm, r.code];
    this.callPart = `,"method":${str(r.method)},"model":${str(r.model)},"version":${str(r.version)},"arm":${str(r.arm)},"code":${str(r.code)}`;
    return this.callPart;
  }

  /** `,"event":…,"experiment":…`, from the last line's when both are the same. */
  private eventFields(f: PredictionFields): string {
    const k = this.eventKey;
    if (k[0] === f.event && k[1] === f.experiment) return this.eventPart;
    this.eventKey = [f.event, f.experiment];
    this.eventPart = `,"event":${str(f.event)},"experiment":${str(f.experiment)}`;
    return this.eventPart;
  }

  /**
   * The writer for `logger`, or undefined when the logger is not a pino
   * logger this code knows how to write for exactly (a log formatter other
   * than logger.ts's input bounds, a mixin, a stream hook or a nested key
   * would change the line).
   */
  static for(logger: Logger, redactFields: readonly string[]): PredictionLine | undefined {
    const p = logger as unknown as Partial<PinoInternals>;
    const formatter = p[S.formattersSym]?.log;
    const limits = formatter?.[INPUT_LIMITS];
    if (
      typeof p[S.timeSym] !== 'function' ||
      typeof p[S.chindingsSym] !== 'string' ||
      typeof p[S.endSym] !== 'string' ||
      typeof p[S.lsCacheSym] !== 'object' ||
      typeof p[S.streamSym]?.write !== 'function' ||
      (formatter !== undefined && limits === undefined) ||
      p[S.hooksSym]?.streamWrite !== undefined ||
      p[S.mixinSym] !== undefined ||
      (MSG_PREFIX !== undefined && ((p as Record<symbol, unknown>)[MSG_PREFIX] ?? '') !== '') ||
      p[S.nestedKeySym] != null
    )
      return undefined;
    return new PredictionLine(logger, p as PinoInternals, redactFields, limits);
  }

  /** Writes the line at `level` (`info` for predictions) if the logger logs that level. */
  write(levelName: 'info' | 'debug', record: CallRecord, fields: PredictionFields, msg: string): void {
    const logger = this.logger;
    if (!logger.isLevelEnabled(levelName)) return;
    const level = logger.levels.values[levelName] as number;
    const p = this.internals;
    const time = this.time();
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
      this.callFields(r) +
      ',"latencyMs":' +
      num(r.latencyMs);
    if (r.message !== undefined) s += `,"message":${str(r.message)}`;
    s += this.eventFields(f);
    if (f.user !== undefined) s += `,"user":${str(f.user)}`;
    if (f.forced !== undefined) s += `,"forced":${str(f.forced)}`;
    if (f.pinned !== undefined) s += ',"pinned":true';
    s += ',"outputs":[';
    const outputs = f.outputs;
    for (let i = 0; i < outputs.length; i++) {
      if (i > 0) s += ',';
      s += outputJson(outputs[i] as PredictionOutput);
    }
    s += ']';
    if (f.inputs !== undefined)
      s += this.limits ? this.boundedInputs(f.inputs, this.limits) : this.inputs(f.inputs);
    return `${s},"msg":${str(msg)}${this.internals[S.endSym]}`;
  }

  /** `,"inputs":[…]` with every instance as it is. */
  private inputs(inputs: readonly Readonly<Record<string, unknown>>[]): string {
    let s = ',"inputs":[';
    for (let i = 0; i < inputs.length; i++) {
      if (i > 0) s += ',';
      s += this.instance(inputs[i] as Readonly<Record<string, unknown>>);
    }
    return `${s}]`;
  }

  /**
   * `,"inputs":[…]` (and `,"inputsOmitted":n`) as `boundInputs` leaves them.
   * Its accounting, replayed: each kept key costs its length + 4, a string
   * its length + 3, any other value 8; no further instance is kept once the
   * count reaches the budget. An instance with a nested value, a string or key
   * over the limit, or more than 64 fields would be changed by the bounds, so
   * then the whole list goes through `boundInputs` itself.
   */
  private boundedInputs(inputs: readonly Readonly<Record<string, unknown>>[], limits: InputLimits): string {
    let s = ',"inputs":[';
    let used = 0;
    for (let i = 0; i < inputs.length; i++) {
      if (used >= limits.budget) return `${s}],"inputsOmitted":${inputs.length - i}`;
      const json = this.simpleInstance(inputs[i] as Readonly<Record<string, unknown>>, limits.maxChars);
      if (json === undefined) return this.viaBoundInputs(inputs, limits);
      s += i > 0 ? `,${json}` : json;
      used += this.used;
    }
    return `${s}]`;
  }

  /** What the formatter would make of `inputs`, serialised here (the bounded copy is plain JSON). */
  private viaBoundInputs(inputs: readonly Readonly<Record<string, unknown>>[], limits: InputLimits): string {
    const bounded = boundInputs({ inputs }, limits.maxChars, limits.budget);
    let s = this.inputs(bounded.inputs as Readonly<Record<string, unknown>>[]);
    if (bounded.inputsOmitted !== undefined) s += `,"inputsOmitted":${num(bounded.inputsOmitted as number)}`;
    return s;
  }

  /**
   * One instance that the bounds leave as it is (at most 64 fields, keys and
   * strings within `maxChars`, no nested value), with its cost in `this.used`;
   * undefined for any other.
   */
  private simpleInstance(rec: Readonly<Record<string, unknown>>, maxChars: number): string | undefined {
    let s = '{';
    let first = true;
    let used = 0;
    let fields = 0;
    for (const key in rec) {
      if (!Object.hasOwn(rec, key)) continue;
      if (++fields > 64 || key.length > maxChars) return undefined;
      used += key.length + 4;
      const v = rec[key];
      let json: string | undefined;
      if (typeof v === 'string') {
        if (v.length > maxChars) return undefined;
        used += v.length + 3;
        json = this.redact.has(key) ? this.censor : str(v);
      } else if (v !== null && typeof v === 'object') {
        return undefined;
      } else {
        used += 8;
        if (this.redact.has(key)) json = this.censor;
        else if (typeof v === 'number') json = num(v);
        else json = str(v);
      }
      // JSON.stringify leaves out undefined and functions; the Struct decoder makes neither.
      if (json === undefined) continue;
      s += first ? `${this.quoted(key)}:${json}` : `,${this.quoted(key)}:${json}`;
      first = false;
    }
    this.used = used;
    return `${s}}`;
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
      s += first ? `${this.quoted(key)}:${json}` : `,${this.quoted(key)}:${json}`;
      first = false;
    }
    return `${s}}`;
  }
}
