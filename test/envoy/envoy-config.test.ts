/**
 * What can be checked of the deployment without a Docker engine: the
 * committed Envoy files are current renderings, Envoy 1.40 validates every
 * bootstrap (local, container, and with the routes inlined, since validate
 * mode does not read the RDS file), and a real Compose implementation accepts
 * docker-compose.yml with the properties the design relies on.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import {
  CONTAINER_BOOTSTRAP,
  DEFAULT_WEIGHTS,
  LOCAL_BOOTSTRAP,
  weightsForCanary,
} from '../../scripts/lib/envoy/config.js';
import { bootstrapText, committedEnvoyFiles } from '../../scripts/lib/envoy/files.js';
import { envoyBinary } from '../../scripts/lib/envoy/process.js';
import { demoVersions } from '../helpers/envoy.js';
import { ROOT, removeDir } from '../helpers/server.js';
import { makeThrowawayCa } from '../helpers/tls.js';

/** `envoy --mode validate`, from `cwd` (relative paths in the config resolve against it). */
function validate(configPath: string, cwd: string): { ok: boolean; output: string } {
  const r = spawnSync(
    envoyBinary(ROOT),
    ['--mode', 'validate', '--config-path', configPath, '--log-level', 'warning', '--disable-hot-restart'],
    { cwd, encoding: 'utf8', timeout: 30_000 },
  );
  return { ok: r.status === 0, output: `${r.stdout}${r.stderr}` };
}

/**
 * A Compose implementation: the one scripts/dev/bootstrap.mjs builds into
 * .tools/bin, else `docker-compose` on PATH.
 */
function composeBinary(): string {
  const local = join(ROOT, '.tools', 'bin', 'docker-compose');
  if (existsSync(local)) return local;
  const onPath = spawnSync('docker-compose', ['version'], { encoding: 'utf8' });
  if (onPath.status === 0) return 'docker-compose';
  throw new Error(
    'no Compose implementation: run `node scripts/dev/bootstrap.mjs` (builds .tools/bin/docker-compose)',
  );
}

