import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:http2';
import { join } from 'node:path';
import { Metadata, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { grpcFrame } from '../../scripts/lib/load/h2-generator.js';
import { asPredictionRecord } from '../../server/call-log.js';
import { INTERNAL_MESSAGE } from '../../server/errors.js';
import {
  type GetModelMetadataResponse,
  type ListModelsResponse,
  PredictRequest,
} from '../../server/generated/inference/v1/inference.js';
import { AB_OVERRIDE_HEADER } from '../../server/headers.js';
import {
  asLogged,
  copyModels,
  DEMO_MODELS,
  DEMO_VERSIONS,
  expectGrpcError,
  NEWER,
  OLDER,
  predict,
  removeDir,
  SAMPLE_RECORD,
  startApp,
  type TestApp,
  waitFor,
} from '../helpers/server.js';

interface Golden {
  referenceTime: string;
  cases: { id: string; record: Record<string, unknown>; score: number; label: number }[];
}

/**
 * One unary call over raw HTTP/2 (gRPC's wire format: a 5-byte length prefix, then
 * the message) with a `grpc-timeout` header and no client-side deadline; resolves
 * with the grpc-status the server ends it with.
 */
function unaryWithTimeout(
  port: number,
  path: string,
  message: Uint8Array,
  grpcTimeout: string,
): Promise<{ grpcStatus: string | undefined }> {
  return new Promise((resolve, reject) => {
    const session = connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({
      ':method': 'POST',
      ':path': path,
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': grpcTimeout,
    });
    let grpcStatus: string | undefined;
    const take = (h: Record<string, unknown>) => {
      if (h['grpc-status'] !== undefined) grpcStatus = String(h['grpc-status']);
    };
    req.on('response', take);
    req.on('trailers', take);
    req.on('data', () => undefined);
    req.on('error', reject);
    req.on('close', () => {
      session.close();
      resolve({ grpcStatus });
    });
    req.end(grpcFrame(message));
  });
}

function golden(version: string): Golden {
  return JSON.parse(readFileSync(join(DEMO_MODELS, 'conversion', version, 'golden.json'), 'utf8')) as Golden;
}

describe('Predict (real server, real ONNX Runtime, demo models)', function () {
  this.timeout(30_000);
  let t: TestApp;
  const referenceTime = Date.parse(golden(NEWER).referenceTime);

  let startedAt = 0;

  before(async () => {
    startedAt = Date.now();
    // The clock is fixed at the golden vectors' reference time, so age features match Python's.
    t = await startApp({ MAX_BATCH_INSTANCES: '256' }, () => referenceTime);
  });
  after(async () => t.stop());

  it('answers the seed sample exactly as written, with the serving version and a stable-arm prediction', async () => {
    const res = await predict(t.client, { requestId: 'r-1', instances: [{ ...SAMPLE_RECORD }] });
    expect(res.model).to.equal('conversion');
    expect(res.version).to.equal(NEWER);
    expect(res.requestId).to.equal('r-1');
    expect(res.arm).to.equal('stable');
    expect(res.predictions).to.have.length(1);
    const [p] = res.predictions;
    const g = golden(NEWER).cases.find((c) => c.id === 'seed-sample');
    expect(g, 'golden has the seed sample').to.not.equal(undefined);
    expect(Math.abs((p?.score ?? -1) - (g?.score ?? 2))).to.be.at.most(1e-5);
    expect(p?.label).to.equal(g?.label);
    expect(p?.group).to.equal('baseline');
    expect(p?.action).to.equal(p?.label);
  });

  for (const version of DEMO_VERSIONS) {
    it(`reproduces every golden vector of ${version} to 1e-5 in one batch`, async () => {
      const g = golden(version);
      const res = await predict(t.client, { version, instances: g.cases.map((c) => c.record) });
      expect(res.version).to.equal(version);
      expect(res.predictions).to.have.length(g.cases.length);
      res.predictions.forEach((p, i) => {
        const c = g.cases[i];
        expect(Math.abs(p.score - (c?.score ?? 2)), `case ${c?.id}`).to.be.at.most(1e-5);
        expect(p.label, `case ${c?.id}`).to.equal(c?.label);
      });
    });
  }

  it('generates and returns a request id when none is given', async () => {
    const a = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
    const b = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
    expect(a.requestId).to.match(/^[0-9a-f-]{36}$/);
    expect(a.requestId).to.not.equal(b.requestId);
  });

  it('takes the request id from x-request-id metadata when the body has none', async () => {
    const md = new Metadata();
    md.set('x-request-id', 'from-header');
    const res = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] }, md);
    expect(res.requestId).to.equal('from-header');
  });

  it('logs each prediction at info with request id, model, version, inputs, outputs and latency', async () => {
    const sentAt = performance.now();
    await predict(t.client, { requestId: 'log-me', instances: [{ ...SAMPLE_RECORD }] });
    const roundTripMs = performance.now() - sentAt;
    await waitFor('the prediction log line', () => t.logs.lines.some((l) => l.requestId === 'log-me'));
    const line = t.logs.lines.find((l) => l.requestId === 'log-me') as Record<string, unknown>;
    expect(line.level).to.equal('info');
    expect(line.msg).to.equal('Predict');
    expect(line.model).to.equal('conversion');
    expect(line.version).to.equal(NEWER);
    expect(line.code).to.equal('OK');
    // Server-side time: more than nothing, and within what the client waited.
    expect(line.latencyMs).to.be.a('number').that.is.greaterThan(0).and.at.most(roundTripMs);
    // By default the personal fields are masked (LOG_REDACT_FIELDS=userId,birthday,deviceName).
    expect(line.inputs).to.deep.equal([asLogged(SAMPLE_RECORD)]);
    expect((line.inputs as Record<string, unknown>[])[0]?.birthday).to.equal('[redacted]');
    // The reader's parser (call-log.ts, used by the A/B readout) accepts the writer's line:
    // a field renamed on one side only fails here.
    const record = asPredictionRecord(line);
    expect(record, JSON.stringify(line)).to.not.equal(undefined);
    expect(record?.outputs).to.have.length(1);
    expect(record?.arm).to.equal('stable');
    // No x-user-id: the instance's userId is the A/B key, logged as a pseudonym, never raw.
    const user = record?.outputs[0]?.user;
    expect(user).to.match(/^p_[A-Za-z0-9_-]{22}$/);
    expect(JSON.stringify(line)).to.not.include(String(SAMPLE_RECORD.userId));
  });

  it('records a forced arm (one valid x-ab-group) and a pinned version on the line, and nothing on an ordinary call', async () => {
    const header = (...values: string[]) => {
      const md = new Metadata();
      for (const v of values) md.add(AB_OVERRIDE_HEADER, v);
      return md;
    };
    const calls: [string, Partial<PredictRequest>, Metadata][] = [
      ['plain', {}, header()],
      ['forced', {}, header('canary')],
      ['pinned', { version: OLDER }, header()],
      ['both', { version: NEWER }, header('stable')],
      // Envoy's QA routes match one exact value; anything else takes the split there, so it is no override.
      ['unknown-value', {}, header('Canary')],
      ['two-values', {}, header('canary', 'canary')],
    ];
    for (const [requestId, req, md] of calls) {
      await predict(t.client, { requestId, instances: [{ ...SAMPLE_RECORD }], ...req }, md);
    }
    const lineOf = (id: string) => t.logs.lines.find((l) => l.requestId === id);
    await waitFor('the routing lines', () => calls.every(([id]) => lineOf(id) !== undefined));
    const routing = calls.map(([id]) => {
      const record = asPredictionRecord(lineOf(id));
      expect(record, id).to.not.equal(undefined);
      return [id, record?.forced, record?.pinned];
    });
    expect(routing).to.deep.equal([
      ['plain', undefined, undefined],
      ['forced', 'canary', undefined],
      ['pinned', undefined, true],
      ['both', 'stable', true],
      ['unknown-value', undefined, undefined],
      ['two-values', undefined, undefined],
    ]);
    // An ordinary call's line carries neither key (not even as null): its size is unchanged.
    expect(lineOf('plain')).to.not.have.any.keys('forced', 'pinned');
    expect(lineOf('pinned')?.version).to.equal(OLDER);
    // The parser refuses a routing field the server never writes.
    expect(asPredictionRecord({ ...lineOf('plain'), forced: 'qa' })).to.equal(undefined);
    expect(asPredictionRecord({ ...lineOf('plain'), pinned: false })).to.equal(undefined);
  });

  it('lists models and versions, and describes a version', async () => {
    const list = await new Promise<ListModelsResponse>((resolve, reject) =>
      t.client.listModels({}, (err, res) => (err ? reject(err) : resolve(res))),
    );
    expect(list.models).to.have.length(1);
    expect(list.models[0]?.servingVersion).to.equal(NEWER);
    expect(list.models[0]?.versions.map((v) => v.version)).to.deep.equal([...DEMO_VERSIONS].reverse());
    const meta = await new Promise<GetModelMetadataResponse>((resolve, reject) =>
      t.client.getModelMetadata({ model: 'conversion', version: OLDER }, (err, res) =>
        err ? reject(err) : resolve(res),
      ),
    );
    expect(meta.version).to.equal(OLDER);
    expect(meta.family).to.equal('lr');
    const manifest = JSON.parse(
      readFileSync(join(DEMO_MODELS, 'conversion', OLDER, 'model.json'), 'utf8'),
    ) as { threshold: number; sha256: string };
    expect(meta.threshold).to.equal(manifest.threshold);
    expect(meta.sha256).to.equal(manifest.sha256);
    // Loaded by this suite's server (a wall-clock time, not the fixed request clock).
    expect(meta.loadedAt?.getTime()).to.be.within(startedAt, Date.now());
    const birthday = meta.inputs.find((f) => f.name === 'birthday');
    expect(birthday).to.include({ type: 'string', required: true, transform: 'age', columns: 1 });
    expect(meta.featureNames.length).to.equal(meta.inputs.reduce((n, f) => n + f.columns, 0));
  });

  describe('bad input gets a clear status', () => {
    // After every bad request, whichever ran and in whatever order, the server still serves.
    afterEach(async () => {
      const res = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
      expect(res.predictions, 'a good request after the bad one').to.have.length(1);
    });

    it('unknown model → NOT_FOUND naming the models that exist', async () => {
      const err = await expectGrpcError(
        predict(t.client, { model: 'nope', instances: [{ ...SAMPLE_RECORD }] }),
      );
      expect(err.code).to.equal(status.NOT_FOUND);
      expect(err.details).to.contain('"nope"').and.contain('conversion');
    });

    it('unknown version → NOT_FOUND naming the loaded versions', async () => {
      const err = await expectGrpcError(
        predict(t.client, { version: '20000101T000000Z', instances: [{ ...SAMPLE_RECORD }] }),
      );
      expect(err.code).to.equal(status.NOT_FOUND);
      expect(err.details).to.contain(NEWER).and.contain(OLDER);
    });

    it('missing required field → INVALID_ARGUMENT naming the instance index and field', async () => {
      const { birthday: _omit, ...record } = SAMPLE_RECORD;
      const err = await expectGrpcError(predict(t.client, { instances: [{ ...SAMPLE_RECORD }, record] }));
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.contain('instances[1].birthday').and.contain('required');
    });

    it('wrong type → INVALID_ARGUMENT naming the field', async () => {
      const err = await expectGrpcError(
        predict(t.client, { instances: [{ ...SAMPLE_RECORD, appId: '20000' }] }),
      );
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.contain('instances[0].appId').and.contain('number');
    });

    it('unparsable date → INVALID_ARGUMENT naming the field', async () => {
      const err = await expectGrpcError(
        predict(t.client, { instances: [{ ...SAMPLE_RECORD, createTime: '02/11/2020' }] }),
      );
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.contain('instances[0].createTime').and.contain('ISO 8601');
    });

    it("a date outside the manifest's range → INVALID_ARGUMENT naming the field", async () => {
      const err = await expectGrpcError(
        predict(t.client, {
          instances: [{ ...SAMPLE_RECORD }, { ...SAMPLE_RECORD, createTime: '9999-01-01' }],
        }),
      );
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.contain('instances[1].createTime').and.contain("outside the manifest's range");
    });

    it('NaN → INVALID_ARGUMENT naming the field', async () => {
      const err = await expectGrpcError(
        predict(t.client, { instances: [{ ...SAMPLE_RECORD, channel: Number.NaN }] }),
      );
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.contain('instances[0].channel').and.contain('NaN');
    });

    it('Infinity → INVALID_ARGUMENT naming the field', async () => {
      const err = await expectGrpcError(
        predict(t.client, { instances: [{ ...SAMPLE_RECORD, countryId: Number.POSITIVE_INFINITY }] }),
      );
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.contain('instances[0].countryId').and.contain('Infinity');
    });

    it('empty instances → INVALID_ARGUMENT', async () => {
      const err = await expectGrpcError(predict(t.client, { instances: [] }));
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.contain('instances is empty');
    });

    it('more instances than the limit (256) → INVALID_ARGUMENT', async () => {
      const instances = Array.from({ length: 257 }, () => ({ ...SAMPLE_RECORD }));
      const err = await expectGrpcError(predict(t.client, { instances }));
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.contain('257').and.contain('256');
      const ok = await predict(t.client, { instances: instances.slice(0, 256) });
      expect(ok.predictions).to.have.length(256);
    });

    it('a body nested beyond the decoder recursion limit → INVALID_ARGUMENT, not INTERNAL', async () => {
      let deep: Record<string, unknown> = { x: 1 };
      for (let i = 0; i < 150; i++) deep = { n: deep };
      const err = await expectGrpcError(
        predict(t.client, { instances: [{ ...SAMPLE_RECORD, extra: deep }] }),
      );
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.contain('could not be decoded').and.contain('recursion limit');
    });

    it('a request id that could not travel in a trailer → INVALID_ARGUMENT, and the server lives on', async () => {
      // Non-ASCII or control characters once made the error trailer throw and crashed the process.
      for (const requestId of ['é', 'line\nbreak', 'x'.repeat(129)]) {
        const err = await expectGrpcError(
          predict(t.client, { model: 'nope', requestId, instances: [{ ...SAMPLE_RECORD }] }),
        );
        expect(err.code).to.equal(status.INVALID_ARGUMENT);
        expect(err.details).to.contain('requestId must be 1 to 128 printable ASCII');
      }
      expect((await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] })).predictions).to.have.length(1);
    });

    it('an x-request-id header that is not a valid id is replaced by a generated one', async () => {
      const md = new Metadata();
      md.set('x-request-id', 'y'.repeat(500));
      const res = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] }, md);
      expect(res.requestId).to.match(/^[0-9a-f-]{36}$/);
    });

    it('a huge or malformed model name → INVALID_ARGUMENT without echoing it', async () => {
      const err = await expectGrpcError(
        predict(t.client, { model: 'm'.repeat(100_000), instances: [{ ...SAMPLE_RECORD }] }),
      );
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details.length).to.be.lessThan(200);
      const bad = await expectGrpcError(
        predict(t.client, { model: '../etc', instances: [{ ...SAMPLE_RECORD }] }),
      );
      expect(bad.code).to.equal(status.INVALID_ARGUMENT);
    });

    it('a malformed version → INVALID_ARGUMENT naming the expected shape', async () => {
      const err = await expectGrpcError(
        predict(t.client, { version: 'latest', instances: [{ ...SAMPLE_RECORD }] }),
      );
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.contain('20261120T101500Z');
    });

    it('missing model name → INVALID_ARGUMENT', async () => {
      const err = await expectGrpcError(predict(t.client, { model: '', instances: [{ ...SAMPLE_RECORD }] }));
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.contain('model is required');
    });
  });
});

