import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { TRITON_UNIMPLEMENTED } from '../../server/open-inference-service.js';
import { FAMILIES, familiesRepo } from '../helpers/families.js';
import {
  type ClientInfer,
  clientDescriptors,
  type DescribedMessage,
  resultValue,
  runClient,
} from '../helpers/open-inference.js';
import { metadataOf, predict, removeDir, SAMPLE_RECORD, startApp, type TestApp } from '../helpers/server.js';

/**
 * The Open Inference Protocol with the clients people actually use, from the
 * project venv (scripts/pipeline/requirements.txt): tritonclient[grpc] 2.73.0
 * and the KServe SDK 0.21's InferenceGRPCClient, driven by test/e2e/oip_clients.py.
 * Through Envoy: test/envoy/open-inference.test.ts.
 */

/** The messages of the current spec (kserve/open-inference-protocol, open_inference_grpc.proto). */
const SPEC_MESSAGES = [
  'ServerLiveRequest',
  'ServerLiveResponse',
  'ServerReadyRequest',
  'ServerReadyResponse',
  'ModelReadyRequest',
  'ModelReadyResponse',
  'ServerMetadataRequest',
  'ServerMetadataResponse',
  'ModelMetadataRequest',
  'ModelMetadataResponse',
  'ModelInferRequest',
  'ModelInferResponse',
  'InferParameter',
  'InferTensorContents',
];
const SPEC_METHODS = [
  'ServerLive',
  'ServerReady',
  'ModelReady',
  'ServerMetadata',
  'ModelMetadata',
  'ModelInfer',
];
/** Taken from Triton's superset, with its messages. */
const TRITON_ADDITIONS = {
  methods: ['RepositoryIndex'],
  messages: ['RepositoryIndexRequest', 'RepositoryIndexResponse'],
};

/**
 * What the current spec has and a client's copy does not (yet): paths of
 * fields and nested messages. tritonclient 2.73.0 lacks the spec's
 * `ModelMetadataResponse.properties`; the KServe SDK's older copy also lacks
 * `InferParameter.double_param` and `uint64_param`.
 */
const NEWER_THAN = {
  triton: ['ModelMetadataResponse.properties', 'ModelMetadataResponse.PropertiesEntry'],
  kserve: [
    'ModelMetadataResponse.properties',
    'ModelMetadataResponse.PropertiesEntry',
    'InferParameter.double_param',
    'InferParameter.uint64_param',
  ],
};

/**
 * Differences between our message and theirs, field by field (name, number,
 * label, type, type name, oneof, proto3 optional, default) and nested message by nested
 * message; what only ours has must be in `allowed`.
 */
function differences(
  path: string,
  ours: DescribedMessage,
  theirs: DescribedMessage,
  allowed: string[],
): string[] {
  const out: string[] = [];
  if (ours.map_entry !== theirs.map_entry)
    out.push(`${path}: map_entry ${ours.map_entry} vs ${theirs.map_entry}`);
  if (JSON.stringify(ours.enums) !== JSON.stringify(theirs.enums)) out.push(`${path}: enums differ`);
  for (const f of theirs.fields) {
    const mine = ours.fields.find((x) => x.name === f.name);
    if (!mine) out.push(`${path}.${f.name}: missing from ours`);
    else if (JSON.stringify(mine) !== JSON.stringify(f))
      out.push(`${path}.${f.name}: ours ${JSON.stringify(mine)} vs theirs ${JSON.stringify(f)}`);
  }
  for (const f of ours.fields) {
    if (!theirs.fields.some((x) => x.name === f.name) && !allowed.includes(`${path}.${f.name}`))
      out.push(`${path}.${f.name}: only in ours`);
  }
  for (const [name, n] of Object.entries(theirs.nested)) {
    const mine = ours.nested[name];
    if (!mine) out.push(`${path}.${name}: nested message missing from ours`);
    else out.push(...differences(`${path}.${name}`, mine, n, allowed));
  }
  for (const name of Object.keys(ours.nested)) {
    if (!(name in theirs.nested) && !allowed.includes(`${path}.${name}`))
      out.push(`${path}.${name}: only in ours`);
  }
  return out;
}

