/**
 * Where things are in the project, for every script and test. Compiled code
 * runs from dist/scripts/lib/, three levels below the project root; the
 * sources sit at the same depth (scripts/lib/), so both resolve alike.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The project root, with a trailing slash. */
export const PROJECT_ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Compiled JavaScript (`npm run build`). */
export const DIST = join(PROJECT_ROOT, 'dist');

/** The compiled server entry point. */
export const SERVER_MAIN = join(DIST, 'server', 'main.js');

/** The demo model repository. */
export const MODELS_DIR = join(PROJECT_ROOT, 'models');

/** The test fixtures' models (GBDT, MLP and large variants), which some benchmarks serve too. */
export const FIXTURE_MODELS_DIR = join(PROJECT_ROOT, 'test', 'fixtures', 'models');

/** The project's Python venv (scripts/dev/bootstrap.mjs). */
export const VENV_PYTHON = join(PROJECT_ROOT, '.venv', 'bin', 'python');

/** Go tools built by the bootstrap (ghz, hey, grpcurl, docker-compose). */
export const TOOLS_BIN = join(PROJECT_ROOT, '.tools', 'bin');

/** The .proto contract, for tools that want files rather than reflection. */
export const PROTO_DIR = join(PROJECT_ROOT, 'proto');
