/**
 * Running the ghz CLI (https://ghz.sh, pinned by `GHZ_VERSION` in
 * scripts/lib/dev/bootstrap.mjs and installed to .tools/bin/ghz) as a child
 * process. Its command line is built by ghz-args.ts, its JSON report read by
 * ghz-report.ts, summarised by summary.ts and judged by slo.ts.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { TOOLS_BIN } from '../paths.js';
import { runTool, type ToolRunOptions } from '../tool-process.js';

/** Where scripts/lib/dev/bootstrap.mjs installs ghz. */
const GHZ_BIN = join(TOOLS_BIN, 'ghz');

/** ghz could not run at all (not installed, target unreachable, bad proto). */
export class GhzError extends Error {
  override name = 'GhzError';
}

export interface SpawnOptions extends ToolRunOptions {
  /** The ghz binary; .tools/bin/ghz by default. */
  readonly bin?: string;
}

/**
 * Runs ghz with `args` and resolves when it exits 0. Rejects with a `GhzError`
 * carrying ghz's stderr otherwise. ghz prints no progress of its own (v0.121
 * has no progress bar), hence `onTick`. Aborting sends ghz SIGINT: it stops
 * and still writes its report.
 */
export async function spawnGhz(args: readonly string[], options: SpawnOptions = {}): Promise<void> {
  const bin = options.bin ?? GHZ_BIN;
  if (!existsSync(bin)) {
    throw new GhzError(`ghz is not installed at ${bin}; run \`node scripts/dev/bootstrap.mjs\` first.`);
  }
  const exit = await runTool(bin, args, options).catch((err: Error) => {
    throw new GhzError(`could not start ghz (${bin}): ${err.message}`);
  });
  if (exit.code !== 0) {
    const why = exit.stderr.trim() || `exit code ${exit.code ?? exit.signal}`;
    throw new GhzError(`ghz failed: ${why.replace(/^ghz: error: /, '')}`);
  }
}
