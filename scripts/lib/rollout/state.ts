/**
 * The rollout's state and its lock, kept beside the routes (`rollout.json` and
 * `rollout.lock` in the directory that holds the routes directory), so a
 * rollout survives a restart of the command, and two invocations cannot move
 * the same stack at once.
 *
 * State writes are atomic (temp file + rename). The lock is a file created
 * exclusively (O_EXCL) holding the owner's pid, host and command; a lock whose
 * pid is gone on this host is stale and taken over, with a warning.
 */
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../envoy/files.js';
import type { Analysis, ArmFigures } from './analysis.js';

/**
 * Where a rollout stands.
 *   idle            nothing in progress (or after a promotion)
 *   canary-ready    the canary label names the new version and every canary server serves it; 0% traffic
 *   progressing     stepping through the weights (`step` is the current one)
 *   paused          interrupted (Ctrl-C) at `step`; `start` resumes
 *   held            inconclusive too many times at `step`; `start` resumes
 *   complete        every step passed; `promote` is next
 *   rolled-back     the canary weight is 0 after a failed analysis or `rollback`
 */
export type Phase = 'idle' | 'canary-ready' | 'progressing' | 'paused' | 'held' | 'complete' | 'rolled-back';

export interface HistoryEntry {
  readonly at: string;
  readonly event: string;
  readonly detail: string;
}

export interface RolloutState {
  readonly model: string;
  readonly phase: Phase;
  /** The version on trial (the canary label), once `canary <version>` ran. */
  readonly canaryVersion: string | undefined;
  /** The stable label's version when the trial began (restored if a promotion fails). */
  readonly stableVersion: string | undefined;
  readonly steps: readonly number[];
  /** Index into `steps` of the step in force or next; -1 before the first. */
  readonly step: number;
  /** The canary weight to return to after a promotion (the base split). */
  readonly baseCanary: number;
  readonly lastAnalysis: Analysis | undefined;
  /**
   * Stable's figures from the last analysis that measured stable on a full
   * sample: what a 100% canary step compares with, when no user reaches stable.
   */
  readonly stableBaseline?: ArmFigures | undefined;
  readonly updatedAt: string;
  readonly history: readonly HistoryEntry[];
}

export function initialState(model: string, baseCanary: number): RolloutState {
  return {
    model,
    phase: 'idle',
    canaryVersion: undefined,
    stableVersion: undefined,
    steps: [],
    step: -1,
    baseCanary,
    lastAnalysis: undefined,
    updatedAt: new Date().toISOString(),
    history: [],
  };
}

/** The default state file for a routes file: beside its directory. */
export function statePathFor(routesPath: string): string {
  return join(dirname(dirname(routesPath)), 'rollout.json');
}

/** The state, or undefined when no rollout ever ran here. Throws on an unreadable file. */
export async function readState(path: string): Promise<RolloutState | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  const s = JSON.parse(text) as RolloutState;
  if (typeof s.phase !== 'string' || typeof s.model !== 'string' || !Array.isArray(s.history)) {
    throw new Error(`${path} is not a rollout state file`);
  }
  return s;
}

/** Keeps the history bounded: the newest entries. */
const MAX_HISTORY = 200;

/** Writes the next state atomically, with one history entry. */
export async function saveState(
  path: string,
  state: RolloutState,
  event: string,
  detail: string,
): Promise<RolloutState> {
  const at = new Date().toISOString();
  const next: RolloutState = {
    ...state,
    updatedAt: at,
    history: [...state.history, { at, event, detail }].slice(-MAX_HISTORY),
  };
  await writeFileAtomic(path, `${JSON.stringify(next, null, 2)}\n`);
  return next;
}

/** Another invocation holds the lock. */
export class LockedError extends Error {
  override name = 'LockedError';
}

interface LockOwner {
  readonly pid: number;
  readonly host: string;
  readonly command: string;
  readonly since: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Takes the lock, or throws LockedError naming its owner. Returns the release
 * function (idempotent) and a warning when a stale lock was taken over.
 */
export async function acquireLock(
  path: string,
  command: string,
): Promise<{ release: () => Promise<void>; warning: string | undefined }> {
  const me: LockOwner = { pid: process.pid, host: hostname(), command, since: new Date().toISOString() };
  let warning: string | undefined;
  await mkdir(dirname(path), { recursive: true });
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const h = await open(path, 'wx', 0o644);
      await h.writeFile(`${JSON.stringify(me)}\n`);
      await h.close();
      let released = false;
      return {
        warning,
        release: async () => {
          if (released) return;
          released = true;
          await rm(path, { force: true });
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let owner: LockOwner | undefined;
      try {
        owner = JSON.parse(await readFile(path, 'utf8')) as LockOwner;
      } catch {
        owner = undefined;
      }
      if (owner && (owner.host !== me.host || alive(owner.pid))) {
        throw new LockedError(
          `another rollout holds ${path}: pid ${owner.pid} on ${owner.host}, \`${owner.command}\` since ${owner.since}; ` +
            'wait for it to finish or stop it (Ctrl-C leaves a consistent state)',
        );
      }
      warning = owner
        ? `took over a stale lock of pid ${owner.pid} (\`${owner.command}\`, since ${owner.since}), which is no longer running`
        : 'took over an unreadable lock file';
      await rm(path, { force: true });
    }
  }
  throw new LockedError(`could not take the lock ${path}`);
}
