import { createHash } from 'node:crypto';
import { cpSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { expect } from 'chai';
import {
  copyModels,
  DEMO_MODELS,
  NEWER,
  OLDER,
  predict,
  removeDir,
  SAMPLE_RECORD,
  startApp,
  type TestApp,
  waitFor,
} from '../helpers/server.js';

/** A repository holding only the older demo version. */
function olderOnly(): string {
  const root = copyModels();
  rmSync(join(root, 'conversion', NEWER), { recursive: true });
  return root;
}

/** Publishes a copy of a demo version under `version`, atomically (temp dir, then rename). */
function publish(root: string, from: string, version: string, edit?: (dir: string) => void): void {
  const tmp = join(root, 'conversion', `.tmp-${version}`);
  cpSync(join(DEMO_MODELS, 'conversion', from), tmp, { recursive: true });
  if (from !== version) {
    const manifestPath = join(tmp, 'model.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Record<string, unknown>;
    manifest.version = version;
    writeFileSync(manifestPath, JSON.stringify(manifest));
  }
  edit?.(tmp);
  renameSync(tmp, join(root, 'conversion', version));
}

function failureCount(t: TestApp, version: string): Promise<number> {
  return t.registry
    .getSingleMetric('inference_model_loads_total')
    ?.get()
    .then(
      (m) => m.values.find((v) => v.labels.version === version && v.labels.result === 'failure')?.value ?? 0,
    ) as Promise<number>;
}

describe('model lifecycle: hot swap, bad versions, rollback', function () {
  this.timeout(60_000);
  const roots: string[] = [];
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
    for (const r of roots.splice(0)) removeDir(r);
  });

  it('swaps in a new version under continuous traffic with zero failed requests', async () => {
    const root = olderOnly();
    roots.push(root);
    t = await startApp({ MODEL_ROOT: root, MODEL_POLL_MS: '100' });
    const client = t.client;
    const seen: string[] = [];
    const failures: unknown[] = [];
    let published = false;
    let afterSwitch = 0;
    const deadline = Date.now() + 20_000;
    // Bounded: at most 5000 requests or 20 s, and 200 more once the new version answers.
    for (let i = 0; i < 5000 && Date.now() < deadline && afterSwitch < 200; i++) {
      const batch = await Promise.allSettled(
        Array.from({ length: 4 }, () => predict(client, { instances: [{ ...SAMPLE_RECORD }] })),
      );
      for (const r of batch) {
        if (r.status === 'fulfilled') seen.push(r.value.version);
        else failures.push(r.reason);
      }
      if (!published && seen.length >= 100) {
        publish(root, NEWER, NEWER);
        published = true;
      }
      if (seen[seen.length - 1] === NEWER) afterSwitch += 4;
    }
    expect(failures).to.deep.equal([]);
    expect(seen[0]).to.equal(OLDER);
    expect(seen[seen.length - 1]).to.equal(NEWER);
    // Once the new version answers, the old one never answers a default request again.
    const firstNew = seen.indexOf(NEWER);
    expect(seen.slice(firstNew).every((v) => v === NEWER)).to.equal(true);
    expect(t.logs.withMsg('serving version swapped').map((l) => l.to)).to.deep.equal([OLDER, NEWER]);
  });

  const corruptions: [string, (dir: string) => void, RegExp][] = [
    [
      'a sha256 that does not match',
      (dir) => writeFileSync(join(dir, 'model.onnx'), 'garbage'),
      /sha256 mismatch/,
    ],
    [
      'a corrupt file whose sha256 matches',
      (dir) => {
        writeFileSync(join(dir, 'model.onnx'), 'garbage');
        const m = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as Record<string, unknown>;
        m.sha256 = createHash('sha256').update('garbage').digest('hex');
        writeFileSync(join(dir, 'model.json'), JSON.stringify(m));
      },
      /ONNX Runtime cannot load/,
    ],
    [
      'inputs that do not match the manifest',
      (dir) => {
        const m = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as {
          fields: unknown[];
          featureNames: string[];
        };
        m.fields.push({
          name: 'extra',
          type: 'number',
          required: false,
          default: 0,
          transform: { kind: 'numeric' },
        });
        m.featureNames.push('extra');
        writeFileSync(join(dir, 'model.json'), JSON.stringify(m));
      },
      /has shape \[.*\] but the manifest's fields produce 67 columns/,
    ],
    [
      'a malformed range',
      (dir) => {
        const m = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as {
          fields: Record<string, unknown>[];
        };
        (m.fields[1] as Record<string, unknown>).range = { min: 120, max: 0 };
        writeFileSync(join(dir, 'model.json'), JSON.stringify(m));
      },
      /model\.json is invalid: fields\[1\]\.range\.min must not exceed/,
    ],
    [
      'a default outside its own range',
      (dir) => {
        const m = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as {
          fields: Record<string, unknown>[];
        };
        (m.fields[10] as Record<string, unknown>).default = '0*30000';
        writeFileSync(join(dir, 'model.json'), JSON.stringify(m));
      },
      /model\.json is invalid: field "screenSize": default is refused: height 30000 is outside/,
    ],
    [
      'golden vectors the model does not reproduce',
      (dir) => {
        const g = JSON.parse(readFileSync(join(dir, 'golden.json'), 'utf8')) as {
          cases: { score: number }[];
        };
        (g.cases[0] as { score: number }).score += 0.01;
        writeFileSync(join(dir, 'golden.json'), JSON.stringify(g));
      },
      /golden vector mismatch/,
    ],
  ];
  for (const [what, corrupt, reason] of corruptions) {
    it(`keeps the previous version serving when a new version has ${what}`, async () => {
      const root = olderOnly();
      roots.push(root);
      t = await startApp({ MODEL_ROOT: root, MODEL_POLL_MS: '100' });
      const bad = '29991231T235959Z';
      publish(root, NEWER, bad, corrupt);
      const app = t;
      await waitFor('the load failure to be counted', async () => (await failureCount(app, bad)) === 1);
      const err = t.logs.lines.find((l) => l.level === 'error' && l.version === bad);
      expect(err?.msg).to.equal('model version failed to load; it will not serve');
      expect(err?.reason).to.match(reason);
      const res = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
      expect(res.version).to.equal(OLDER);
      expect(t.app.health.status).to.equal('SERVING');
      // Not retried while its files are unchanged.
      await t.app.repository.scan();
      await t.app.repository.scan();
      expect(await failureCount(t, bad)).to.equal(1);
    });
  }

  it('rolls back when the new version directory is removed', async () => {
    const root = copyModels();
    roots.push(root);
    t = await startApp({ MODEL_ROOT: root, MODEL_POLL_MS: '100' });
    expect((await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] })).version).to.equal(NEWER);
    rmSync(join(root, 'conversion', NEWER), { recursive: true });
    const client = t.client;
    await waitFor(
      'the rollback',
      async () => (await predict(client, { instances: [{ ...SAMPLE_RECORD }] })).version === OLDER,
    );
    const list = t.app.repository.list()[0];
    expect(list?.versions.map((v) => v.version)).to.deep.equal([OLDER]);
  });

  it('serves a pinned version (MODEL_VERSION_POLICY) even when a newer one exists', async () => {
    t = await startApp({ MODEL_VERSION_POLICY: `conversion=${OLDER}` });
    const res = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
    expect(res.version).to.equal(OLDER);
    const explicit = await predict(t.client, { version: NEWER, instances: [{ ...SAMPLE_RECORD }] });
    expect(explicit.version).to.equal(NEWER);
  });

  it('a new model whose only version is broken answers UNAVAILABLE without taking the server out of rotation', async () => {
    const root = copyModels();
    roots.push(root);
    cpSync(join(DEMO_MODELS, 'conversion', OLDER), join(root, 'broken', OLDER), { recursive: true });
    writeFileSync(join(root, 'broken', OLDER, 'model.onnx'), 'garbage');
    t = await startApp({ MODEL_ROOT: root, MODEL_POLL_MS: '100' });
    expect(t.app.health.status).to.equal('SERVING');
    const err = await predict(t.client, { model: 'broken', instances: [{ ...SAMPLE_RECORD }] }).then(
      () => undefined,
      (e: { code: number }) => e.code,
    );
    expect(err).to.equal(status.UNAVAILABLE);
    expect((await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] })).version).to.equal(NEWER);
  });

  it('keeps at most MODEL_MAX_LOADED_VERSIONS versions loaded', async () => {
    const root = copyModels();
    roots.push(root);
    t = await startApp({ MODEL_ROOT: root, MODEL_MAX_LOADED_VERSIONS: '1' });
    expect(t.app.repository.list()[0]?.versions.map((v) => v.version)).to.deep.equal([NEWER]);
  });
});