describe('Open Inference Protocol: the contract against the clients’ own descriptors', function () {
  this.timeout(60_000);

  it('every message, field and method matches what tritonclient 2.73.0 carries (Triton shares these messages)', async () => {
    const { ours: files, theirs } = await clientDescriptors('triton');
    expect(files.map((f) => f.name)).to.deep.equal(['inference/oip/open_inference_grpc.proto']);
    const ours = files[0] as (typeof files)[number];
    expect(ours.package).to.equal(theirs.package).and.equal('inference');
    expect(Object.keys(ours.messages).sort()).to.deep.equal(
      [...SPEC_MESSAGES, ...TRITON_ADDITIONS.messages].sort(),
    );
    const diffs = Object.entries(ours.messages).flatMap(([name, m]) => {
      const t = theirs.messages[name];
      return t ? differences(name, m, t, NEWER_THAN.triton) : [`${name}: not in tritonclient`];
    });
    expect(diffs).to.deep.equal([]);
    // The one addition of the newer spec, exactly as the spec declares it: map<string, string> properties = 6.
    const meta = ours.messages.ModelMetadataResponse as DescribedMessage;
    expect(meta.fields.find((f) => f.name === 'properties')).to.deep.include({
      number: 6,
      label: 'LABEL_REPEATED',
      type: 'TYPE_MESSAGE',
      type_name: '.inference.ModelMetadataResponse.PropertiesEntry',
    });
    expect(meta.nested.PropertiesEntry?.map_entry).to.equal(true);
    expect(meta.nested.PropertiesEntry?.fields.map((f) => [f.name, f.number, f.type])).to.deep.equal([
      ['key', 1, 'TYPE_STRING'],
      ['value', 2, 'TYPE_STRING'],
    ]);

    const mine = ours.services.GRPCInferenceService ?? [];
    const triton = theirs.services.GRPCInferenceService ?? [];
    expect(mine.map((m) => m.name)).to.deep.equal([...SPEC_METHODS, ...TRITON_ADDITIONS.methods]);
    for (const m of mine) expect(m, m.name).to.deep.equal(triton.find((x) => x.name === m.name));
    // Every other Triton RPC is registered by the server, answering UNIMPLEMENTED with a hint.
    const rest = triton.map((m) => m.name).filter((n) => !mine.some((x) => x.name === n));
    expect(rest.sort()).to.deep.equal([...Object.keys(TRITON_UNIMPLEMENTED), 'ModelStreamInfer'].sort());
  });

  it("matches the KServe SDK 0.21's older copy wherever that copy has a message or field", async () => {
    const { ours: files, theirs } = await clientDescriptors('kserve');
    const ours = files[0] as (typeof files)[number];
    const shared = Object.keys(theirs.messages).filter((n) => n in ours.messages);
    expect(shared.sort()).to.deep.equal([...SPEC_MESSAGES].sort());
    const diffs = shared.flatMap((name) =>
      differences(
        name,
        ours.messages[name] as DescribedMessage,
        theirs.messages[name] as DescribedMessage,
        NEWER_THAN.kserve,
      ),
    );
    expect(diffs).to.deep.equal([]);
    // Its service adds Triton's load and unload, which this server answers UNIMPLEMENTED.
    const mine = (ours.services.GRPCInferenceService ?? []).map((m) => m.name);
    const extra = (theirs.services.GRPCInferenceService ?? [])
      .map((m) => m.name)
      .filter((n) => !mine.includes(n));
    expect(
      extra.every((n) => n in TRITON_UNIMPLEMENTED),
      extra.join(', '),
    ).to.equal(true);
  });
});

