import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { expect } from 'chai';
import { type CliRun, nodeScript } from '../helpers/cli.js';
import {
  DEMO_MODELS,
  NEWER,
  OLDER,
  predict,
  ROOT,
  removeDir,
  SAMPLE_RECORD,
  startApp,
  type TestApp,
  waitFor,
} from '../helpers/server.js';

const FIXTURES = join(ROOT, 'test', 'fixtures', 'models');
const GBDT_VERSION = readdirSync(join(FIXTURES, 'conversion-gbdt')).sort().pop() as string;

/** Runs the built CLI as a child process, as an operator would; bounded by a timeout. */
const publishCli = nodeScript('ops/publish-model');

/** Every directory and file under `dir`, with file sizes and sha256: equal snapshots mean byte-for-byte equal trees. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const ent of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, ent.name);
      const rel = relative(dir, p);
      if (ent.isDirectory()) {
        out[`${rel}/`] = 'dir';
        walk(p);
      } else {
        out[rel] = `${statSync(p).size}:${createHash('sha256').update(readFileSync(p)).digest('hex')}`;
      }
    }
  };
  walk(dir);
  return out;
}

function tempLeftovers(snap: Record<string, string>): string[] {
  return Object.keys(snap).filter((p) => p.split('/').some((part) => part.startsWith('.tmp')));
}

/** A writable copy of one demo version at `<tmp>/<name>/<version>`, for corrupting. */
function sourceCopy(tmp: string, version: string): string {
  const dir = join(tmp, 'conversion', version);
  mkdirSync(join(tmp, 'conversion'), { recursive: true });
  cpSync(join(DEMO_MODELS, 'conversion', version), dir, { recursive: true });
  return dir;
}

function editJson(path: string, edit: (json: Record<string, unknown>) => void): void {
  const json = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(json);
  writeFileSync(path, JSON.stringify(json, null, 2));
}

