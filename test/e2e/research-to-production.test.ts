import { execFile } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import type { GetModelMetadataResponse } from '../../server/generated/inference/v1/inference.js';
import {
  copyModels,
  predict,
  ROOT,
  removeDir,
  SAMPLE_RECORD,
  startApp,
  type TestApp,
  waitFor,
} from '../helpers/server.js';

const run = promisify(execFile);
const PYTHON = join(ROOT, '.venv', 'bin', 'python');

/**
 * The research-to-production flow of the README, end to end, for every family:
 * train a new version with the Python pipeline, publish it into the repository
 * of a running server, see the server serve it without a restart, and pass
 * the version's own QA cases against that server.
 */
describe('research to production: train → publish-model → served live → qa', function () {
  this.timeout(180_000);
  let t: TestApp;
  let repo: string;
  let trained: string;
  before(async () => {
    repo = copyModels('prod-');
    trained = mkdtempSync(join(tmpdir(), 'trained-'));
    t = await startApp({ MODEL_ROOT: repo, MODEL_POLL_MS: '100' });
  });
  after(async () => {
    await t.stop();
    removeDir(repo);
    removeDir(trained);
  });

  for (const family of ['lr', 'gbdt', 'mlp']) {
    it(`${family}: a freshly trained version is accepted, served without a restart, and passes its QA`, async () => {
      const { stdout } = await run(
        PYTHON,
        [
          'scripts/pipeline/train.py',
          '--family',
          family,
          '--small',
          '--rows',
          '10000',
          '--no-report',
          '--no-speed',
          '--out',
          trained,
          '--name',
          'conversion',
        ],
        { cwd: ROOT, timeout: 120_000 },
      );
      const versionDir = stdout.trim().split('\n').at(-1) as string;
      const version = basename(versionDir);
      expect(version).to.match(/^\d{8}T\d{6}Z$/);

      const published = await run(
        process.execPath,
        ['dist/scripts/ops/publish-model.js', versionDir, '--to', repo],
        { cwd: ROOT, timeout: 60_000 },
      );
      expect(published.stdout.trim()).to.equal(join(repo, 'conversion', version));

      const client = t.client;
      await waitFor(`the server to serve ${version}`, async () => {
        const res = await predict(client, { instances: [{ ...SAMPLE_RECORD }] });
        return res.version === version;
      });

      // The server describes it as the family that was asked for.
      const meta = await new Promise<GetModelMetadataResponse>((resolve, reject) =>
        client.getModelMetadata({ model: 'conversion', version }, (err, res) =>
          err ? reject(err) : resolve(res),
        ),
      );
      expect(meta.family).to.equal(family);

      const qa = await run(
        process.execPath,
        [
          'dist/scripts/ops/qa.js',
          '--target',
          `127.0.0.1:${t.ports.grpc}`,
          '--version-dir',
          join(repo, 'conversion', version),
        ],
        { cwd: ROOT, timeout: 60_000 },
      );
      // Exit 0 already means every case passed; the summary must also count them.
      const summary = /qa: (\d+) passed, 0 failed of (\d+) cases/.exec(`${qa.stdout}${qa.stderr}`);
      expect(summary, 'the qa summary line').to.not.equal(null);
      expect(summary?.[1]).to.equal(summary?.[2]);
      expect(Number(summary?.[2])).to.be.greaterThan(5);
    });
  }
});
