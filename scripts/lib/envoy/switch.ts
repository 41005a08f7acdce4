/**
 * Changing the A/B weights on a running Envoy: write the RDS file atomically,
 * then confirm through the admin API that Envoy accepted exactly that version.
 * Only routes change, so no listener or cluster drains and no connection is
 * touched: requests in flight finish on the route they started with.
 */
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { AdminError, type EnvoyAdmin, type LiveRoutes } from './admin.js';
import { ROUTE_CONFIG_NAME, routesVersion, type Weights } from './config.js';
import { routesText, writeFileAtomic } from './files.js';

/** The switch failed; the message tells the operator what happened and what Envoy serves. */
export class SwitchError extends Error {
  override name = 'SwitchError';
}

export interface SwitchOptions {
  readonly admin: EnvoyAdmin;
  readonly routesPath: string;
  readonly weights: Weights;
  /** How long to wait for Envoy to load the file. */
  readonly timeoutMs?: number;
  readonly now?: () => Date;
}

export interface SwitchResult {
  readonly before: LiveRoutes;
  readonly after: LiveRoutes;
  /** False when Envoy already served these weights and nothing was written. */
  readonly changed: boolean;
  /** From the rename to Envoy reporting the new version. */
  readonly confirmMs: number;
}

/**
 * Applies `weights`. Reads what Envoy serves first (and fails without writing
 * if the admin does not answer), writes the file, then polls until
 * `rds.<name>.update_success` has moved and `/config_dump` shows the new
 * version. If Envoy rejects the file, the previous file is restored, so the
 * file on disk matches what Envoy serves, and a SwitchError says so.
 */
export async function switchWeights(o: SwitchOptions): Promise<SwitchResult> {
  const { admin } = o;
  let before: LiveRoutes | undefined;
  let counters: Awaited<ReturnType<EnvoyAdmin['rds']>>;
  try {
    before = await admin.liveRoutes();
    counters = await admin.rds();
  } catch (err) {
    if (err instanceof AdminError) {
      throw new SwitchError(`${err.message}. Is the stack running? Nothing was written.`);
    }
    throw err;
  }
  if (!before) {
    throw new SwitchError(
      `Envoy at ${admin.base} serves no "${ROUTE_CONFIG_NAME}" route configuration; is this the A/B Envoy? Nothing was written.`,
    );
  }
  const same = before.weights?.stable === o.weights.stable && before.weights?.canary === o.weights.canary;
  if (same) return { before, after: before, changed: false, confirmMs: 0 };

  let previousText: string | undefined;
  try {
    previousText = readFileSync(o.routesPath, 'utf8');
  } catch {
    previousText = undefined;
  }
  const version = routesVersion(o.weights, (o.now ?? (() => new Date()))());
  await writeFileAtomic(o.routesPath, routesText(o.weights, version));
  const t0 = Date.now();
  const deadline = t0 + (o.timeoutMs ?? 10_000);

  while (Date.now() < deadline) {
    await sleep(50);
    let now: Awaited<ReturnType<EnvoyAdmin['rds']>>;
    let live: LiveRoutes | undefined;
    try {
      now = await admin.rds();
      live = await admin.liveRoutes();
    } catch {
      continue; // a slow admin answer; keep polling until the deadline
    }
    if (now.updateSuccess > counters.updateSuccess && live?.version === version) {
      return { before, after: live, changed: true, confirmMs: Date.now() - t0 };
    }
    if (now.updateRejected > counters.updateRejected || now.updateFailure > counters.updateFailure) {
      const restored = await restore(o.routesPath, previousText);
      throw new SwitchError(
        `Envoy rejected the routes file (update_rejected ${counters.updateRejected}→${now.updateRejected}, ` +
          `update_failure ${counters.updateFailure}→${now.updateFailure}); it still serves version ` +
          `"${live?.version ?? before.version}". Envoy's log has the reason. ${restored}`,
      );
    }
  }
  const watched = await admin.watchedRoutesPath().catch(() => undefined);
  const restored = await restore(o.routesPath, previousText);
  throw new SwitchError(
    `Envoy did not load version "${version}" within ${o.timeoutMs ?? 10_000} ms ` +
      `(update_success stayed at ${counters.updateSuccess}). ` +
      `Envoy watches ${watched ? `"${watched}"` : 'a path its bootstrap names'}; this command wrote "${o.routesPath}". ${restored}`,
  );
}

async function restore(path: string, previousText: string | undefined): Promise<string> {
  if (previousText === undefined) return 'There was no previous file to restore.';
  try {
    await writeFileAtomic(path, previousText);
    return 'The previous routes file was restored.';
  } catch (err) {
    return `Restoring the previous routes file failed: ${(err as Error).message}.`;
  }
}
