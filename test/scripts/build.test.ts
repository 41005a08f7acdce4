import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { expect } from 'chai';
import { ROOT, removeDir } from '../helpers/server.js';

type Prune = (root: string) => string[];

describe('build: outputs of deleted sources', () => {
  it('removes the .js, .js.map and declarations of a source that is gone, and keeps the others', async () => {
    // The build script is plain JavaScript (it runs before tsc); loaded by URL, untyped.
    const url = pathToFileURL(join(ROOT, 'scripts', 'lib', 'dev', 'build.mjs')).href;
    const { pruneStaleOutputs } = (await import(url)) as { pruneStaleOutputs: Prune };
    const root = mkdtempSync(join(tmpdir(), 'build-prune-'));
    try {
      mkdirSync(join(root, 'scripts', 'ops'), { recursive: true });
      mkdirSync(join(root, 'dist', 'scripts', 'ops'), { recursive: true });
      writeFileSync(join(root, 'scripts', 'ops', 'rollout.ts'), '');
      const out = (f: string) => join(root, 'dist', 'scripts', 'ops', f);
      for (const f of [
        'rollout.js',
        'rollout.js.map',
        'weights.js',
        'weights.js.map',
        'weights.d.ts',
        'notes.txt',
      ]) {
        writeFileSync(out(f), '');
      }
      const removed = pruneStaleOutputs(root).sort();
      expect(removed).to.deep.equal(
        ['weights.d.ts', 'weights.js', 'weights.js.map'].map((f) => join('dist', 'scripts', 'ops', f)),
      );
      expect(['rollout.js', 'rollout.js.map', 'notes.txt'].every((f) => existsSync(out(f)))).to.equal(true);
      expect(existsSync(out('weights.js'))).to.equal(false);
    } finally {
      removeDir(root);
    }
  });
});
