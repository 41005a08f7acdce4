import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import type {
  GetModelMetadataResponse,
  ListModelsResponse,
} from '../../server/generated/inference/v1/inference.js';
import { FAMILIES, familiesRepo } from '../helpers/families.js';
import { predict, removeDir, startApp, type TestApp } from '../helpers/server.js';

/**
 * Family parity: one server loads an LR (the demo repository), a GBDT and an
 * MLP (test/fixtures/models, trained by scripts/pipeline/train.py) through the same
 * repository and loader, and the Predict RPC reproduces each family's golden
 * vectors, computed by ONNX Runtime in Python, to 1e-5.
 */
describe('model families: LR, GBDT and MLP served through one code path', function () {
  this.timeout(60_000);
  let repo: string;
  let t: TestApp;

  before(async () => {
    // The golden vectors of all three share one reference time, so one server with a fixed clock checks them all.
    const times = new Set(FAMILIES.map((f) => f.golden.referenceTime));
    expect([...times], 'golden referenceTime of every family').to.have.length(1);
    repo = familiesRepo('families-');
    const now = Date.parse([...times][0] as string);
    t = await startApp({ MODEL_ROOT: repo, MAX_BATCH_INSTANCES: '256' }, () => now);
  });
  after(async () => {
    await t?.stop();
    removeDir(repo);
  });

  it('loads every family: each model serves its newest version and reports its family', async () => {
    const list = await new Promise<ListModelsResponse>((resolve, reject) =>
      t.client.listModels({}, (err, res) => (err ? reject(err) : resolve(res))),
    );
    const served = Object.fromEntries(
      list.models.map((m) => [
        m.name,
        { version: m.servingVersion, family: m.versions.find((v) => v.version === m.servingVersion)?.family },
      ]),
    );
    for (const f of FAMILIES) {
      expect(served[f.model], f.model).to.deep.equal({ version: f.version, family: f.family });
    }
    expect(t.logs.withMsg('model version failed to load')).to.deep.equal([]);
  });

  for (const f of FAMILIES) {
    describe(`${f.family} (${f.model} ${f.version})`, () => {
      it('describes itself with its family and the pipeline manifest', async () => {
        const meta = await new Promise<GetModelMetadataResponse>((resolve, reject) =>
          t.client.getModelMetadata({ model: f.model, version: f.version }, (err, res) =>
            err ? reject(err) : resolve(res),
          ),
        );
        const manifest = JSON.parse(readFileSync(join(f.dir, f.version, 'model.json'), 'utf8')) as {
          sha256: string;
          threshold: number;
          featureNames: string[];
        };
        expect(meta.family).to.equal(f.family);
        expect(meta.sha256).to.equal(manifest.sha256);
        expect(meta.threshold).to.equal(manifest.threshold);
        expect(meta.featureNames).to.deep.equal(manifest.featureNames);
      });

      it(`reproduces all ${f.golden.cases.length} golden vectors to 1e-5 in one batch`, async () => {
        const res = await predict(t.client, {
          model: f.model,
          version: f.version,
          instances: f.golden.cases.map((c) => c.record),
        });
        expect(res.model).to.equal(f.model);
        expect(res.version).to.equal(f.version);
        expect(res.predictions).to.have.length(f.golden.cases.length);
        res.predictions.forEach((p, i) => {
          const c = f.golden.cases[i];
          expect(Math.abs(p.score - (c?.score ?? 2)), `case ${c?.id} score`).to.be.at.most(1e-5);
          expect(p.label, `case ${c?.id} label`).to.equal(c?.label);
        });
        // Golden sets include both classes, so a model that always says 0 (or 1) cannot pass.
        expect(new Set(f.golden.cases.map((c) => c.label)).size).to.equal(2);
      });

      it('reproduces every golden vector to 1e-5 one instance per request, as in batch', async () => {
        for (const c of f.golden.cases) {
          const res = await predict(t.client, { model: f.model, version: f.version, instances: [c.record] });
          expect(Math.abs((res.predictions[0]?.score ?? -1) - c.score), `case ${c.id} score`).to.be.at.most(
            1e-5,
          );
          expect(res.predictions[0]?.label, `case ${c.id} label`).to.equal(c.label);
        }
      });
    });
  }
});