describe('publish-model (CLI as a child process)', function () {
  this.timeout(60_000);
  const dirs: string[] = [];
  const tempDir = (prefix: string) => {
    const d = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
  after(() => {
    for (const d of dirs) removeDir(d);
  });

  describe('into the repository of a running server', () => {
    let repo: string;
    let t: TestApp;
    const referenceTime = Date.parse(
      (
        JSON.parse(readFileSync(join(DEMO_MODELS, 'conversion', NEWER, 'golden.json'), 'utf8')) as {
          referenceTime: string;
        }
      ).referenceTime,
    );

    before(async () => {
      repo = tempDir('publish-repo-');
      cpSync(join(DEMO_MODELS, 'conversion', OLDER), join(repo, 'conversion', OLDER), { recursive: true });
      t = await startApp({ MODEL_ROOT: repo, MODEL_POLL_MS: '100' }, () => referenceTime);
    });
    after(async () => t.stop());

    it('publishes a new version, byte-identical, which the server then serves without a restart', async () => {
      const before = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
      expect(before.version).to.equal(OLDER);

      const source = join(DEMO_MODELS, 'conversion', NEWER);
      const run = await publishCli([source, '--to', repo]);
      expect(run.code, run.stderr).to.equal(0);
      const target = join(repo, 'conversion', NEWER);
      expect(run.stdout.trim()).to.equal(target);
      expect(run.stderr).to.contain('32 golden vectors reproduced');
      expect(snapshot(target)).to.deep.equal(snapshot(source));
      expect(tempLeftovers(snapshot(repo))).to.deep.equal([]);

      await waitFor(
        `the server to serve ${NEWER}`,
        async () => (await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] })).version === NEWER,
      );
      const golden = JSON.parse(readFileSync(join(source, 'golden.json'), 'utf8')) as {
        cases: { id: string; score: number }[];
      };
      const seed = golden.cases.find((c) => c.id === 'seed-sample');
      const res = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
      expect(res.version).to.equal(NEWER);
      expect(Math.abs((res.predictions[0]?.score ?? -1) - (seed?.score ?? 2))).to.be.at.most(1e-5);
      expect(t.logs.withMsg('serving version swapped').map((l) => l.to)).to.include(NEWER);
    });

    it('publishes a model the repository does not have yet, in one step, and the server adds it', async () => {
      const source = join(FIXTURES, 'conversion-gbdt', GBDT_VERSION);
      const run = await publishCli([source, '--to', repo]);
      expect(run.code, run.stderr).to.equal(0);
      expect(snapshot(join(repo, 'conversion-gbdt', GBDT_VERSION))).to.deep.equal(snapshot(source));
      expect(readdirSync(join(repo, 'conversion-gbdt'))).to.deep.equal([GBDT_VERSION]);
      expect(tempLeftovers(snapshot(repo))).to.deep.equal([]);
      await waitFor('the server to serve conversion-gbdt', async () => {
        try {
          const res = await predict(t.client, {
            model: 'conversion-gbdt',
            instances: [{ ...SAMPLE_RECORD }],
          });
          return res.version === GBDT_VERSION;
        } catch {
          return false; // NOT_FOUND until the next poll loads it
        }
      });
    });
  });

  describe('refuses, leaving the target repository byte-for-byte unchanged', () => {
    let repo: string;
    let before: Record<string, string>;

    beforeEach(() => {
      repo = tempDir('publish-refuse-');
      cpSync(join(DEMO_MODELS, 'conversion', OLDER), join(repo, 'conversion', OLDER), { recursive: true });
      before = snapshot(repo);
    });

    /** Publishes `source` into the repo and checks the refusal: exit code, reason, nothing changed. */
    async function expectRefused(source: string, exitCode: number, reason: string): Promise<CliRun> {
      const run = await publishCli([source, '--to', repo]);
      expect(run.code, `exit code; stderr: ${run.stderr}`).to.equal(exitCode);
      expect(run.stdout).to.equal('');
      expect(run.stderr).to.contain(reason);
      const after = snapshot(repo);
      expect(tempLeftovers(after)).to.deep.equal([]);
      expect(after).to.deep.equal(before);
      return run;
    }

    it('a corrupt model.onnx (with a manifest sha256 that matches it), which ONNX Runtime cannot load', async () => {
      const src = sourceCopy(tempDir('publish-src-'), NEWER);
      const onnx = readFileSync(join(src, 'model.onnx'));
      const corrupt = onnx.subarray(0, Math.floor(onnx.length / 2));
      writeFileSync(join(src, 'model.onnx'), corrupt);
      editJson(join(src, 'model.json'), (m) => {
        m.sha256 = createHash('sha256').update(corrupt).digest('hex');
      });
      await expectRefused(src, 1, 'ONNX Runtime cannot load model.onnx');
    });

    it('a corrupt model.onnx whose bytes no longer match the manifest', async () => {
      const src = sourceCopy(tempDir('publish-src-'), NEWER);
      const onnx = readFileSync(join(src, 'model.onnx'));
      onnx[onnx.length - 1] ^= 0xff;
      writeFileSync(join(src, 'model.onnx'), onnx);
      await expectRefused(src, 1, 'sha256 mismatch');
    });

    it('a wrong sha256 in the manifest', async () => {
      const src = sourceCopy(tempDir('publish-src-'), NEWER);
      editJson(join(src, 'model.json'), (m) => {
        m.sha256 = '0'.repeat(64);
      });
      await expectRefused(src, 1, `the manifest says ${'0'.repeat(64)}`);
    });

    it('a golden vector mismatch (one golden score edited)', async () => {
      const src = sourceCopy(tempDir('publish-src-'), NEWER);
      editJson(join(src, 'golden.json'), (g) => {
        const cases = g.cases as { id: string; score: number }[];
        const last = cases[cases.length - 1] as { id: string; score: number };
        last.score += 0.001;
      });
      const run = await expectRefused(src, 1, 'golden vector mismatch');
      expect(run.stderr).to.match(/case \S+: score is/);
    });

    it('a version without golden.json', async () => {
      const src = sourceCopy(tempDir('publish-src-'), NEWER);
      removeDir(join(src, 'golden.json'));
      await expectRefused(src, 1, 'golden.json is missing');
    });

    it('a malformed qa.json', async () => {
      const src = sourceCopy(tempDir('publish-src-'), NEWER);
      editJson(join(src, 'qa.json'), (q) => {
        (q.cases as { expect: { code: string } }[])[0] = { expect: { code: 'FINE' } };
      });
      await expectRefused(src, 1, 'qa.json is invalid');
    });

    it('a version that already exists, even when the source is valid', async () => {
      await expectRefused(join(DEMO_MODELS, 'conversion', OLDER), 3, 'already exists');
    });

    it('a source directory whose name is not a version', async () => {
      const src = join(tempDir('publish-src-'), 'conversion', 'latest');
      cpSync(join(DEMO_MODELS, 'conversion', NEWER), src, { recursive: true });
      await expectRefused(src, 2, 'is not a version');
    });
  });
});
