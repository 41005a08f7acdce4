import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import type { ListModelsResponse, ModelSummary } from '../../server/generated/inference/v1/inference.js';
import { LABELS_FILE, type VersionLabels, writeLabels } from '../../server/version-labels.js';
import { fifoInPlaceOf, releaseFifo } from '../helpers/fifo.js';
import {
  copyModels,
  DEMO_MODELS,
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

function listModels(t: TestApp): Promise<ListModelsResponse> {
  return new Promise((resolve, reject) =>
    t.client.listModels({}, (err, res) => (err ? reject(err) : resolve(res))),
  );
}

async function conversion(t: TestApp): Promise<ModelSummary> {
  const m = (await listModels(t)).models.find((x) => x.name === 'conversion');
  if (!m) throw new Error('conversion is not listed');
  return m;
}

async function gauge(t: TestApp, name: string, labels: Record<string, string>): Promise<number | undefined> {
  const m = await t.registry.getSingleMetric(name)?.get();
  return m?.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value;
}

const health = (t: TestApp) => t.app.health.status;

/** A copy of a demo version under another version name (same model, manifest edited). */
function cloneVersion(root: string, from: string, version: string, edit?: (dir: string) => void): void {
  const dir = join(root, 'conversion', version);
  cpSync(join(DEMO_MODELS, 'conversion', from), dir, { recursive: true });
  const path = join(dir, 'model.json');
  const manifest = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  writeFileSync(path, JSON.stringify({ ...manifest, version }));
  edit?.(dir);
}

const labels = (root: string, l: VersionLabels) => writeLabels(join(root, 'conversion'), l);

describe('version labels (labels.json): each arm serves its label, and fails closed', function () {
  this.timeout(60_000);
  const roots: string[] = [];
  const apps: TestApp[] = [];
  const repo = (): string => {
    const r = copyModels('labels-', { labels: true });
    roots.push(r);
    return r;
  };
  const start = async (env: Record<string, string>) => {
    const t = await startApp({ MODEL_POLL_MS: '100', ...env });
    apps.push(t);
    return t;
  };
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((t) => t.stop()));
    for (const r of roots.splice(0)) removeDir(r);
  });

  it('serves the label of its role: stable the older demo version, canary the newer, whatever is newest', async () => {
    const root = repo();
    const stable = await start({ MODEL_ROOT: root });
    const canary = await start({ MODEL_ROOT: root, ROLE: 'canary' });
    expect((await predict(stable.client, { instances: [{ ...SAMPLE_RECORD }] })).version).to.equal(OLDER);
    expect((await predict(canary.client, { instances: [{ ...SAMPLE_RECORD }] })).version).to.equal(NEWER);
    const s = await conversion(stable);
    expect(s).to.include({
      servingVersion: OLDER,
      wantedVersion: OLDER,
      wantedSource: 'label',
      state: 'SERVING',
    });
    expect(s.labels).to.deep.equal({ stable: OLDER, canary: NEWER });
    expect((await listModels(canary)).label).to.equal('canary');
    // MODEL_VERSION_LABEL overrides the role's label.
    const shadow = await start({ MODEL_ROOT: root, MODEL_VERSION_LABEL: 'canary' });
    expect((await conversion(shadow)).servingVersion).to.equal(NEWER);
  });

  it('ignores a pin and the newest version when the model has labels', async () => {
    const root = repo();
    const t = await start({ MODEL_ROOT: root, MODEL_VERSION_POLICY: `conversion=${NEWER}` });
    expect((await conversion(t)).servingVersion).to.equal(OLDER);
  });

  it('follows a label change within a poll, under traffic, with zero failed calls', async () => {
    const root = repo();
    const t = await start({ MODEL_ROOT: root });
    const seen: string[] = [];
    const failures: unknown[] = [];
    let changedAt = 0;
    let servedAt = 0;
    const deadline = Date.now() + 20_000;
    for (let i = 0; i < 4000 && Date.now() < deadline && (servedAt === 0 || seen.length < 800); i++) {
      const batch = await Promise.allSettled(
        Array.from({ length: 4 }, () => predict(t.client, { instances: [{ ...SAMPLE_RECORD }] })),
      );
      for (const r of batch) {
        if (r.status === 'fulfilled') {
          seen.push(r.value.version);
          if (r.value.version === NEWER && servedAt === 0) servedAt = Date.now();
        } else failures.push(r.reason);
      }
      if (changedAt === 0 && seen.length >= 200) {
        await labels(root, { stable: NEWER, canary: NEWER });
        changedAt = Date.now();
      }
    }
    expect(failures).to.deep.equal([]);
    expect(servedAt, 'the new label never served').to.be.greaterThan(0);
    // Once the label's version answers, nothing answers with the old one (an atomic swap).
    const first = seen.indexOf(NEWER);
    expect(seen.slice(first).every((v) => v === NEWER)).to.equal(true);
    expect(seen.slice(0, first).every((v) => v === OLDER)).to.equal(true);
    process.stdout.write(
      `      (label change → served in ${servedAt - changedAt} ms, poll 100 ms, ${seen.length} calls)\n`,
    );
  });

  for (const [what, prepare] of [
    ['a version that does not exist', (_root: string) => '20300101T000000Z'],
    [
      'a version whose model.onnx does not match its sha256',
      (root: string) => {
        cloneVersion(root, NEWER, '20261201T000000Z', (dir) =>
          writeFileSync(join(dir, 'model.onnx'), 'not onnx'),
        );
        return '20261201T000000Z';
      },
    ],
  ] as const) {
    it(`keeps serving the current version when the label moves to ${what}, and says so`, async () => {
      const root = repo();
      const t = await start({ MODEL_ROOT: root });
      const bad = prepare(root);
      await labels(root, { stable: bad, canary: NEWER });
      await waitFor('the mismatch in ListModels', async () => (await conversion(t)).state === 'MISMATCH');
      const m = await conversion(t);
      expect(m).to.include({ servingVersion: OLDER, wantedVersion: bad, wantedSource: 'label' });
      expect(m.problem).to.include(bad);
      expect((await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] })).version).to.equal(OLDER);
      expect(await gauge(t, 'inference_model_version_mismatch', { model: 'conversion' })).to.equal(1);
      expect(
        await gauge(t, 'inference_model_version_wanted', { model: 'conversion', version: bad }),
      ).to.equal(1);
      const errors = t.logs.lines.filter((l) => l.level === 'error' && l.model === 'conversion' && l.problem);
      expect(errors).to.have.length(1); // once, not every poll
      expect(errors[0]?.msg).to.equal('wanted version cannot be served; keeping the version that serves now');
      expect(health(t)).to.equal('SERVING');
      // The label moves back: serving as wanted, the mismatch cleared.
      await labels(root, { stable: OLDER, canary: NEWER });
      await waitFor('the mismatch to clear', async () => (await conversion(t)).state === 'SERVING');
      expect(await gauge(t, 'inference_model_version_mismatch', { model: 'conversion' })).to.equal(0);
    });
  }

  it("keeps serving when labels.json becomes unreadable, or loses this arm's label", async () => {
    const root = repo();
    const t = await start({ MODEL_ROOT: root });
    writeFileSync(join(root, 'conversion', LABELS_FILE), '{"stable": ');
    await waitFor('the mismatch', async () => (await conversion(t)).state === 'MISMATCH');
    expect((await conversion(t)).problem).to.match(/labels\.json is not JSON/);
    expect((await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] })).version).to.equal(OLDER);
    // A FIFO in its place is refused at once (a plain open would wait for a writer forever).
    const file = join(root, 'conversion', LABELS_FILE);
    try {
      fifoInPlaceOf(file);
      await waitFor('the FIFO refused', async () => /FIFO/.test((await conversion(t)).problem));
      expect((await conversion(t)).problem).to.equal(
        'labels.json cannot be read: a FIFO (named pipe), not a regular file',
      );
      expect((await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] })).version).to.equal(OLDER);
    } finally {
      releaseFifo(file);
    }
    await labels(root, { canary: NEWER });
    await waitFor('the new problem', async () => /no label "stable"/.test((await conversion(t)).problem));
    expect((await conversion(t)).servingVersion).to.equal(OLDER);
  });

  it('at start-up, a label naming a missing version leaves the model UNAVAILABLE and the server NOT_SERVING', async () => {
    const root = repo();
    await labels(root, { stable: '20300101T000000Z', canary: NEWER });
    const t = await start({ MODEL_ROOT: root });
    const err = await expectGrpcError(predict(t.client, { instances: [{ ...SAMPLE_RECORD }] }));
    expect(err.code).to.equal(status.UNAVAILABLE);
    expect(err.details).to.match(/arm stable.*20300101T000000Z.*not in the repository/);
    expect(await conversion(t)).to.include({ servingVersion: '', state: 'UNAVAILABLE' });
    expect(health(t)).to.equal('NOT_SERVING');
    // Fixing the label brings it into rotation without a restart.
    await labels(root, { stable: OLDER, canary: NEWER });
    await waitFor('SERVING', () => health(t) === 'SERVING', 10_000);
    expect((await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] })).version).to.equal(OLDER);
  });

  it('at start-up, a pin naming a missing version leaves the model UNAVAILABLE (never another version)', async () => {
    const root = copyModels('pins-');
    roots.push(root);
    const t = await start({ MODEL_ROOT: root, MODEL_VERSION_POLICY: 'conversion=20300101T000000Z' });
    const err = await expectGrpcError(predict(t.client, { instances: [{ ...SAMPLE_RECORD }] }));
    expect(err.code).to.equal(status.UNAVAILABLE);
    expect(await conversion(t)).to.include({
      state: 'UNAVAILABLE',
      wantedSource: 'pin',
      wantedVersion: '20300101T000000Z',
    });
    expect(health(t)).to.equal('NOT_SERVING');
    expect(await gauge(t, 'inference_model_version_mismatch', { model: 'conversion' })).to.equal(1);
  });

  it('never evicts a labelled version, whatever MODEL_MAX_LOADED_VERSIONS says; a version this arm lacks is NOT_FOUND naming the arm', async () => {
    const root = repo();
    cloneVersion(root, NEWER, '20261201T000000Z');
    cloneVersion(root, NEWER, '20261202T000000Z');
    const t = await start({ MODEL_ROOT: root, MODEL_MAX_LOADED_VERSIONS: '1' });
    const m = await conversion(t);
    expect(m.versions.map((v) => v.version)).to.have.members([OLDER, NEWER]);
    // Both labelled versions answer by name on this (stable) server.
    for (const v of [OLDER, NEWER]) {
      expect((await predict(t.client, { version: v, instances: [{ ...SAMPLE_RECORD }] })).version).to.equal(
        v,
      );
    }
    const err = await expectGrpcError(
      predict(t.client, { version: '20261202T000000Z', instances: [{ ...SAMPLE_RECORD }] }),
    );
    expect(err.code).to.equal(status.NOT_FOUND);
    expect(err.details).to.equal(
      `model "conversion" has no version "20261202T000000Z" on this server (arm stable); it holds ${NEWER}, ${OLDER} (serving)`,
    );
  });

  it('drops a removed serving version rather than switching to another one', async () => {
    const root = repo();
    const t = await start({ MODEL_ROOT: root });
    rmSync(join(root, 'conversion', OLDER), { recursive: true });
    await waitFor('UNAVAILABLE', async () => (await conversion(t)).state === 'UNAVAILABLE');
    const err = await expectGrpcError(predict(t.client, { instances: [{ ...SAMPLE_RECORD }] }));
    expect(err.code).to.equal(status.UNAVAILABLE);
    await waitFor('NOT_SERVING', () => health(t) === 'NOT_SERVING');
  });
});
