/**
 * The project's layout rules, checked over the real import graph (see the
 * README's source map): a file's path says whether it is a command or a
 * library, and the imports respect that.
 *
 *   server/**          the product; imports nothing from scripts/ or test/
 *   scripts/lib/**     libraries: no entry point; import libraries and server/ only
 *   scripts/<role>/**  commands (ops, load, bench, deploy, dev, pipeline): an entry
 *                      point each; import libraries and server/, never a command
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

/** The folders of scripts/ that hold commands. */
const COMMAND_DIRS = ['ops', 'load', 'bench', 'deploy', 'dev', 'pipeline'] as const;

export type Kind = 'server' | 'library' | 'command' | 'misplaced';

/** One source file: its project-relative path and text. */
export interface SourceFile {
  readonly path: string;
  readonly text: string;
}

export function kindOf(path: string): Kind {
  if (path.startsWith('server/')) return 'server';
  if (path.startsWith('scripts/lib/')) return 'library';
  const [top, dir, rest] = path.split('/');
  if (top === 'scripts' && rest !== undefined && (COMMAND_DIRS as readonly string[]).includes(dir ?? '')) {
    return 'command';
  }
  return 'misplaced';
}

const TS_IMPORT = /(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm;
const PY_IMPORT = /^\s*(?:from\s+([\w.]+)\s+import|import\s+([\w.]+))/gm;

/**
 * The project files `file` imports, as project-relative paths. TypeScript and
 * .mjs: relative specifiers resolved from the file (`.js` read as the `.ts`
 * it compiles from). Python: modules that name a file of the project's own
 * Python (`pipeline.x` → scripts/lib/pipeline/x.py; a bare `train` → the
 * command file of that name, which is what a command-imports-command looks like).
 */
function importsOf(file: SourceFile, pythonModules: ReadonlyMap<string, string>): string[] {
  const out: string[] = [];
  if (file.path.endsWith('.py')) {
    for (const m of file.text.matchAll(PY_IMPORT)) {
      const mod = (m[1] ?? m[2] ?? '').split('.');
      for (let n = mod.length; n > 0; n--) {
        const hit = pythonModules.get(mod.slice(0, n).join('.'));
        if (hit !== undefined) {
          if (hit !== file.path) out.push(hit);
          break;
        }
      }
    }
    return out;
  }
  for (const m of file.text.matchAll(TS_IMPORT)) {
    const spec = m[1] ?? '';
    if (!spec.startsWith('.')) continue;
    const target = normalize(join(dirname(file.path), spec));
    out.push(target.replace(/\.js$/, file.path.endsWith('.mjs') && target.endsWith('.mjs') ? '.mjs' : '.ts'));
  }
  return out;
}

/** True when the file runs something when executed: a command's entry point. */
function hasEntryPoint(file: SourceFile): boolean {
  if (file.path.endsWith('.py')) return /^if __name__ == ["']__main__["']:/m.test(file.text);
  return /\b(?:runIfMain|isMain)\(import\.meta\.url\b|import\.meta\.url === pathToFileURL\(process\.argv\[1\]|^await main\(|^await import\(/m.test(
    file.text,
  );
}

/** Every violation of the layout rules in `files`, one sentence each. */
export function layoutViolations(files: readonly SourceFile[]): string[] {
  const problems: string[] = [];
  const pythonModules = new Map<string, string>();
  for (const f of files) {
    if (!f.path.endsWith('.py')) continue;
    const lib = /^scripts\/lib\/(.+)\.py$/.exec(f.path);
    if (lib?.[1]) pythonModules.set(lib[1].replace(/\/__init__$/, '').replaceAll('/', '.'), f.path);
    else pythonModules.set(f.path.replace(/\.py$/, '').split('/').at(-1) as string, f.path);
  }
  for (const f of files) {
    const kind = kindOf(f.path);
    if (kind === 'misplaced') {
      problems.push(
        `${f.path} is neither a library (scripts/lib/) nor in a command folder (scripts/{${COMMAND_DIRS.join(',')}}/)`,
      );
      continue;
    }
    const entry = hasEntryPoint(f);
    if (kind === 'command' && !entry)
      problems.push(`${f.path} is in a command folder but has no entry point`);
    if (kind === 'library' && entry) problems.push(`${f.path} is a library but runs as a program`);
    for (const target of importsOf(f, pythonModules)) {
      const tk = kindOf(target);
      if (kind === 'server' && !target.startsWith('server/')) {
        problems.push(`${f.path} (server) imports ${target}: the server depends on nothing outside server/`);
      } else if (
        kind !== 'server' &&
        (tk === 'command' || tk === 'misplaced') &&
        target.startsWith('scripts/')
      ) {
        problems.push(
          `${f.path} (${kind}) imports the command ${target}: move what they share into scripts/lib/`,
        );
      } else if (target.startsWith('test/')) {
        problems.push(`${f.path} imports test code ${target}`);
      }
    }
  }
  return problems;
}

/** The project's own sources under server/ and scripts/, generated stubs excepted. */
export function projectSources(root: string): SourceFile[] {
  const out: SourceFile[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      const rel = relative(root, p);
      if (e.isDirectory()) {
        if (!['generated', '__pycache__', 'node_modules'].includes(e.name)) walk(p);
      } else if (/\.(ts|mjs|py)$/.test(e.name)) {
        out.push({ path: rel, text: readFileSync(p, 'utf8') });
      }
    }
  };
  walk(join(root, 'server'));
  walk(join(root, 'scripts'));
  return out;
}
