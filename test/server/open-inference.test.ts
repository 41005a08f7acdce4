import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Client, credentials, type Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { asOutcomeRecord, asPredictionRecord } from '../../server/call-log.js';
import type {
  GRPCInferenceServiceClient,
  ModelInferRequest,
  ModelMetadataResponse,
  RepositoryIndexResponse,
} from '../../server/generated/inference/oip/open_inference_grpc.js';
import type { RecordOutcomesResponse } from '../../server/generated/inference/v1/inference.js';
import { AB_OVERRIDE_HEADER } from '../../server/headers.js';
import { ONNX_PLATFORM, TRITON_UNIMPLEMENTED } from '../../server/open-inference-service.js';
import { goldenOf } from '../helpers/families.js';
import { HealthCheckResponse_ServingStatus, HealthClient } from '../helpers/health-client.js';
import {
  call,
  emptyContents,
  modelInfer,
  oipClient,
  outputsOf,
  rawColumn,
  tensorsOf,
  typedColumn,
} from '../helpers/open-inference.js';
import {
  DEMO_MODELS,
  DEMO_VERSIONS,
  expectGrpcError,
  metadataOf,
  NEWER,
  OLDER,
  predict,
  SAMPLE_RECORD,
  startApp,
  type TestApp,
  waitFor,
} from '../helpers/server.js';

const golden = (version: string) => goldenOf(join(DEMO_MODELS, 'conversion'), version);

const manifest = (version: string) =>
  JSON.parse(readFileSync(join(DEMO_MODELS, 'conversion', version, 'model.json'), 'utf8')) as {
    fields: { name: string; type: string; required: boolean; transform?: { kind: string } }[];
  };

/**
 * The Open Inference Protocol (GRPCInferenceService) on the real server, with
 * its own generated client. The wire format is built by hand here
 * (test/helpers/open-inference.ts) so each malformed case can be sent;
 * tritonclient and the KServe SDK are tested in test/e2e/oip-clients.test.ts.
 */