describe('Predict limits and availability', function () {
  this.timeout(30_000);
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) removeDir(d);
  });

  it('a message over MAX_MESSAGE_BYTES → RESOURCE_EXHAUSTED, and the server keeps serving', async () => {
    const t = await startApp({ MAX_MESSAGE_BYTES: '65536' });
    try {
      const err = await expectGrpcError(
        predict(t.client, { instances: [{ ...SAMPLE_RECORD, deviceName: 'x'.repeat(70_000) }] }),
      );
      expect(err.code).to.equal(status.RESOURCE_EXHAUSTED);
      const res = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
      expect(res.predictions).to.have.length(1);
    } finally {
      await t.stop();
    }
  });

  it('more requests in flight than MAX_IN_FLIGHT → RESOURCE_EXHAUSTED for the excess only', async () => {
    const t = await startApp({ MAX_IN_FLIGHT: '1' });
    try {
      const batch = Array.from({ length: 256 }, () => ({ ...SAMPLE_RECORD }));
      const results = await Promise.allSettled(
        Array.from({ length: 40 }, () => predict(t.client, { instances: batch })),
      );
      const codes = results.map((r) =>
        r.status === 'fulfilled' ? status.OK : (r.reason as { code: status }).code,
      );
      expect(codes).to.include(status.OK);
      expect(codes).to.include(status.RESOURCE_EXHAUSTED);
      expect(codes.every((c) => c === status.OK || c === status.RESOURCE_EXHAUSTED)).to.equal(true);
    } finally {
      await t.stop();
    }
  });

  it('no model loaded yet → UNAVAILABLE, and health NOT_SERVING', async () => {
    const root = copyModels();
    dirs.push(root);
    // The only version is corrupt, so the model exists but has nothing to serve.
    for (const v of readdirSync(join(root, 'conversion'))) removeDir(join(root, 'conversion', v));
    mkdirSync(join(root, 'conversion', '20260101T000000Z'));
    cpSync(
      join(DEMO_MODELS, 'conversion', OLDER, 'model.json'),
      join(root, 'conversion', '20260101T000000Z', 'model.json'),
    );
    writeFileSync(join(root, 'conversion', '20260101T000000Z', 'model.onnx'), 'not an onnx file');
    const t = await startApp({ MODEL_ROOT: root });
    try {
      const err = await expectGrpcError(predict(t.client, { instances: [{ ...SAMPLE_RECORD }] }));
      expect(err.code).to.equal(status.UNAVAILABLE);
      expect(err.details).to.contain('no loaded version');
      expect(t.app.health.status).to.equal('NOT_SERVING');
    } finally {
      await t.stop();
    }
  });

  it('a caller whose deadline passes is counted as DEADLINE_EXCEEDED and frees its slot at once', async () => {
    // A long batching delay holds the call past its 50 ms deadline.
    const t = await startApp({ MODEL_BATCHING: 'conversion=64/1000ms' });
    try {
      const runs = async () =>
        (await t.registry.getSingleMetric('inference_model_run_duration_seconds')?.get())?.values.find(
          (v) => (v as { metricName?: string }).metricName === 'inference_model_run_duration_seconds_count',
        )?.value ?? 0;
      const runsBefore = await runs();
      // A grpc-js client cancels at its own deadline, and its RST_STREAM can reach the
      // server before the server's deadline (arrival + grpc-timeout) passes: the server
      // then sees a plain cancellation. Over raw HTTP/2 nothing cancels, so only the
      // deadline can end the call.
      const answer = await unaryWithTimeout(
        t.ports.grpc,
        '/inference.v1.InferenceService/Predict',
        PredictRequest.encode({
          model: 'conversion',
          version: '',
          requestId: 'late-1',
          instances: [{ ...SAMPLE_RECORD }],
        }).finish(),
        '50m',
      );
      expect(answer.grpcStatus).to.equal(String(status.DEADLINE_EXCEEDED));
      const app = t;
      const count = async (code: string) =>
        (await app.registry.getSingleMetric('inference_requests_total')?.get())?.values.find(
          (v) => v.labels.code === code,
        )?.value ?? 0;
      await waitFor(
        'the call to be recorded as DEADLINE_EXCEEDED',
        async () => (await count('DEADLINE_EXCEEDED')) === 1,
      );
      expect(await count('OK')).to.equal(0);
      const inFlight = (await t.registry.getSingleMetric('inference_in_flight_requests')?.get())?.values[0]
        ?.value;
      expect(inFlight).to.equal(0);
      // At once: the slot is free while the batch holding the call has not even run.
      expect(await runs(), 'model runs since the call').to.equal(runsBefore);
    } finally {
      await t.stop();
    }
  });

  it('anything unexpected → INTERNAL with a generic message; the cause is logged with the request id', async () => {
    const t = await startApp();
    try {
      // Simulate a defect: the serving version's ONNX session is released under the repository's feet.
      await t.app.repository.resolve('conversion', '').retire();
      const err = await expectGrpcError(
        predict(t.client, { requestId: 'boom-1', instances: [{ ...SAMPLE_RECORD }] }),
      );
      expect(err.code).to.equal(status.INTERNAL);
      expect(err.details).to.equal(INTERNAL_MESSAGE);
      await waitFor('the error log line', () =>
        t.logs.lines.some((l) => l.level === 'error' && l.requestId === 'boom-1' && l.err !== undefined),
      );
      // One line per call: the per-call line carries the cause, no second error line.
      expect(t.logs.lines.filter((l) => l.requestId === 'boom-1')).to.have.length(1);
    } finally {
      await t.stop();
    }
  });
});
