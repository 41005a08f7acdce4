// What `npm run test:deploy` needs beyond `npm test`, installed idempotently by
// `node scripts/dev/bootstrap.mjs --deploy` (after the ordinary bootstrap):
//   Debian packages   podman (with runc), etcd, prometheus/promtool, debootstrap… (apt-get, as root)
//   /etc/containers/containers.conf   runtime runc and the default ulimits this machine kind needs
//   .tools/bin/kube-apiserver, kubectl  v1.37.2, built from deploy/tools/kube/go.mod (~6 min cold)
//   .tools/bin/helm   `go install helm.sh/helm/v3/cmd/helm@HELM_VERSION`
// Each part is skipped while its stamp (or dpkg's record) matches, so a warm run
// costs a few milliseconds. The base images and the project's image are built by
// the test itself (scripts/lib/deploy/base-images.ts), also stamped.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { hashOf, readStamp } from '../dev/stamp.mjs';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

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
const CONTAINERS_CONF = `# Written by the project's scripts/dev/bootstrap.mjs --deploy (npm run test:deploy).
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
`;

/** Section 5: what `npm run test:deploy` needs beyond `npm test`. */
export function deployPrerequisites({ quiet = false } = {}) {
  const say = (msg) => {
    if (!quiet) process.stderr.write(`[bootstrap] ${msg}\n`);
  };
  const run = (cmd, args, opts = {}) => {
    say(`$ ${cmd} ${args.join(' ')}`);
    // Bounded: a hung download must fail the run, not eat CI's 90 minutes.
    execFileSync(cmd, args, {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
      timeout: 30 * 60_000,
      ...opts,
    });
  };
  const step = (name, stampPath, want, install) => {
    if (readStamp(stampPath) === want) return;
    const t0 = Date.now();
    say(`${name}: installing…`);
    install();
    writeFileSync(stampPath, `${want}\n`);
    say(`${name}: ready (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  };
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
  const tools = join(ROOT, '.tools');
  const bin = join(tools, 'bin');
  mkdirSync(bin, { recursive: true });
  const goEnv = { ...process.env, GOFLAGS: '-mod=mod', GOTOOLCHAIN: 'local' };
  const kubeDir = join(ROOT, 'deploy', 'tools', 'kube');
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