describe('Open Inference Protocol (GRPCInferenceService beside inference.v1)', function () {
  this.timeout(30_000);
  let t: TestApp;
  let oip: GRPCInferenceServiceClient;
  let meta: ModelMetadataResponse;
  const referenceTime = Date.parse(golden(NEWER).referenceTime);

  before(async () => {
    t = await startApp({ MAX_BATCH_INSTANCES: '256' }, () => referenceTime);
    oip = oipClient(t.ports.grpc);
    meta = await call(oip, 'modelMetadata', { name: 'conversion', version: '' });
  });
  after(async () => {
    oip?.close();
    await t?.stop();
  });

  describe('the six required RPCs and RepositoryIndex', () => {
    it('ServerLive is true; ServerReady agrees with grpc.health.v1', async () => {
      expect(await call(oip, 'serverLive', {})).to.deep.equal({ live: true });
      expect(await call(oip, 'serverReady', {})).to.deep.equal({ ready: true });
      const health = new HealthClient(`127.0.0.1:${t.ports.grpc}`, credentials.createInsecure());
      try {
        for (const service of ['', 'inference.GRPCInferenceService']) {
          const res = await new Promise<{ status: HealthCheckResponse_ServingStatus }>((resolve, reject) =>
            health.check({ service }, (err, r) => (err ? reject(err) : resolve(r))),
          );
          expect(res.status, service).to.equal(HealthCheckResponse_ServingStatus.SERVING);
        }
      } finally {
        health.close();
      }
    });

    it('ModelReady per model and version: loaded versions are ready, unknown ones are not, bad names are refused', async () => {
      for (const version of ['', ...DEMO_VERSIONS]) {
        expect(await call(oip, 'modelReady', { name: 'conversion', version }), version).to.deep.equal({
          ready: true,
        });
      }
      expect(
        await call(oip, 'modelReady', { name: 'conversion', version: '20000101T000000Z' }),
      ).to.deep.equal({ ready: false });
      expect(await call(oip, 'modelReady', { name: 'nope', version: '' })).to.deep.equal({ ready: false });
      const err = await expectGrpcError(call(oip, 'modelReady', { name: 'a/b', version: '' }));
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.match(/^name must be a model name/);
    });

    it('ServerMetadata names the server, its version and extensions', async () => {
      const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
        name: string;
        version: string;
      };
      const res = await call(oip, 'serverMetadata', {});
      expect(res).to.deep.equal({
        name: pkg.name,
        version: pkg.version,
        extensions: ['parameters', 'model_repository(index)'],
      });
    });

    it('ModelMetadata lists one input per manifest field, with datatype and shape [-1], and the four outputs', async () => {
      const fields = manifest(NEWER).fields;
      expect(meta.name).to.equal('conversion');
      expect(meta.platform).to.equal(ONNX_PLATFORM);
      expect(meta.versions).to.deep.equal([...DEMO_VERSIONS].reverse());
      expect(meta.inputs.map((i) => i.name)).to.deep.equal(fields.map((f) => f.name));
      for (const [k, f] of fields.entries()) {
        const want = f.type === 'string' ? 'BYTES' : f.transform?.kind === 'numeric' ? 'FP64' : 'INT64';
        expect(meta.inputs[k], f.name).to.deep.equal({ name: f.name, datatype: want, shape: [-1] });
      }
      expect(meta.outputs).to.deep.equal([
        { name: 'score', datatype: 'FP32', shape: [-1] },
        { name: 'label', datatype: 'INT64', shape: [-1] },
        { name: 'group', datatype: 'BYTES', shape: [-1] },
        { name: 'action', datatype: 'INT64', shape: [-1] },
      ]);
      expect(meta.properties).to.include({
        version: NEWER,
        serving_version: NEWER,
        arm: 'stable',
        family: 'lr',
      });
      expect(meta.properties.required_inputs?.split(',')).to.deep.equal(
        fields.filter((f) => f.required).map((f) => f.name),
      );
      const older: ModelMetadataResponse = await call(oip, 'modelMetadata', {
        name: 'conversion',
        version: OLDER,
      });
      expect(older.properties).to.include({ version: OLDER, serving_version: NEWER });
    });

    it('ModelMetadata: unknown model or version NOT_FOUND, as GetModelMetadata', async () => {
      const a = await expectGrpcError(call(oip, 'modelMetadata', { name: 'nope', version: '' }));
      expect(a.code).to.equal(status.NOT_FOUND);
      expect(a.details).to.match(/unknown model "nope"; models: conversion/);
      const b = await expectGrpcError(
        call(oip, 'modelMetadata', { name: 'conversion', version: '20000101T000000Z' }),
      );
      expect(b.code).to.equal(status.NOT_FOUND);
    });

    it('RepositoryIndex lists every loaded version READY; another repository name is NOT_FOUND', async () => {
      const res: RepositoryIndexResponse = await call(oip, 'repositoryIndex', {
        repositoryName: '',
        ready: false,
      });
      expect(res.models).to.deep.equal(
        [...DEMO_VERSIONS]
          .reverse()
          .map((version) => ({ name: 'conversion', version, state: 'READY', reason: '' })),
      );
      const err = await expectGrpcError(
        call(oip, 'repositoryIndex', { repositoryName: 'other', ready: false }),
      );
      expect(err.code).to.equal(status.NOT_FOUND);
    });

    it("Triton's other RPCs answer UNIMPLEMENTED saying what to use instead, counted by method", async () => {
      const raw = t.client as unknown as Client;
      for (const method of ['ModelConfig', 'ModelStatistics', 'RepositoryModelLoad']) {
        const err = await expectGrpcError(
          new Promise((resolve, reject) =>
            raw.makeUnaryRequest(
              `/inference.GRPCInferenceService/${method}`,
              (b: Buffer) => b,
              (b: Buffer) => b,
              Buffer.alloc(0),
              (e: ServiceError | null, r?: Buffer) => (e ? reject(e) : resolve(r)),
            ),
          ),
        );
        expect(err.code, method).to.equal(status.UNIMPLEMENTED);
        expect(err.details).to.equal(
          `${method} is a Triton extension this server does not implement: ${TRITON_UNIMPLEMENTED[method]}`,
        );
      }
      const m = await t.registry.getSingleMetric('inference_requests_total')?.get();
      expect(m?.values.find((v) => v.labels.method === 'ModelConfig')?.labels.code).to.equal('UNIMPLEMENTED');
    });
  });

  describe('ModelInfer on business records', () => {
    for (const mode of ['raw', 'typed'] as const) {
      it(`${mode} contents: every golden record scores exactly as Predict scores it, with the served version, id and arm`, async () => {
        const g = golden(NEWER);
        for (const c of g.cases) {
          const p = await predict(t.client, { instances: [c.record] });
          const res = await modelInfer(oip, {
            id: `oip-${mode}-${c.id}`,
            ...tensorsOf([c.record], meta.inputs, mode),
          });
          expect(res.modelName).to.equal('conversion');
          expect(res.modelVersion, c.id).to.equal(NEWER);
          expect(res.id).to.equal(`oip-${mode}-${c.id}`);
          expect(Object.keys(res.parameters)).to.deep.equal(['arm']);
          expect(res.parameters.arm?.stringParam).to.equal('stable');
          const out = outputsOf(res);
          const [want] = p.predictions;
          // FP32 on both wires: the same float32 from the same session, bit for bit.
          expect(out.score, c.id).to.deep.equal([want?.score]);
          expect(out.label, c.id).to.deep.equal([want?.label]);
          expect(out.group, c.id).to.deep.equal([want?.group]);
          expect(out.action, c.id).to.deep.equal([want?.action]);
          expect(Math.abs((out.score?.[0] as number) - c.score), c.id).to.be.at.most(1e-5);
        }
      });
    }

    it('scores a batch of N records in one call, row i for record i', async () => {
      // Records with every field: a field missing from some rows cannot be a column.
      const all = Object.keys(SAMPLE_RECORD).length;
      const records = golden(NEWER)
        .cases.map((c) => c.record)
        .filter((r) => Object.keys(r).length === all);
      expect(records.length).to.be.greaterThan(8);
      const p = await predict(t.client, { instances: records });
      const res = await modelInfer(oip, tensorsOf(records, meta.inputs, 'raw'));
      const n = records.length;
      expect(res.outputs.map((o) => o.shape)).to.deep.equal([[n], [n], [n], [n]]);
      expect(outputsOf(res).score).to.deep.equal(p.predictions.map((x) => x.score));
    });

    it('honours a named version, and accepts INT32/FP32/FP64 for number fields and [N, 1] shapes', async () => {
      const rec = { ...SAMPLE_RECORD };
      const p = await predict(t.client, { version: OLDER, instances: [rec] });
      const tensors = tensorsOf([rec], meta.inputs, 'raw', {
        appId: 'INT32',
        countryId: 'FP64',
        type: 'FP32',
      });
      for (const input of tensors.inputs) input.shape = [1, 1];
      const res = await modelInfer(oip, { modelVersion: OLDER, ...tensors });
      expect(res.modelVersion).to.equal(OLDER);
      expect(outputsOf(res).score).to.deep.equal(p.predictions.map((x) => x.score));
    });

    it('returns only the outputs asked for, in the order asked, all in raw_output_contents', async () => {
      const res = await modelInfer(oip, {
        ...tensorsOf([{ ...SAMPLE_RECORD }], meta.inputs, 'raw'),
        outputs: [
          { name: 'group', parameters: {} },
          { name: 'score', parameters: {} },
        ],
      });
      expect(res.outputs.map((o) => [o.name, o.datatype, o.shape, o.contents])).to.deep.equal([
        ['group', 'BYTES', [1], undefined],
        ['score', 'FP32', [1], undefined],
      ]);
      expect(res.rawOutputContents).to.have.length(2);
      expect(Object.keys(outputsOf(res))).to.deep.equal(['group', 'score']);
    });

    it("writes Predict's prediction record (method ModelInfer), counted by method, joinable by RecordOutcomes", async () => {
      await modelInfer(
        oip,
        { id: 'oip-log', ...tensorsOf([{ ...SAMPLE_RECORD }], meta.inputs, 'raw') },
        metadataOf({ 'x-user-id': 'user-7' }),
      );
      await waitFor('the ModelInfer line', () => t.logs.lines.some((l) => l.requestId === 'oip-log'));
      const lines = t.logs.lines.filter((l) => l.requestId === 'oip-log');
      expect(lines, 'one line per call').to.have.length(1);
      const rec = asPredictionRecord(lines[0]);
      expect(rec, JSON.stringify(lines[0])).to.not.equal(undefined);
      expect(rec).to.include({
        method: 'ModelInfer',
        model: 'conversion',
        version: NEWER,
        arm: 'stable',
        code: 'OK',
      });
      expect(lines[0]?.msg).to.equal('ModelInfer');
      expect(rec?.outputs).to.have.length(1);
      expect(rec?.user).to.match(/^p_/);
      expect(JSON.stringify(lines[0])).to.not.include('user-7');
      // An ordinary call: the routing fields are left out.
      expect(lines[0]).to.not.have.any.keys('forced', 'pinned');

      const sample = async (method: string) =>
        (await t.registry.getSingleMetric('inference_requests_total')?.get())?.values.find(
          (v) => v.labels.method === method && v.labels.code === 'OK',
        )?.value ?? 0;
      expect(await sample('ModelInfer')).to.be.greaterThan(0);

      // An outcome names the ModelInfer's id and row like a Predict's; both lines carry the same user token.
      const outcome = await new Promise<RecordOutcomesResponse>((resolve, reject) =>
        t.client.recordOutcomes(
          {
            outcomes: [
              {
                requestId: 'oip-log',
                instance: 0,
                userId: 'user-7',
                model: 'conversion',
                metric: 'converted',
                value: 1,
                occurredAt: new Date(referenceTime - 60_000),
              },
            ],
          },
          (err: ServiceError | null, res) => (err ? reject(err) : resolve(res as RecordOutcomesResponse)),
        ),
      );
      expect(outcome.recorded).to.equal(1);
      await waitFor('the outcome line', () => t.logs.lines.some((l) => l.msg === 'RecordOutcomes'));
      const o = asOutcomeRecord(t.logs.lines.find((l) => l.msg === 'RecordOutcomes'));
      expect(o?.outcomes[0]).to.include({ requestId: 'oip-log', instance: 0, user: rec?.user });
    });

    it("records a forced arm and a named model_version on ModelInfer's line, as Predict's", async () => {
      await modelInfer(
        oip,
        { id: 'oip-routed', modelVersion: OLDER, ...tensorsOf([{ ...SAMPLE_RECORD }], meta.inputs, 'raw') },
        metadataOf({ [AB_OVERRIDE_HEADER]: 'canary' }),
      );
      await waitFor('the routed line', () => t.logs.lines.some((l) => l.requestId === 'oip-routed'));
      const rec = asPredictionRecord(t.logs.lines.find((l) => l.requestId === 'oip-routed'));
      expect(rec, 'a prediction record').to.not.equal(undefined);
      expect(rec).to.include({ method: 'ModelInfer', version: OLDER, forced: 'canary', pinned: true });
    });

    it('takes the request id from x-request-id when id is empty, and generates one otherwise', async () => {
      const tensors = tensorsOf([{ ...SAMPLE_RECORD }], meta.inputs, 'raw');
      const a = await modelInfer(oip, tensors, metadataOf({ 'x-request-id': 'hdr-1' }));
      expect(a.id).to.equal('hdr-1');
      const b = await modelInfer(oip, tensors);
      expect(b.id).to.match(/^[0-9a-f-]{36}$/);
    });
  });

  describe('errors map to the same codes as Predict, naming the input and row', () => {
    const rec = { ...SAMPLE_RECORD };
    const base = () => tensorsOf([rec, rec, rec], meta.inputs, 'raw');
    /** Replaces one input's raw content (and datatype) in a 3-row raw request. */
    const withRaw = (name: string, raw: Buffer, datatype?: string): Partial<ModelInferRequest> => {
      const r = base();
      const k = r.inputs.findIndex((i) => i.name === name);
      if (datatype) (r.inputs[k] as { datatype: string }).datatype = datatype;
      r.rawInputContents[k] = raw;
      return r;
    };
    const without = (name: string): Partial<ModelInferRequest> => {
      const r = base();
      const k = r.inputs.findIndex((i) => i.name === name);
      r.inputs.splice(k, 1);
      r.rawInputContents.splice(k, 1);
      return r;
    };
    const dates = (...v: string[]) => rawColumn('BYTES', v);
    const longUser = () => metadataOf({ 'x-user-id': 'u'.repeat(129) });
    const rows: [string, () => Partial<ModelInferRequest>, status, RegExp, Metadata?][] = [
      [
        'unknown model',
        () => ({ modelName: 'nope', ...base() }),
        status.NOT_FOUND,
        /unknown model "nope"; models: conversion/,
      ],
      [
        'unknown version',
        () => ({ modelVersion: '20000101T000000Z', ...base() }),
        status.NOT_FOUND,
        /has no version "20000101T000000Z" on this server \(arm stable\)/,
      ],
      [
        'no model_name',
        () => ({ modelName: '', ...base() }),
        status.INVALID_ARGUMENT,
        /^model_name is required/,
      ],
      [
        'malformed model_name',
        () => ({ modelName: '../x', ...base() }),
        status.INVALID_ARGUMENT,
        /^model_name must be/,
      ],
      [
        'malformed model_version',
        () => ({ modelVersion: 'v1', ...base() }),
        status.INVALID_ARGUMENT,
        /^model_version must be/,
      ],
      [
        'malformed id',
        () => ({ id: 'has space', ...base() }),
        status.INVALID_ARGUMENT,
        /^id must be 1 to 128/,
      ],
      ['bad x-user-id', base, status.INVALID_ARGUMENT, /^x-user-id must be one value/, longUser()],
      [
        'no inputs',
        () => ({ inputs: [], rawInputContents: [] }),
        status.INVALID_ARGUMENT,
        /^inputs is empty/,
      ],
      [
        'a required input missing',
        () => without('birthday'),
        status.INVALID_ARGUMENT,
        /^input birthday is required but missing/,
      ],
      [
        'an unparsable date in row 1',
        () => withRaw('birthday', dates('1995-04-29', '1995-02-30', '1995-04-29')),
        status.INVALID_ARGUMENT,
        /^input birthday row 1 must be an ISO 8601 date, got "1995-02-30"/,
      ],
      [
        'a createTime in year 9999 (outside the range)',
        () => withRaw('createTime', dates('2020-11-02', '2020-11-02', '9999-01-01')),
        status.INVALID_ARGUMENT,
        /^input createTime row 2 age in days -\d+ is outside the manifest's range \[-30, 10000\]/,
      ],
      [
        'NaN in an FP64 number field',
        () => withRaw('countryId', rawColumn('FP64', [182, Number.NaN, 182]), 'FP64'),
        status.INVALID_ARGUMENT,
        /^input countryId row 1 must be a finite number, got NaN/,
      ],
      [
        'a fractional category',
        () => withRaw('appId', rawColumn('FP64', [20000, 20000, 1.5]), 'FP64'),
        status.INVALID_ARGUMENT,
        /^input appId row 2 must be an integer within ±\(2\^53-1\)/,
      ],
      [
        'a bad screen size',
        () => withRaw('screenSize', dates('720*1440', '720x1440', '1*1')),
        status.INVALID_ARGUMENT,
        /^input screenSize row 1 must look like "720\*1440"/,
      ],
      [
        'a string field sent as a number',
        () => withRaw('languageId', rawColumn('INT64', [20, 20, 20]), 'INT64'),
        status.INVALID_ARGUMENT,
        /^input languageId has datatype INT64; this string field takes BYTES/,
      ],
      [
        'a number field sent as BYTES',
        () => withRaw('appId', dates('20000', '20000', '20000'), 'BYTES'),
        status.INVALID_ARGUMENT,
        /^input appId has datatype BYTES; this number field takes INT64, INT32, FP64, FP32/,
      ],
      [
        'an unknown input',
        () => {
          const r = base();
          r.inputs.push({
            name: 'colour',
            datatype: 'BYTES',
            shape: [3],
            parameters: {},
            contents: undefined,
          });
          r.rawInputContents.push(dates('a', 'b', 'c'));
          return r;
        },
        status.INVALID_ARGUMENT,
        /^model conversion@\d{8}T\d{6}Z has no input "colour"; its inputs are userId, birthday/,
      ],
      [
        'an input twice',
        () => {
          const r = base();
          r.inputs.push({ ...(r.inputs[1] as ModelInferRequest['inputs'][number]) });
          r.rawInputContents.push(r.rawInputContents[1] as Buffer);
          return r;
        },
        status.INVALID_ARGUMENT,
        /^input birthday appears more than once/,
      ],
      [
        'raw and typed contents mixed',
        () => {
          const r = base();
          (r.inputs[0] as { contents: unknown }).contents = typedColumn('INT64', [1, 2, 3]);
          return r;
        },
        status.INVALID_ARGUMENT,
        /^input userId has typed contents but the request also has raw_input_contents; use one or the other/,
      ],
      [
        'fewer raw contents than inputs',
        () => {
          const r = base();
          r.rawInputContents.pop();
          return r;
        },
        status.INVALID_ARGUMENT,
        /^raw_input_contents has 11 entries for 12 inputs/,
      ],
      [
        'an input with no contents at all',
        () => {
          const r = tensorsOf([rec], meta.inputs, 'typed');
          (r.inputs[3] as { contents: unknown }).contents = undefined;
          return r;
        },
        status.INVALID_ARGUMENT,
        /^input appId has no contents and the request has no raw_input_contents/,
      ],
      [
        'typed contents in the wrong field for the datatype',
        () => {
          const r = tensorsOf([rec], meta.inputs, 'typed');
          const c = emptyContents();
          c.fp32Contents = [20000];
          (r.inputs[3] as { contents: unknown }).contents = c;
          return r;
        },
        status.INVALID_ARGUMENT,
        /^input appId is INT64 but its contents fill fp32_contents; INT64 elements go in int64_contents/,
      ],
      [
        'typed contents with fewer elements than the shape',
        () => {
          const r = tensorsOf([rec, rec], meta.inputs, 'typed');
          (r.inputs[3] as { contents: unknown }).contents = typedColumn('INT64', [20000]);
          return r;
        },
        status.INVALID_ARGUMENT,
        /^input appId has shape \[2\] but its contents have 1 elements in int64_contents/,
      ],
      [
        'a raw INT64 content one element short of the shape',
        () => withRaw('appId', rawColumn('INT64', [20000, 20000])),
        status.INVALID_ARGUMENT,
        /^input appId has shape \[3\] but its raw content has 16 bytes; 3 INT64 elements are 24 bytes/,
      ],
      [
        'a BYTES length prefix that overruns the buffer',
        () => {
          const raw = dates('1995-04-29', '1995-04-29', '1995-04-29');
          raw.writeUInt32LE(1000, 14 * 2); // the third element's prefix
          return withRaw('birthday', raw);
        },
        status.INVALID_ARGUMENT,
        /^input birthday row 2: its length prefix says 1000 bytes but only 10 remain in the raw content/,
      ],
      [
        'a BYTES content with fewer elements than the shape',
        () => withRaw('birthday', dates('1995-04-29', '1995-04-29')),
        status.INVALID_ARGUMENT,
        /^input birthday has shape \[3\] but its raw BYTES content ends after 2 elements/,
      ],
      [
        'a BYTES content with bytes after the last element',
        () =>
          withRaw(
            'birthday',
            Buffer.concat([dates('1995-04-29', '1995-04-29', '1995-04-29'), Buffer.from('x')]),
          ),
        status.INVALID_ARGUMENT,
        /^input birthday has shape \[3\] but its raw BYTES content has 1 bytes after the last element/,
      ],
      [
        'inputs whose shapes disagree',
        () => {
          const r = base();
          (r.inputs[2] as { shape: number[] }).shape = [2];
          return r;
        },
        status.INVALID_ARGUMENT,
        /^input createTime has 2 rows but the inputs before it have 3/,
      ],
      [
        'a shape that is not one column',
        () => {
          const r = base();
          (r.inputs[0] as { shape: number[] }).shape = [3, 2];
          return r;
        },
        status.INVALID_ARGUMENT,
        /^input userId has shape \[3, 2\]; each input is one column of N records: shape \[N\] \(or \[N, 1\]\)/,
      ],
      [
        'a shape [-1]',
        () => {
          const r = base();
          for (const i of r.inputs) (i as { shape: number[] }).shape = [-1];
          return r;
        },
        status.INVALID_ARGUMENT,
        /^input userId has shape \[-1\]/,
      ],
      [
        'zero rows',
        () => tensorsOf([], meta.inputs, 'raw'),
        status.INVALID_ARGUMENT,
        /^the batch \(the inputs' shape \[N\]\) is empty/,
      ],
      [
        'more rows than MAX_BATCH_INSTANCES',
        () =>
          tensorsOf(
            Array.from({ length: 257 }, () => rec),
            meta.inputs,
            'raw',
          ),
        status.INVALID_ARGUMENT,
        /^the batch \(the inputs' shape \[N\]\) has 257 records; the limit is 256 per request/,
      ],
      [
        'an unknown output name',
        () => ({ ...base(), outputs: [{ name: 'probability', parameters: {} }] }),
        status.INVALID_ARGUMENT,
        /^unknown output "probability"; the outputs are score, label, group, action/,
      ],
      [
        'an output asked for twice',
        () => ({
          ...base(),
          outputs: [
            { name: 'score', parameters: {} },
            { name: 'score', parameters: {} },
          ],
        }),
        status.INVALID_ARGUMENT,
        /^output score is asked for twice/,
      ],
      [
        "Triton's classification extension",
        () => ({
          ...base(),
          outputs: [{ name: 'score', parameters: { classification: { int64Param: 2 } } }],
        }),
        status.INVALID_ARGUMENT,
        /^output score: the classification extension is not supported/,
      ],
      [
        'a content_type that changes what the bytes mean',
        () => {
          const r = base();
          (r.inputs[1] as { parameters: unknown }).parameters = { content_type: { stringParam: 'base64' } };
          return r;
        },
        status.INVALID_ARGUMENT,
        /^input birthday content_type must be one of pd, np, str, datetime/,
      ],
    ];
    for (const [what, req, code, re, md] of rows) {
      it(`${what} → ${status[code]}`, async () => {
        const err = await expectGrpcError(modelInfer(oip, req(), md));
        expect(err.code, err.details).to.equal(code);
        expect(err.details).to.match(re);
      });
    }

    it('a body that cannot be decoded → INVALID_ARGUMENT (grpc-js alone would say INTERNAL)', async () => {
      const raw = t.client as unknown as Client;
      const err = await expectGrpcError(
        new Promise((resolve, reject) =>
          raw.makeUnaryRequest(
            '/inference.GRPCInferenceService/ModelInfer',
            (b: Buffer) => b,
            (b: Buffer) => b,
            Buffer.from([0x0a, 0xff, 0xff, 0xff]), // field 1, a length past the end
            (e: ServiceError | null, r?: Buffer) => (e ? reject(e) : resolve(r)),
          ),
        ),
      );
      expect(err.code).to.equal(status.INVALID_ARGUMENT);
      expect(err.details).to.match(/^the request could not be decoded/);
    });

    it('the accepted pandas content types pass: pd on the request, str and datetime on BYTES inputs', async () => {
      const r = tensorsOf([rec], meta.inputs, 'typed');
      for (const i of r.inputs) {
        if (i.datatype === 'BYTES') {
          i.parameters = {
            content_type: {
              stringParam: i.name === 'birthday' || i.name === 'createTime' ? 'datetime' : 'str',
            },
          };
        }
      }
      const res = await modelInfer(oip, { ...r, parameters: { content_type: { stringParam: 'pd' } } });
      const p = await predict(t.client, { instances: [rec] });
      expect(outputsOf(res).score).to.deep.equal([p.predictions[0]?.score]);
    });
  });
});

describe('Open Inference Protocol: limits, availability and A/B stage 2', function () {
  this.timeout(30_000);

  it('a message over MAX_MESSAGE_BYTES → RESOURCE_EXHAUSTED, and the server keeps serving', async () => {
    const t = await startApp({ MAX_MESSAGE_BYTES: '65536' });
    const oip = oipClient(t.ports.grpc);
    try {
      const meta: ModelMetadataResponse = await call(oip, 'modelMetadata', {
        name: 'conversion',
        version: '',
      });
      const big = { ...SAMPLE_RECORD, deviceName: 'x'.repeat(70_000) };
      const err = await expectGrpcError(modelInfer(oip, tensorsOf([big], meta.inputs, 'raw')));
      expect(err.code).to.equal(status.RESOURCE_EXHAUSTED);
      const res = await modelInfer(oip, tensorsOf([{ ...SAMPLE_RECORD }], meta.inputs, 'raw'));
      expect(res.outputs).to.have.length(4);
    } finally {
      oip.close();
      await t.stop();
    }
  });

  it('more calls in flight than MAX_IN_FLIGHT → RESOURCE_EXHAUSTED for the excess only', async () => {
    const t = await startApp({ MAX_IN_FLIGHT: '1' });
    const oip = oipClient(t.ports.grpc);
    try {
      const meta: ModelMetadataResponse = await call(oip, 'modelMetadata', {
        name: 'conversion',
        version: '',
      });
      const req = tensorsOf(
        Array.from({ length: 256 }, () => ({ ...SAMPLE_RECORD })),
        meta.inputs,
        'raw',
      );
      const results = await Promise.allSettled(Array.from({ length: 40 }, () => modelInfer(oip, req)));
      const codes = results.map((r) =>
        r.status === 'fulfilled' ? status.OK : (r.reason as { code: status }).code,
      );
      expect(codes).to.include(status.OK);
      expect(codes).to.include(status.RESOURCE_EXHAUSTED);
      expect(codes.every((c) => c === status.OK || c === status.RESOURCE_EXHAUSTED)).to.equal(true);
    } finally {
      oip.close();
      await t.stop();
    }
  });

  it('while draining: ServerReady and ModelReady false (health NOT_SERVING), ServerLive true', async () => {
    const t = await startApp({ DRAIN_MS: '1500' });
    const oip = oipClient(t.ports.grpc);
    try {
      expect(await call(oip, 'modelReady', { name: 'conversion', version: '' })).to.deep.equal({
        ready: true,
      });
      const stopping = t.app.stop();
      await waitFor('health NOT_SERVING', () => t.app.health.status === 'NOT_SERVING');
      expect(await call(oip, 'serverReady', {})).to.deep.equal({ ready: false });
      expect(await call(oip, 'modelReady', { name: 'conversion', version: '' })).to.deep.equal({
        ready: false,
      });
      expect(await call(oip, 'serverLive', {})).to.deep.equal({ live: true });
      await stopping;
    } finally {
      oip.close();
      await t.stop();
    }
  });

  it('on the canary, the same x-user-id gets the same group and action from ModelInfer as from Predict', async () => {
    // The one positive golden record of the newer model, for 40 users: both groups occur.
    const g = golden(NEWER);
    const positive = g.cases.find((c) => c.label === 1)?.record as Record<string, unknown>;
    const t = await startApp(
      { ROLE: 'canary', MODEL_VERSION_POLICY: `conversion=${NEWER}`, EXPERIMENT_SHARE: '0.5' },
      () => Date.parse(g.referenceTime),
    );
    const oip = oipClient(t.ports.grpc);
    try {
      const meta: ModelMetadataResponse = await call(oip, 'modelMetadata', {
        name: 'conversion',
        version: '',
      });
      const groups = new Set<string>();
      for (let u = 0; u < 40; u++) {
        const md = () => metadataOf({ 'x-user-id': `user-${u}` });
        const p = await predict(t.client, { instances: [positive] }, md());
        const res = await modelInfer(oip, tensorsOf([positive], meta.inputs, 'raw'), md());
        const out = outputsOf(res);
        expect(res.parameters.arm?.stringParam).to.equal('canary');
        expect([out.label?.[0], out.group?.[0], out.action?.[0]], `user-${u}`).to.deep.equal([
          p.predictions[0]?.label,
          p.predictions[0]?.group,
          p.predictions[0]?.action,
        ]);
        groups.add(String(out.group?.[0]));
      }
      expect([...groups].sort()).to.deep.equal(['control', 'experiment']);
      const a = await t.registry.getSingleMetric('inference_ab_assignments_total')?.get();
      const total = a?.values.reduce((s, v) => s + v.value, 0);
      expect(total, 'both protocols count their assignments').to.equal(80);
    } finally {
      oip.close();
      await t.stop();
    }
  });
});