describe('Open Inference Protocol with tritonclient and the KServe SDK, direct, all three model families', function () {
  this.timeout(120_000);
  let repo: string;
  let t: TestApp;
  let target: string;

  before(async () => {
    repo = familiesRepo('oip-families-');
    // One reference time for every family's golden vectors (families.test.ts checks they share it).
    const now = Date.parse(FAMILIES[0]?.golden.referenceTime as string);
    t = await startApp({ MODEL_ROOT: repo }, () => now);
    target = `127.0.0.1:${t.ports.grpc}`;
  });
  after(async () => {
    await t?.stop();
    removeDir(repo);
  });

  it('tritonclient: live, ready, model ready per version, server and model metadata, repository index', async () => {
    const [live, ready, ...rest] = await runClient('triton', target, [
      { op: 'live' },
      { op: 'ready' },
      ...FAMILIES.map((f) => ({ op: 'model_ready', model: f.model, version: f.version })),
      { op: 'model_ready', model: 'conversion', version: '20000101T000000Z' },
      { op: 'server_metadata' },
      ...FAMILIES.map((f) => ({ op: 'model_metadata', model: f.model })),
      { op: 'repository_index' },
    ]);
    expect(resultValue(live)).to.equal(true);
    expect(resultValue(ready)).to.equal(true);
    expect(rest.slice(0, 3).map((r) => resultValue(r))).to.deep.equal([true, true, true]);
    expect(resultValue(rest[3])).to.equal(false);
    expect(resultValue<{ extensions: string[] }>(rest[4]).extensions).to.include('model_repository(index)');
    for (const [k, f] of FAMILIES.entries()) {
      const md = resultValue<{
        name: string;
        platform: string;
        inputs: { name: string; datatype: string; shape: string[] }[];
      }>(rest[5 + k]);
      const manifest = JSON.parse(readFileSync(join(f.dir, f.version, 'model.json'), 'utf8')) as {
        fields: { name: string }[];
      };
      expect(md.name).to.equal(f.model);
      expect(md.platform).to.equal('onnx_onnxv1');
      expect(md.inputs.map((i) => i.name)).to.deep.equal(manifest.fields.map((x) => x.name));
      // tritonclient's as_json prints int64 as strings (protobuf's JSON mapping).
      expect(md.inputs.every((i) => JSON.stringify(i.shape) === '["-1"]')).to.equal(true);
    }
    const index = resultValue<{ models: { name: string; state: string }[] }>(rest[8]);
    expect(index.models.map((m) => m.name)).to.include.members(FAMILIES.map((f) => f.model));
    expect(index.models.every((m) => m.state === 'READY')).to.equal(true);
  });

  for (const f of FAMILIES) {
    it(`tritonclient, ${f.family}: every golden record, inputs built from metadata, scores as Predict to 1e-6`, async () => {
      const cases = f.golden.cases;
      const results = await runClient(
        'triton',
        target,
        cases.map((c) => ({
          op: 'infer',
          model: f.model,
          records: [c.record],
          id: `triton-${f.family}-${c.id}`,
        })),
      );
      for (const [k, c] of cases.entries()) {
        const r = resultValue<ClientInfer>(results[k]);
        const p = await predict(t.client, { model: f.model, instances: [c.record] });
        const want = p.predictions[0];
        expect(r.model_version, c.id).to.equal(f.version);
        expect(r.id).to.equal(`triton-${f.family}-${c.id}`);
        expect(r.parameters).to.deep.equal({ arm: 'stable' });
        expect(Math.abs((r.outputs.score?.[0] as number) - (want?.score as number)), c.id).to.be.at.most(
          1e-6,
        );
        expect([r.outputs.label?.[0], r.outputs.group?.[0], r.outputs.action?.[0]], c.id).to.deep.equal([
          want?.label,
          want?.group,
          want?.action,
        ]);
      }
      // Both classes occur, so a server answering one constant label cannot pass.
      expect(new Set(cases.map((c) => c.label)).size).to.equal(2);
    });
  }

  it('tritonclient: a batch, a subset of outputs in its order, INT64 sent as FP64, float/priority parameters', async () => {
    const records = FAMILIES[0]?.golden.cases
      .map((c) => c.record)
      .filter((r) => Object.keys(r).length === Object.keys(SAMPLE_RECORD).length) as Record<
      string,
      unknown
    >[];
    const [batch, subset, asFloat] = await runClient('triton', target, [
      { op: 'infer', model: 'conversion', records },
      { op: 'infer', model: 'conversion', records: [SAMPLE_RECORD], outputs: ['action', 'score'] },
      {
        op: 'infer',
        model: 'conversion',
        records: [SAMPLE_RECORD],
        datatypes: { appId: 'FP64', countryId: 'INT32' },
      },
    ]);
    const p = await predict(t.client, { instances: records });
    expect(resultValue<ClientInfer>(batch).outputs.score).to.deep.equal(p.predictions.map((x) => x.score));
    expect(Object.keys(resultValue<ClientInfer>(subset).outputs)).to.deep.equal(['action', 'score']);
    const seed = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
    expect(resultValue<ClientInfer>(asFloat).outputs.score).to.deep.equal([seed.predictions[0]?.score]);
  });

  it("tritonclient: Predict's error codes, naming the input and row; Triton-only calls UNIMPLEMENTED with a hint", async () => {
    const bad = { ...SAMPLE_RECORD, birthday: '1995-02-30' };
    const big = { ...SAMPLE_RECORD, deviceName: 'x'.repeat(t.config.maxMessageBytes + 1) };
    const results = await runClient('triton', target, [
      { op: 'infer', model: 'nope', metadata_version: '', records: [SAMPLE_RECORD], version: '' },
      {
        op: 'infer',
        model: 'conversion',
        version: '20000101T000000Z',
        metadata_version: '',
        records: [SAMPLE_RECORD],
      },
      { op: 'infer', model: 'conversion', records: [SAMPLE_RECORD, bad] },
      { op: 'infer', model: 'conversion', records: [big] },
      { op: 'model_config', model: 'conversion' },
      { op: 'statistics', model: 'conversion' },
      { op: 'stream_infer', model: 'conversion', records: [SAMPLE_RECORD] },
    ]);
    const codes = results.map((r) => (r.ok ? 'OK' : r.code));
    // The unknown model fails at get_model_metadata already, with the same NOT_FOUND.
    expect(codes).to.deep.equal([
      'NOT_FOUND',
      'NOT_FOUND',
      'INVALID_ARGUMENT',
      'RESOURCE_EXHAUSTED',
      'UNIMPLEMENTED',
      'UNIMPLEMENTED',
      'UNIMPLEMENTED',
    ]);
    const details = results.map((r) => (r.ok ? '' : r.details));
    expect(details[0]).to.match(/unknown model "nope"/);
    expect(details[1]).to.match(/has no version "20000101T000000Z"/);
    expect(details[2]).to.match(/^input birthday row 1 must be an ISO 8601 date, got "1995-02-30"/);
    expect(details[4]).to.equal(
      `ModelConfig is a Triton extension this server does not implement: ${TRITON_UNIMPLEMENTED.ModelConfig}`,
    );
    expect(details[6]).to.match(/^ModelStreamInfer is a Triton extension this server does not implement/);
  });

  it('KServe SDK (InferenceGRPCClient, typed contents, pandas content types): ready, and every family scores as Predict', async () => {
    const cases = FAMILIES.flatMap((f) => f.golden.cases.slice(0, 12).map((c) => ({ f, c })));
    const [live, ready, modelReady, ...inferred] = await runClient('kserve', target, [
      { op: 'live' },
      { op: 'ready' },
      { op: 'model_ready', model: 'conversion-mlp' },
      ...cases.map(({ f, c }) => ({
        op: 'infer',
        model: f.model,
        records: [c.record],
        id: `kserve-${f.family}-${c.id}`,
        date_inputs: ['birthday', 'createTime'],
        headers: { 'x-user-id': `user-${c.id}` },
      })),
    ]);
    expect([resultValue(live), resultValue(ready), resultValue(modelReady)]).to.deep.equal([
      true,
      true,
      true,
    ]);
    for (const [k, { f, c }] of cases.entries()) {
      const r = resultValue<ClientInfer>(inferred[k]);
      const p = await predict(
        t.client,
        { model: f.model, instances: [c.record] },
        metadataOf({ 'x-user-id': `user-${c.id}` }),
      );
      expect(r.model_version).to.equal(f.version);
      expect(r.id).to.equal(`kserve-${f.family}-${c.id}`);
      expect(
        Math.abs((r.outputs.score?.[0] as number) - (p.predictions[0]?.score as number)),
        c.id,
      ).to.be.at.most(1e-6);
      expect([r.outputs.label?.[0], r.outputs.group?.[0]]).to.deep.equal([
        p.predictions[0]?.label,
        p.predictions[0]?.group,
      ]);
    }
  });
});
