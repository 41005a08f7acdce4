/**
 * Unit tests of the call adapter (server/unary-handler.ts) with a fake grpc-js
 * call and callback, a real Metrics on its own registry and a pino logger
 * writing to an injected sink: no server, no network.
 */
import { EventEmitter } from 'node:events';
import { Metadata, type ServerUnaryCall, type ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { Registry } from 'prom-client';
import { loadConfig } from '../../server/config.js';
import { INTERNAL_MESSAGE, notFound, ServingError } from '../../server/errors.js';
import { REQUEST_ID_HEADER } from '../../server/headers.js';
import { createStreamLogger } from '../../server/logger.js';
import { Metrics } from '../../server/metrics.js';
import { type CallContext, UnaryAdapter, withTolerantDecoding } from '../../server/unary-handler.js';
import { LogSink } from '../helpers/server.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** The part of a grpc-js ServerUnaryCall the adapter uses; `cancel()` plays the caller going away. */
class FakeCall<Req> extends EventEmitter {
  cancelled = false;
  readonly metadata = new Metadata();

  constructor(
    readonly request: Req,
    private deadline: Date | number = Number.POSITIVE_INFINITY,
  ) {
    super();
  }

  getDeadline(): Date | number {
    return this.deadline;
  }

  /** The caller cancels (or, with `expired`, its deadline passes): grpc-js emits 'cancelled'. */
  cancel(expired = false): void {
    if (expired) this.deadline = Date.now() - 1;
    this.cancelled = true;
    this.emit('cancelled');
  }
}

interface Settled<Res> {
  err: Partial<ServiceError> | null;
  res: Res | undefined;
}

interface Harness {
  adapter: UnaryAdapter;
  metrics: Metrics;
  logs: LogSink;
  accepting: { value: boolean };
}

function harness(o: { maxInFlight?: number; level?: string } = {}): Harness {
  const config = loadConfig({ LOG_DIR: '', LOG_LEVEL: o.level ?? 'debug' });
  const logs = new LogSink();
  const metrics = new Metrics(new Registry());
  const accepting = { value: true };
  const adapter = new UnaryAdapter({
    logger: createStreamLogger(config.log, logs),
    metrics,
    arm: 'stable',
    maxInFlight: o.maxInFlight ?? 10,
    isAccepting: () => accepting.value,
  });
  return { adapter, metrics, logs, accepting };
}

/** Runs one call through the adapter; `settled` lists every callback invocation. */
function invoke<Req, Res>(
  h: Harness,
  fn: (req: Req, ctx: CallContext) => Promise<Res>,
  call: FakeCall<Req>,
  logLevel: 'info' | 'debug' = 'info',
): Settled<Res>[] {
  const settled: Settled<Res>[] = [];
  const handler = h.adapter.wrap('Test', fn, logLevel);
  handler(call as unknown as ServerUnaryCall<Req, Res>, (err, res) => {
    settled.push({ err: err as Partial<ServiceError> | null, res: res ?? undefined });
  });
  return settled;
}

/** A promise the test settles by hand. */
function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** A handler that records whether the adapter ran it. */
function probe(): { ran: boolean; fn: () => Promise<object> } {
  const p = {
    ran: false,
    fn: async () => {
      p.ran = true;
      return {};
    },
  };
  return p;
}

/** Lets every queued promise reaction run. */
const ticks = () => new Promise((r) => setImmediate(r));

async function requests(m: Metrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await m.requests.get()).values) out[String(v.labels.code)] = v.value;
  return out;
}

async function inFlightGauge(m: Metrics): Promise<number | undefined> {
  return (await m.inFlight.get()).values[0]?.value;
}

