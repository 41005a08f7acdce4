// Install stamps: a short hash of an install step's inputs, kept in a file beside
// what it installed, so a second run skips the step when nothing changed. Shared by
// the bootstrap (scripts/lib/dev/bootstrap.mjs) and the deploy prerequisites
// (scripts/lib/deploy/prerequisites.mjs); plain JavaScript, as both run before tsc.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';

/** The first 16 hex digits of the SHA-256 of the parts, in order. */
export function hashOf(...parts) {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex').slice(0, 16);
}

/** The stamp recorded at `path`, or '' when there is none. */
export function readStamp(path) {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}
