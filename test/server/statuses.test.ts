/**
 * The status of calls no well-behaved client makes, and the status the server
 * records for calls that run out of time: never INTERNAL for a caller's
 * mistake, and the same code the client saw.
 */
import { Metadata, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { frame, RawClient } from '../helpers/raw-grpc.js';
import { SAMPLE_RECORD, startApp, type TestApp, waitFor } from '../helpers/server.js';

/** Field 2, length-delimited, 5 bytes announced and none sent: every decoder refuses it. */
const UNDECODABLE = Buffer.from([0x12, 0x05]);

describe('statuses of malformed calls', function () {
  this.timeout(30_000);
  let t: TestApp;
  let raw: RawClient;
  before(async () => {
    t = await startApp();
    raw = new RawClient(`127.0.0.1:${t.ports.grpc}`);
  });
  after(async () => {
    raw?.close();
    await t?.stop();
  });

  for (const method of ['Check', 'List']) {
    it(`answers INVALID_ARGUMENT, not INTERNAL, to a body grpc.health.v1.Health/${method} cannot decode`, async () => {
      const r = await raw.call({ path: `/grpc.health.v1.Health/${method}`, body: UNDECODABLE });
      expect(r.grpcStatus, r.grpcMessage).to.equal(status.INVALID_ARGUMENT);
      expect(r.grpcMessage).to.match(/could not be decoded/);
    });
  }

  it('still answers a well-formed health Check', async () => {
    const r = await raw.call({ path: '/grpc.health.v1.Health/Check', body: Buffer.alloc(0) });
    expect(r.grpcStatus).to.equal(status.OK);
  });

  for (const value of ['abc', '10', '-5m', '5x', '123456789S', '1.5S', '']) {
    it(`answers INVALID_ARGUMENT, not INTERNAL, to grpc-timeout "${value}"`, async () => {
      const r = await raw.call({
        path: '/inference.v1.InferenceService/ListModels',
        body: Buffer.alloc(0),
        headers: { 'grpc-timeout': value },
      });
      expect(r.grpcStatus, r.grpcMessage).to.equal(status.INVALID_ARGUMENT);
      expect(r.grpcMessage).to.match(/grpc-timeout/);
    });
  }

  for (const encoding of ['gzip', 'deflate']) {
    it(`answers INVALID_ARGUMENT, not INTERNAL, to a ${encoding} body that does not decompress`, async () => {
      const r = await raw.call({
        path: '/inference.v1.InferenceService/ListModels',
        body: frame(Buffer.from('not compressed at all'), true),
        framed: false,
        headers: { 'grpc-encoding': encoding },
      });
      expect(r.grpcStatus, r.grpcMessage).to.equal(status.INVALID_ARGUMENT);
      expect(r.grpcMessage).to.match(/decompressed/);
    });
  }

  it('accepts every well-formed grpc-timeout unit', async () => {
    for (const value of ['5H', '2M', '10S', '3000m', '100000u', '99999999n']) {
      const r = await raw.call({
        path: '/inference.v1.InferenceService/ListModels',
        body: Buffer.alloc(0),
        headers: { 'grpc-timeout': value },
      });
      expect(r.grpcStatus, `${value}: ${r.grpcMessage}`).to.equal(status.OK);
    }
  });
});

describe('status accounting of calls whose deadline passes', function () {
  this.timeout(60_000);
  let t: TestApp;
  before(async () => {
    // Micro-batching that waits a whole second for a batch holds every call past its deadline.
    t = await startApp({ MODEL_BATCHING: 'conversion=4096/1000ms' });
  });
  after(async () => t?.stop());

  it('records a call the client saw expire (50 ms deadline) as DEADLINE_EXCEEDED, never CANCELLED', async () => {
    const n = 120;
    const seen: number[] = [];
    for (let round = 0; round < n / 20; round++) {
      await Promise.all(
        Array.from(
          { length: 20 },
          () =>
            new Promise<void>((resolve) => {
              t.client.predict(
                { model: 'conversion', version: '', requestId: '', instances: [{ ...SAMPLE_RECORD }] },
                new Metadata(),
                { deadline: Date.now() + 50 },
                (err) => {
                  seen.push(err?.code ?? status.OK);
                  resolve();
                },
              );
            }),
        ),
      );
    }
    expect(seen.every((c) => c === status.DEADLINE_EXCEEDED)).to.equal(true);
    const count = async () => {
      const byCode = { DEADLINE_EXCEEDED: 0, CANCELLED: 0 };
      for (const line of (await t.registry.metrics()).split('\n')) {
        const m = /^inference_requests_total\{.*code="(\w+)".*\} (\d+)/.exec(line);
        if (m?.[1] === 'DEADLINE_EXCEEDED' || m?.[1] === 'CANCELLED') byCode[m[1]] += Number(m[2]);
      }
      return byCode;
    };
    // The server records a call when it sees the cancel or its own deadline, after the client
    // gave up; a call cancelled before its handler started is never a request. Wait until the
    // count settles (longer than the batcher's 1 s delay).
    let last = '';
    let stableSince = Date.now();
    await waitFor(
      'the recorded counts to settle',
      async () => {
        const now = JSON.stringify(await count());
        if (now !== last) {
          last = now;
          stableSince = Date.now();
        }
        return Date.now() - stableSince > 1500;
      },
      15_000,
      100,
    );
    const byCode = await count();
    expect(byCode.CANCELLED, JSON.stringify(byCode)).to.equal(0);
    expect(byCode.DEADLINE_EXCEEDED).to.be.greaterThan(n / 2);
  });

  it('still records a call its client cancels well before the deadline as CANCELLED', async () => {
    const before = await t.registry.getSingleMetricAsString('inference_requests_total');
    const call = t.client.predict(
      { model: 'conversion', version: '', requestId: '', instances: [{ ...SAMPLE_RECORD }] },
      new Metadata(),
      { deadline: Date.now() + 5000 },
      () => undefined,
    );
    await new Promise((r) => setTimeout(r, 100));
    call.cancel();
    await waitFor('the cancel recorded', async () => {
      const text = await t.registry.getSingleMetricAsString('inference_requests_total');
      return text !== before && /code="CANCELLED"/.test(text);
    });
  });
});