describe('UnaryAdapter', () => {
  describe('the callback runs exactly once, whatever the handler does', () => {
    it('resolves: the response, once', async () => {
      const h = harness();
      const settled = invoke(h, async () => ({ ok: 1 }), new FakeCall({}));
      await ticks();
      expect(settled).to.deep.equal([{ err: null, res: { ok: 1 } }]);
    });

    it('rejects with a ServingError: its code and message, and the request id in the trailer', async () => {
      const h = harness();
      const call = new FakeCall({});
      call.metadata.set(REQUEST_ID_HEADER, 'rid-7');
      const settled = invoke(
        h,
        async () => {
          throw notFound('unknown model "x"; models: conversion');
        },
        call,
      );
      await ticks();
      expect(settled).to.have.length(1);
      expect(settled[0]?.err?.code).to.equal(status.NOT_FOUND);
      expect(settled[0]?.err?.details).to.equal('unknown model "x"; models: conversion');
      expect(settled[0]?.err?.metadata?.get(REQUEST_ID_HEADER)).to.deep.equal(['rid-7']);
    });

    for (const [what, fn] of [
      [
        'rejects with a plain Error',
        async () => {
          throw new Error('secret detail of a defect');
        },
      ],
      [
        'throws synchronously (not an async function)',
        () => {
          throw new Error('secret detail of a defect');
        },
      ],
      ['rejects with a non-Error value', () => Promise.reject('secret detail of a defect')],
      ['returns something that is not a promise', () => 'secret detail of a defect' as never],
    ] as [string, () => Promise<unknown>][]) {
      it(`${what}: INTERNAL with the generic message, once`, async () => {
        const h = harness();
        const settled = invoke(h, fn, new FakeCall({}));
        await ticks();
        expect(settled).to.have.length(1);
        expect(settled[0]?.err?.code).to.equal(status.INTERNAL);
        expect(settled[0]?.err?.details).to.equal(INTERNAL_MESSAGE);
        expect(JSON.stringify(settled)).to.not.include('secret detail');
        expect(h.adapter.active).to.equal(0);
      });
    }

    it('settles after the caller cancelled: no second callback, the slot freed once', async () => {
      const h = harness();
      const pending = deferred<{ ok: number }>();
      const call = new FakeCall({});
      const settled = invoke(h, () => pending.promise, call);
      expect(h.adapter.active).to.equal(1);
      call.cancel();
      expect(settled.map((s) => s.err?.code)).to.deep.equal([status.CANCELLED]);
      expect(h.adapter.active).to.equal(0);
      pending.resolve({ ok: 1 });
      await ticks();
      expect(settled).to.have.length(1);
      expect(h.adapter.active).to.equal(0);
      expect(await inFlightGauge(h.metrics)).to.equal(0);
      expect(await requests(h.metrics)).to.deep.equal({ CANCELLED: 1 });
      expect(h.logs.lines.filter((l) => l.msg === 'Test')).to.have.length(1);
    });

    it('still answers once when recording the finished call throws', async () => {
      const h = harness();
      const fields = {};
      Object.defineProperty(fields, 'boom', {
        enumerable: true,
        get() {
          throw new Error('a log field that cannot be read');
        },
      });
      const settled = invoke(
        h,
        async (_req, ctx: CallContext) => {
          ctx.log = fields as never;
          return { ok: 1 };
        },
        new FakeCall({}),
      );
      await ticks();
      expect(settled).to.deep.equal([{ err: null, res: { ok: 1 } }]);
      expect(h.logs.withMsg('failed to record a finished call')).to.have.length(1);
      expect(h.adapter.active).to.equal(0);
    });
  });

  describe('in-flight accounting', () => {
    it('counts a call while its handler runs and frees it on success and on error', async () => {
      const h = harness();
      const ok = deferred<object>();
      const bad = deferred<object>();
      const a = invoke(h, () => ok.promise, new FakeCall({}));
      const b = invoke(h, () => bad.promise, new FakeCall({}));
      expect(h.adapter.active).to.equal(2);
      expect(await inFlightGauge(h.metrics)).to.equal(2);
      ok.resolve({});
      await ticks();
      expect(h.adapter.active).to.equal(1);
      bad.reject(new Error('defect'));
      await ticks();
      expect(h.adapter.active).to.equal(0);
      expect(await inFlightGauge(h.metrics)).to.equal(0);
      expect([a.length, b.length]).to.deep.equal([1, 1]);
      expect(await requests(h.metrics)).to.deep.equal({ OK: 1, INTERNAL: 1 });
    });

    it('a passed deadline frees the slot at once and counts DEADLINE_EXCEEDED', async () => {
      const h = harness();
      const pending = deferred<object>();
      const call = new FakeCall({}, new Date(Date.now() + 60_000));
      const settled = invoke(h, () => pending.promise, call);
      call.cancel(true);
      expect(settled.map((s) => s.err?.code)).to.deep.equal([status.DEADLINE_EXCEEDED]);
      expect(h.adapter.active).to.equal(0);
      pending.reject(new Error('too late'));
      await ticks();
      expect(settled).to.have.length(1);
      expect(await requests(h.metrics)).to.deep.equal({ DEADLINE_EXCEEDED: 1 });
      expect(await inFlightGauge(h.metrics)).to.equal(0);
    });

    it('a call already cancelled on arrival never reaches the handler', async () => {
      const h = harness();
      const call = new FakeCall({});
      call.cancelled = true;
      const handler = probe();
      const settled = invoke(h, handler.fn, call);
      await ticks();
      expect(handler.ran).to.equal(false);
      expect(settled.map((s) => s.err?.code)).to.deep.equal([status.CANCELLED]);
      expect(h.adapter.active).to.equal(0);
    });

    it('over maxInFlight: RESOURCE_EXHAUSTED for the excess only, and the slot is usable again after', async () => {
      const h = harness({ maxInFlight: 2 });
      const held = [deferred<object>(), deferred<object>()];
      const first = held.map((d) => invoke(h, () => d.promise, new FakeCall({})));
      const handler = probe();
      const excess = invoke(h, handler.fn, new FakeCall({}));
      expect(handler.ran).to.equal(false);
      expect(excess).to.have.length(1);
      expect(excess[0]?.err?.code).to.equal(status.RESOURCE_EXHAUSTED);
      expect(excess[0]?.err?.details).to.contain('limit 2');
      expect(h.adapter.active).to.equal(2);
      held[0]?.resolve({});
      await ticks();
      const again = invoke(h, async () => ({ ok: 1 }), new FakeCall({}));
      await ticks();
      expect(again).to.deep.equal([{ err: null, res: { ok: 1 } }]);
      expect(first.map((s) => s.length)).to.deep.equal([1, 0]);
      held[1]?.resolve({});
      await ticks();
      expect(h.adapter.active).to.equal(0);
    });
  });

  it('answers UNAVAILABLE without running the handler while not accepting', async () => {
    const h = harness();
    h.accepting.value = false;
    const handler = probe();
    const settled = invoke(h, handler.fn, new FakeCall({}));
    await ticks();
    expect(handler.ran).to.equal(false);
    expect(settled.map((s) => s.err?.code)).to.deep.equal([status.UNAVAILABLE]);
    expect(h.adapter.active).to.equal(0);
    h.accepting.value = true;
    const next = invoke(h, async () => ({}), new FakeCall({}));
    await ticks();
    expect(next.map((s) => s.err)).to.deep.equal([null]);
  });

  it('answers INVALID_ARGUMENT, naming the reason, for a body the decoder refused', async () => {
    const definition = withTolerantDecoding({
      predict: {
        path: '/x/Predict',
        requestStream: false,
        responseStream: false,
        requestSerialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
        requestDeserialize: (_b: Buffer): unknown => {
          throw new Error('recursion limit exceeded');
        },
        responseSerialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
        responseDeserialize: (b: Buffer): unknown => JSON.parse(b.toString()),
      },
    });
    const h = harness();
    const handler = probe();
    const settled = invoke(
      h,
      handler.fn,
      new FakeCall(definition.predict.requestDeserialize(Buffer.from('x'))),
    );
    await ticks();
    expect(handler.ran).to.equal(false);
    expect(settled.map((s) => s.err?.code)).to.deep.equal([status.INVALID_ARGUMENT]);
    expect(settled[0]?.err?.details).to.equal('the request could not be decoded: recursion limit exceeded');
  });

  describe('request ids', () => {
    async function idOf(header: string | undefined): Promise<string> {
      const h = harness();
      const call = new FakeCall({});
      if (header !== undefined) call.metadata.set(REQUEST_ID_HEADER, header);
      let seen = '';
      invoke(
        h,
        async (_req, ctx: CallContext) => {
          seen = ctx.requestId;
          return {};
        },
        call,
      );
      await ticks();
      expect(h.logs.lines.find((l) => l.msg === 'Test')?.requestId).to.equal(seen);
      return seen;
    }

    it('takes a valid x-request-id header', async () => {
      expect(await idOf('from-header_1.2')).to.equal('from-header_1.2');
      expect(await idOf('x'.repeat(128))).to.equal('x'.repeat(128));
    });

    it('generates a fresh UUID when the header is missing', async () => {
      const [a, b] = [await idOf(undefined), await idOf(undefined)];
      expect(a).to.match(UUID);
      expect(b).to.match(UUID);
      expect(a).to.not.equal(b);
    });

    for (const bad of ['', 'x'.repeat(129), 'has space']) {
      it(`replaces a header that could not travel back in a trailer (${JSON.stringify(bad).slice(0, 20)})`, async () => {
        expect(await idOf(bad)).to.match(UUID);
      });
    }

    it("uses the id a handler set (the body's) in the log line and the error trailer", async () => {
      const h = harness();
      const call = new FakeCall({});
      call.metadata.set(REQUEST_ID_HEADER, 'from-header');
      const settled = invoke(
        h,
        async (_req, ctx: CallContext) => {
          ctx.requestId = 'from-body';
          throw new ServingError(status.INVALID_ARGUMENT, 'bad field');
        },
        call,
      );
      await ticks();
      expect(settled[0]?.err?.metadata?.get(REQUEST_ID_HEADER)).to.deep.equal(['from-body']);
      expect(h.logs.lines.find((l) => l.msg === 'Test')?.requestId).to.equal('from-body');
    });
  });

  describe('one log line per call, at the level of its outcome', () => {
    async function lineOf(
      fn: (req: object, ctx: CallContext) => Promise<object>,
      o: { okLevel?: 'info' | 'debug'; cancel?: boolean } = {},
    ): Promise<Record<string, unknown>[]> {
      const h = harness();
      const call = new FakeCall({});
      call.metadata.set(REQUEST_ID_HEADER, 'line-1');
      invoke(h, fn, call, o.okLevel ?? 'info');
      if (o.cancel) call.cancel();
      await ticks();
      return h.logs.lines.filter((l) => l.requestId === 'line-1');
    }

    it('OK at the method’s level (info), with the handler’s fields, latency and arm', async () => {
      const lines = await lineOf(async (_r, ctx) => {
        ctx.model = 'conversion';
        ctx.version = '20261124T041754Z';
        ctx.log = { predictions: 1 } as never;
        return {};
      });
      expect(lines).to.have.length(1);
      const [line] = lines;
      expect(line).to.include({
        level: 'info',
        msg: 'Test',
        method: 'Test',
        code: 'OK',
        model: 'conversion',
        version: '20261124T041754Z',
        arm: 'stable',
        predictions: 1,
      });
      expect(line?.latencyMs).to.be.a('number').that.is.at.least(0).and.below(1000);
      expect(line).to.not.have.any.keys('err', 'message');
    });

    it('OK at debug for a method logged at debug', async () => {
      const lines = await lineOf(async () => ({}), { okLevel: 'debug' });
      expect(lines.map((l) => [l.level, l.code])).to.deep.equal([['debug', 'OK']]);
    });

    it("a client error at warn, with its message and without the handler's fields", async () => {
      const lines = await lineOf(async (_r, ctx) => {
        ctx.log = { predictions: 1 } as never;
        throw notFound('unknown version');
      });
      expect(lines).to.have.length(1);
      expect(lines[0]).to.include({ level: 'warn', code: 'NOT_FOUND', message: 'unknown version' });
      expect(lines[0]).to.not.have.any.keys('err', 'predictions');
    });

    it('an unexpected error at error, with the cause and its stack and the request id', async () => {
      const lines = await lineOf(async () => {
        throw new Error('the cause');
      });
      expect(lines).to.have.length(1);
      const err = lines[0]?.err as { message: string; stack: string };
      expect(lines[0]).to.include({ level: 'error', code: 'INTERNAL', requestId: 'line-1' });
      expect(err.message).to.equal('the cause');
      expect(err.stack).to.contain('unary-handler.test');
    });

    it('a cancelled call at warn, as CANCELLED', async () => {
      const lines = await lineOf(() => new Promise(() => undefined), { cancel: true });
      expect(lines.map((l) => [l.level, l.code])).to.deep.equal([['warn', 'CANCELLED']]);
    });

    it('nothing below the configured level, while metrics still count the call', async () => {
      const h = harness({ level: 'warn' });
      invoke(h, async () => ({}), new FakeCall({}));
      await ticks();
      expect(h.logs.lines).to.deep.equal([]);
      expect(await requests(h.metrics)).to.deep.equal({ OK: 1 });
    });
  });
});
