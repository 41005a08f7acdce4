import { expect } from 'chai';
import { PROJECT_ROOT } from '../../scripts/lib/paths.js';
import { kindOf, layoutViolations, projectSources, type SourceFile } from '../helpers/import-graph.js';

describe('layout: commands, libraries and the server import what their paths allow', () => {
  it('holds for the whole tree (server/, scripts/)', () => {
    const files = projectSources(PROJECT_ROOT);
    // The walk really found the three kinds (a broken walk would pass vacuously).
    const kinds = new Set(files.map((f) => kindOf(f.path)));
    expect([...kinds].sort()).to.include.members(['command', 'library', 'server']);
    expect(files.filter((f) => f.path.endsWith('.py')).length).to.be.greaterThan(5);
    expect(layoutViolations(files)).to.deep.equal([]);
  });

  // The checker itself, on small trees that break each rule once.
  const tree = (...files: [string, string][]): SourceFile[] => files.map(([path, text]) => ({ path, text }));

  it('refuses a command that imports a command', () => {
    const v = layoutViolations(
      tree(
        ['scripts/ops/a.ts', "import { x } from '../load/b.js';\nrunIfMain(import.meta.url, 'a', main);"],
        ['scripts/load/b.ts', "export const x = 1;\nrunIfMain(import.meta.url, 'b', main);"],
      ),
    );
    expect(v).to.have.length(1);
    expect(v[0]).to.match(/scripts\/ops\/a\.ts \(command\) imports the command scripts\/load\/b\.ts/);
  });

  it('refuses a library that imports a command, or runs as a program', () => {
    const v = layoutViolations(
      tree(
        ['scripts/lib/x.ts', "import { y } from '../ops/y.js';"],
        ['scripts/ops/y.ts', "export const y = 1;\nrunIfMain(import.meta.url, 'y', main);"],
        ['scripts/lib/z.ts', "runIfMain(import.meta.url, 'z', main);"],
      ),
    );
    expect(v.join('\n')).to.match(/scripts\/lib\/x\.ts \(library\) imports the command scripts\/ops\/y\.ts/);
    expect(v.join('\n')).to.match(/scripts\/lib\/z\.ts is a library but runs as a program/);
  });

  it('refuses a server module that imports scripts, and files outside the known folders', () => {
    const v = layoutViolations(
      tree(
        ['server/a.ts', "import { PROJECT_ROOT } from '../scripts/lib/paths.js';"],
        ['scripts/lib/paths.ts', 'export const PROJECT_ROOT = "/";'],
        ['scripts/stray.ts', ''],
      ),
    );
    expect(v.join('\n')).to.match(/server\/a\.ts \(server\) imports scripts\/lib\/paths\.ts/);
    expect(v.join('\n')).to.match(/scripts\/stray\.ts is neither a library/);
  });

  it('reads Python imports: a command may use the pipeline package, not another command', () => {
    const v = layoutViolations(
      tree(
        ['scripts/lib/pipeline/__init__.py', ''],
        ['scripts/lib/pipeline/features.py', 'import numpy as np\n'],
        [
          'scripts/pipeline/train.py',
          'from pipeline import features as F\nif __name__ == "__main__":\n    main()\n',
        ],
        ['scripts/bench/flask_app.py', 'import train\nif __name__ == "__main__":\n    main()\n'],
      ),
    );
    expect(v).to.deep.equal([
      'scripts/bench/flask_app.py (command) imports the command scripts/pipeline/train.py: move what they share into scripts/lib/',
    ]);
  });

  it('requires an entry point in every command', () => {
    const v = layoutViolations(tree(['scripts/ops/helper.ts', 'export const x = 1;']));
    expect(v).to.deep.equal(['scripts/ops/helper.ts is in a command folder but has no entry point']);
  });
});
