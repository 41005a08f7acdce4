/**
 * Builds the images the Compose stack runs: the local stand-ins for the base
 * images where no registry is reachable (scripts/lib/deploy/base-images.ts),
 * then the project's image, once, in Docker's format (HEALTHCHECK kept).
 *
 *   npm run -s build && node dist/scripts/deploy/images.js
 *
 * Then `docker compose up --no-build` (with DOCKER_HOST on podman's socket).
 */
import { buildServerImage, ensureBaseImages } from '../lib/deploy/base-images.js';

const log = (s: string) => process.stderr.write(`[images] ${s}\n`);
try {
  await ensureBaseImages(log);
  await buildServerImage(log);
} catch (err) {
  log(`failed: ${(err as Error).message}`);
  process.exitCode = 1;
}
