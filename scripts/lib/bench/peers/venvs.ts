/**
 * The peers' Python environments, one per peer under .venv-peers/ (git-ignored),
 * created idempotently before `npm run bench -- --peers` starts them and never
 * otherwise: `python3 -m venv`, then `pip install -r
 * scripts/bench/requirements/<key>.txt` (every package pinned), then the
 * peer's gRPC contract as a protoset for ghz (scripts/bench/peer_protoset.py).
 * A stamp of those inputs skips the step while nothing changed, as
 * scripts/lib/dev/bootstrap.mjs does for the project's own venv.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { PROJECT_ROOT } from '../../paths.js';
import type { Progress } from '../measure.js';
import type { PeerSpec } from './peer.js';

export const PEER_VENVS_DIR = join(PROJECT_ROOT, '.venv-peers');
const PROTOSET_APP = join(PROJECT_ROOT, 'scripts', 'bench', 'peer_protoset.py');

/** A peer's ready venv. */
export interface PeerVenv {
  readonly dir: string;
  readonly python: string;
  /** The peer's contract for ghz `--protoset`. */
  readonly protoset: string;
  /** The lib directory of the interpreter the venv was made from (pyvenv.cfg `home`/../lib). */
  readonly baseLibDir: string | undefined;
}

export const requirementsOf = (spec: PeerSpec) =>
  join(PROJECT_ROOT, 'scripts', 'bench', 'requirements', `${spec.key}.txt`);

function venvOf(spec: PeerSpec, root: string): PeerVenv {
  const dir = join(root, spec.venv);
  let baseLibDir: string | undefined;
  try {
    const home = /^home\s*=\s*(.+)$/m.exec(readFileSync(join(dir, 'pyvenv.cfg'), 'utf8'))?.[1]?.trim();
    if (home) baseLibDir = join(dirname(home), 'lib');
  } catch {
    // no venv yet
  }
  return { dir, python: join(dir, 'bin', 'python'), protoset: join(dir, 'contract.protoset'), baseLibDir };
}

/** Runs a command, relaying its output line by line with `[peers <key>]` in front. */
function run(progress: Progress, key: string, cmd: string, args: readonly string[]): Promise<void> {
  progress(`[peers ${key}] $ ${cmd} ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: PROJECT_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [child.stdout, child.stderr]) {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => {
        buf += d;
        const lines = buf.split('\n');
        buf = lines.pop() ?? '';
        for (const l of lines) if (l.trim() !== '') progress(`[peers ${key}]   ${l.trimEnd()}`);
      });
    }
    child.once('error', reject);
    child.once('close', (code, signal) =>
      code === 0
        ? resolve()
        : reject(new Error(`${cmd} ${args.join(' ')} failed (${signal ?? `exit ${code}`})`)),
    );
  });
}

/**
 * The venv of `spec`, created or brought up to date first when its stamp
 * (requirements, protoset script, base interpreter) changed.
 */
export async function ensurePeerVenv(
  spec: PeerSpec,
  progress: Progress,
  o: { readonly root?: string; readonly basePython?: string } = {},
): Promise<PeerVenv> {
  const root = o.root ?? PEER_VENVS_DIR;
  const basePython = o.basePython ?? 'python3';
  const requirements = requirementsOf(spec);
  const want = createHash('sha256')
    .update(readFileSync(requirements))
    .update(readFileSync(PROTOSET_APP))
    .update(spec.pb2Module)
    .digest('hex')
    .slice(0, 16);
  let venv = venvOf(spec, root);
  const stampFile = join(venv.dir, '.bootstrap-stamp');
  const stamp = existsSync(stampFile) ? readFileSync(stampFile, 'utf8').trim() : '';
  if (stamp === want && existsSync(venv.python) && existsSync(venv.protoset)) return venv;
  const t0 = Date.now();
  progress(`[peers ${spec.key}] venv ${venv.dir}: installing (pinned in ${requirements})…`);
  mkdirSync(root, { recursive: true });
  if (!existsSync(venv.python)) await run(progress, spec.key, basePython, ['-m', 'venv', venv.dir]);
  await run(progress, spec.key, venv.python, [
    '-m',
    'pip',
    'install',
    '--disable-pip-version-check',
    '--progress-bar',
    'off',
    '-r',
    requirements,
  ]);
  await run(progress, spec.key, venv.python, [PROTOSET_APP, spec.pb2Module, venv.protoset]);
  writeFileSync(stampFile, `${want}\n`);
  venv = venvOf(spec, root);
  progress(`[peers ${spec.key}] venv ready (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  return venv;
}
