/**
 * Builds the images the Compose stack runs: the local stand-ins for the base
 * images where no registry is reachable (scripts/lib/deploy/base-images.ts),
 * then the project's image, once, in Docker's format (HEALTHCHECK kept).
 *
 *   node scripts/dev/build.mjs && node dist/scripts/deploy/images.js
 *
 * Then `docker compose up --no-build` (with DOCKER_HOST on podman's socket).
 * Exit 0 when both are built, 1 otherwise.
 */
import { runIfMain } from '../lib/cli.js';
import { buildServerImage, ensureBaseImages } from '../lib/deploy/base-images.js';

async function main(): Promise<number> {
  const log = (s: string) => process.stderr.write(`[images] ${s}\n`);
  try {
    await ensureBaseImages(log);
    await buildServerImage(log);
    return 0;
  } catch (err) {
    log(`failed: ${(err as Error).message}`);
    return 1;
  }
}

runIfMain(import.meta.url, 'images', main);