describe('Envoy and Compose configuration', function () {
  this.timeout(60_000);
  let dir: string;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'envoy-config-'));
  });
  after(() => removeDir(dir));

  it('commits exactly what scripts/lib/envoy/config.ts renders', () => {
    const files = committedEnvoyFiles();
    // Every committed Envoy file is compared (an empty list would compare nothing; a file
    // dropped from the renderer would go unchecked).
    expect(Object.keys(files).sort()).to.deep.equal([
      'deploy/helm/inference-ab/files/envoy-tls.yaml',
      'deploy/helm/inference-ab/files/envoy.yaml',
      'deploy/helm/inference-ab/files/routes.yaml',
      'envoy/envoy.docker.tls.yaml',
      'envoy/envoy.docker.yaml',
      'envoy/envoy.yaml',
      'envoy/routes/routes.yaml',
    ]);
    for (const [rel, text] of Object.entries(files)) {
      expect(
        readFileSync(join(ROOT, rel), 'utf8'),
        `${rel} is stale: run node dist/scripts/ops/envoy-config.js`,
      ).to.equal(text);
    }
  });

  it("validates npm start's bootstrap (envoy/envoy.yaml) as committed", () => {
    // Its paths are relative to the repository root: recreate them in a scratch root.
    const root = join(dir, 'local');
    mkdirSync(join(root, 'envoy', 'run', 'routes'), { recursive: true });
    mkdirSync(join(root, 'logs', 'envoy'), { recursive: true });
    cpSync(join(ROOT, 'envoy', 'routes', 'routes.yaml'), join(root, LOCAL_BOOTSTRAP.routesPath));
    const r = validate(join(ROOT, 'envoy', 'envoy.yaml'), root);
    expect(r.ok, r.output).to.equal(true);
    expect(r.output).to.not.match(/deprecat/i);
  });

  it('validates the container bootstrap (envoy/envoy.docker.yaml) with its RDS directory in place', () => {
    // Validate mode insists the RDS path exists; point /etc/envoy/routes at a scratch copy.
    const routes = join(dir, 'etc-envoy-routes');
    mkdirSync(routes, { recursive: true });
    cpSync(join(ROOT, 'envoy', 'routes', 'routes.yaml'), join(routes, 'routes.yaml'));
    const text = readFileSync(join(ROOT, 'envoy', 'envoy.docker.yaml'), 'utf8');
    expect(text).to.include('/etc/envoy/routes/routes.yaml');
    const config = join(dir, 'envoy.docker.yaml');
    writeFileSync(config, text.replaceAll('/etc/envoy/routes', routes));
    const r = validate(config, dir);
    expect(r.ok, r.output).to.equal(true);
    expect(r.output).to.not.match(/deprecat/i);
  });

  it('validates the mutual-TLS container bootstrap (envoy/envoy.docker.tls.yaml) with throwaway certificates', () => {
    const ca = makeThrowawayCa();
    try {
      const routes = join(dir, 'tls-etc-envoy-routes');
      mkdirSync(routes, { recursive: true });
      cpSync(join(ROOT, 'envoy', 'routes', 'routes.yaml'), join(routes, 'routes.yaml'));
      const text = readFileSync(join(ROOT, 'envoy', 'envoy.docker.tls.yaml'), 'utf8');
      expect(text).to.include('require_client_certificate: true');
      const config = join(dir, 'envoy.docker.tls.yaml');
      writeFileSync(
        config,
        text
          .replaceAll('/etc/envoy/routes', routes)
          .replaceAll('/etc/envoy/tls/server.crt', ca.serverCert)
          .replaceAll('/etc/envoy/tls/server.key', ca.serverKey)
          .replaceAll('/etc/envoy/tls/ca.crt', ca.caCert),
      );
      const r = validate(config, dir);
      expect(r.ok, r.output).to.equal(true);
      expect(r.output).to.not.match(/deprecat/i);
    } finally {
      removeDir(ca.dir);
    }
  });

  it('validates both bootstraps with the routes inlined, for every kind of split', () => {
    // Validate mode does not read the RDS file's content; inlining the routes checks them too.
    for (const base of [LOCAL_BOOTSTRAP, CONTAINER_BOOTSTRAP]) {
      for (const weights of [DEFAULT_WEIGHTS, weightsForCanary(0), weightsForCanary(100)]) {
        const config = join(dir, `inline-${base.discovery}-${weights.canary}.yaml`);
        writeFileSync(
          config,
          bootstrapText(
            { ...base, inlineRoutes: weights, accessLog: join(dir, 'access.log') },
            'inline routes',
          ),
        );
        const r = validate(config, dir);
        expect(r.ok, `${config}\n${r.output}`).to.equal(true);
        expect(r.output).to.not.match(/deprecat/i);
      }
    }
  });

  it('rejects a bootstrap with a misspelt field (validate mode is strict)', () => {
    const config = join(dir, 'bad.yaml');
    writeFileSync(
      config,
      bootstrapText({ ...CONTAINER_BOOTSTRAP, inlineRoutes: DEFAULT_WEIGHTS }, 'bad').replace(
        'use_hash_policy',
        'use_hash_polcy',
      ),
    );
    const r = validate(config, dir);
    expect(r.ok).to.equal(false);
    expect(r.output).to.match(/use_hash_polcy/);
  });

  it('passes `docker compose config` with the design properties intact', () => {
    const compose = composeBinary();
    const r = spawnSync(
      compose,
      ['--project-directory', ROOT, '-f', join(ROOT, 'docker-compose.yml'), 'config', '--format', 'json'],
      {
        encoding: 'utf8',
        timeout: 30_000,
        env: { PATH: process.env.PATH ?? '', HOME: dir },
      },
    );
    expect(r.status, r.stderr).to.equal(0);
    const cfg = JSON.parse(r.stdout) as {
      services: Record<
        string,
        {
          image?: string;
          environment?: Record<string, string>;
          volumes?: { type: string; source: string; target: string }[];
          ports?: { host_ip?: string; published?: string; target: number }[];
          stop_grace_period?: string;
          container_name?: string;
          user?: string;
          mem_limit?: string | number;
          pids_limit?: number;
          cap_drop?: string[];
        }
      >;
    };
    const { envoy, stable, canary, prometheus } = cfg.services;
    expect(envoy?.image).to.equal('envoyproxy/envoy:v1.40.0');
    expect(prometheus, 'prometheus service').to.not.equal(undefined);
    // The RDS directory is mounted, not the file.
    expect(envoy?.volumes).to.deep.include.members([
      {
        type: 'bind',
        source: join(ROOT, 'envoy', 'routes'),
        target: '/etc/envoy/routes',
        read_only: true,
        bind: {},
      },
    ]);
    expect(envoy?.volumes?.some((v) => v.source.endsWith('routes.yaml'))).to.equal(false);
    // Every service is bounded in memory and processes and holds no Linux capability.
    for (const [name, svc] of Object.entries(cfg.services)) {
      expect(svc.mem_limit, `${name} mem_limit`).to.not.equal(undefined);
      expect(svc.pids_limit, `${name} pids_limit`).to.be.a('number');
      expect(svc.cap_drop, `${name} cap_drop`).to.deep.equal(['ALL']);
    }
    // Host ports on loopback only (Envoy publishes some, so the loop checks something).
    expect(envoy?.ports ?? [], 'ports Envoy publishes').to.not.deep.equal([]);
    for (const s of Object.values(cfg.services))
      for (const p of s.ports ?? []) expect(p.host_ip).to.equal('127.0.0.1');
    // Scalable: no fixed container names or host ports on the servers.
    const { older, newer } = demoVersions();
    for (const [s, version, role, port] of [
      [stable, older, 'stable', '50051'],
      [canary, newer, 'canary', '50052'],
    ] as const) {
      expect(s?.container_name).to.equal(undefined);
      expect(s?.ports ?? []).to.deep.equal([]);
      expect(s?.environment).to.include({
        ROLE: role,
        GRPC_PORT: port,
        MODEL_VERSION_POLICY: `conversion=${version}`,
      });
      // Stop grace outlasts the drain plus the shutdown grace.
      const graceS = Number(/^(\d+)s$/.exec(s?.stop_grace_period ?? '')?.[1]);
      const env = s?.environment ?? {};
      expect(graceS * 1000).to.be.greaterThan(Number(env.DRAIN_MS) + Number(env.SHUTDOWN_GRACE_MS));
    }
    // The container bootstrap resolves the Compose service names with STRICT_DNS, on those ports.
    const bootstrap = readFileSync(join(ROOT, 'envoy', 'envoy.docker.yaml'), 'utf8');
    expect(bootstrap.match(/type: "STRICT_DNS"/g)).to.have.length(2);
    expect(bootstrap).to.match(/address: "stable"\n\s+port_value: 50051/);
    expect(bootstrap).to.match(/address: "canary"\n\s+port_value: 50052/);
    const prom = readFileSync(join(ROOT, 'deploy', 'prometheus.yml'), 'utf8');
    expect(prom).to.include('names: [stable]').and.include('names: [canary]').and.include('envoy:9902');
  });

  it('builds the image as a non-root, multi-stage build with a gRPC health check', () => {
    const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
    expect(dockerfile.match(/^FROM /gm)).to.have.length(2);
    expect(dockerfile).to.match(/--omit=dev/);
    expect(dockerfile).to.match(/^USER node$/m);
    expect(dockerfile).to.match(/^HEALTHCHECK .*\n\s+CMD \["node", "dist\/scripts\/ops\/healthcheck\.js"\]/m);
    // The compiled health check and server the image runs exist after the build.
    expect(existsSync(join(ROOT, 'dist', 'scripts', 'ops', 'healthcheck.js'))).to.equal(true);
  });
});
