// The project root and the is-main check for the dev tools, which run as
// plain JavaScript before anything is compiled (the TypeScript side has the
// same root in scripts/lib/paths.ts and `isMain` in scripts/lib/cli.ts).
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The project root, with a trailing slash (this file is three levels below it). */
export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** True when `moduleUrl` (the caller's `import.meta.url`) is the script node was started with. */
export function isMain(moduleUrl) {
  return moduleUrl === pathToFileURL(process.argv[1] ?? '').href;
}
