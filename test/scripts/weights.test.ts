import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'chai';
import { EnvoyAdmin } from '../../scripts/lib/envoy/admin.js';
import {
  CLUSTER,
  DEFAULT_WEIGHTS,
  ROUTE_CONFIG_NAME,
  routeConfiguration,
  routesVersion,
  STAT_PREFIX,
  WeightsError,
  weightsForCanary,
  weightsOf,
} from '../../scripts/lib/envoy/config.js';
import { INITIAL_ROUTES_VERSION, routesText, writeFileAtomic } from '../../scripts/lib/envoy/files.js';
import { SwitchError, switchWeights } from '../../scripts/lib/envoy/switch.js';
import { toYaml } from '../../scripts/lib/envoy/yaml.js';

describe('weights: validation', () => {
  it('accepts integers 0-100 and sets stable to 100 - canary', () => {
    expect(weightsForCanary(25)).to.deep.equal({ stable: 75, canary: 25 });
    expect(weightsForCanary(0)).to.deep.equal({ stable: 100, canary: 0 });
    expect(weightsForCanary(100)).to.deep.equal({ stable: 0, canary: 100 });
    for (const bad of [-1, 101, 2.5, Number.NaN]) {
      expect(() => weightsForCanary(bad), String(bad)).to.throw(WeightsError, /integer from 0 to 100/);
    }
    expect(() => routeConfiguration({ stable: 80, canary: 10 })).to.throw(WeightsError, /sum to 100/);
  });
});

describe('weights: routes', () => {
  it('lists the canary last, keeps the total at 100, and hashes x-user-id', () => {
    for (const canary of [0, 10, 25, 100]) {
      const rc = routeConfiguration(weightsForCanary(canary));
      const split = rc.virtual_hosts[0]?.routes.find((r) => r.name === 'ab_split')?.route as {
        weighted_clusters: { clusters: { name: string; weight: number }[]; use_hash_policy: boolean };
        hash_policy: unknown;
      };
      const clusters = split.weighted_clusters.clusters;
      expect(clusters.map((c) => c.name)).to.deep.equal([CLUSTER.stable, CLUSTER.canaryWithFallback]);
      expect(clusters.reduce((s, c) => s + c.weight, 0)).to.equal(100);
      expect(split.weighted_clusters.use_hash_policy).to.equal(true);
      expect(split.hash_policy).to.deep.equal([{ header: { header_name: 'x-user-id' } }]);
      expect(weightsOf(rc)).to.deep.equal(weightsForCanary(canary));
    }
  });

  it('refuses a malformed x-user-id first, then matches the QA overrides before the split', () => {
    const routes = routeConfiguration(DEFAULT_WEIGHTS).virtual_hosts[0]?.routes ?? [];
    expect(routes.map((r) => r.name)).to.deep.equal([
      'invalid_user_id',
      'qa_override_stable',
      'qa_override_canary',
      'ab_split',
    ]);
    expect(routes[2]?.match).to.deep.include({
      headers: [{ name: 'x-ab-group', string_match: { exact: 'canary' } }],
    });
  });

  it('names each version by its weights and time', () => {
    expect(routesVersion({ stable: 75, canary: 25 }, new Date('2026-11-24T04:25:54.081Z'))).to.equal(
      'stable-75-canary-25-20261124T042554.081Z',
    );
  });

  it('writes readable YAML with every string quoted', () => {
    const data = { '@type': 'x', a: [1, 'two', { b: true, c: [] }], d: {}, e: null, f: 'say "hi"\n' };
    expect(toYaml(data)).to.equal(
      [
        '"@type": "x"',
        'a:',
        '  - 1',
        '  - "two"',
        '  - b: true',
        '    c: []',
        'd: {}',
        'e: null',
        'f: "say \\"hi\\"\\n"',
        '',
      ].join('\n'),
    );
  });
});

describe('weights: atomic write', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'weights-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('replaces the file by rename (a new inode) and leaves no temp file', async () => {
    const path = join(dir, 'routes.yaml');
    writeFileSync(path, 'old\n');
    const before = statSync(path).ino;
    await writeFileAtomic(path, 'new\n');
    expect(readFileSync(path, 'utf8')).to.equal('new\n');
    expect(statSync(path).ino).to.not.equal(before);
    expect(readdirSync(dir)).to.deep.equal(['routes.yaml']);
  });
});

/**
 * A stand-in for Envoy's admin: it "loads" the routes file whenever asked,
 * as Envoy does on rename, and either accepts it or rejects it.
 */
class FakeAdmin {
  server: Server;
  mode: 'accept' | 'reject' | 'ignore' = 'accept';
  version = INITIAL_ROUTES_VERSION;
  weights = DEFAULT_WEIGHTS;
  success = 1;
  rejected = 0;
  private seen = '';

  constructor(private readonly routesPath: string) {
    this.server = createServer((req, res) => {
      this.load();
      const url = req.url ?? '';
      if (url.startsWith('/config_dump')) {
        res.end(
          JSON.stringify({
            configs: [{ version_info: this.version, route_config: routeConfiguration(this.weights) }],
          }),
        );
      } else if (url.startsWith('/stats')) {
        const p = `http.${STAT_PREFIX}.rds.${ROUTE_CONFIG_NAME}.`;
        res.end(
          JSON.stringify({
            stats: [
              { name: `${p}update_success`, value: this.success },
              { name: `${p}update_rejected`, value: this.rejected },
              { name: `${p}version_text`, value: this.version },
            ],
          }),
        );
      } else {
        res.writeHead(404).end();
      }
    });
  }

  private load(): void {
    const text = readFileSync(this.routesPath, 'utf8');
    if (text === this.seen || this.mode === 'ignore') return;
    this.seen = text;
    const version = /version_info: "([^"]+)"/.exec(text)?.[1] ?? '';
    if (this.mode === 'reject' && version !== this.version) {
      this.rejected++;
      return;
    }
    const canary = Number(/name: "canary_with_fallback"\n\s+weight: (\d+)/.exec(text)?.[1]);
    this.version = version;
    this.weights = weightsForCanary(canary);
    this.success++;
  }

  async listen(): Promise<EnvoyAdmin> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return new EnvoyAdmin(`127.0.0.1:${(this.server.address() as AddressInfo).port}`);
  }
}

describe('weights: switching against an admin API', () => {
  let dir: string;
  let routesPath: string;
  let fake: FakeAdmin;
  let admin: EnvoyAdmin;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'weights-'));
    routesPath = join(dir, 'routes.yaml');
    writeFileSync(routesPath, routesText(DEFAULT_WEIGHTS, INITIAL_ROUTES_VERSION));
    fake = new FakeAdmin(routesPath);
    admin = await fake.listen();
  });
  afterEach(async () => {
    if (fake.server.listening) await new Promise((r) => fake.server.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes the file, waits for the new version and reports before and after', async () => {
    const r = await switchWeights({ admin, routesPath, weights: weightsForCanary(25), timeoutMs: 3000 });
    expect(r.changed).to.equal(true);
    expect(r.before).to.deep.equal({ version: INITIAL_ROUTES_VERSION, weights: { stable: 90, canary: 10 } });
    expect(r.after.weights).to.deep.equal({ stable: 75, canary: 25 });
    expect(r.after.version).to.match(/^stable-75-canary-25-/);
    expect(readFileSync(routesPath, 'utf8')).to.include(`version_info: "${r.after.version}"`);
  });

  it('does nothing when the weights are already in force', async () => {
    const text = readFileSync(routesPath, 'utf8');
    const r = await switchWeights({ admin, routesPath, weights: DEFAULT_WEIGHTS, timeoutMs: 3000 });
    expect(r.changed).to.equal(false);
    expect(readFileSync(routesPath, 'utf8')).to.equal(text);
  });

  it('fails clearly and restores the previous file when Envoy rejects it', async () => {
    fake.mode = 'reject';
    const text = readFileSync(routesPath, 'utf8');
    const err = await switchWeights({
      admin,
      routesPath,
      weights: weightsForCanary(25),
      timeoutMs: 3000,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(SwitchError);
    expect((err as Error).message).to.match(/Envoy rejected the routes file .*still serves version "initial/);
    expect((err as Error).message).to.include('The previous routes file was restored.');
    expect(readFileSync(routesPath, 'utf8')).to.equal(text);
  });

  it('fails clearly when Envoy never loads the file', async () => {
    fake.mode = 'ignore';
    const err = await switchWeights({
      admin,
      routesPath,
      weights: weightsForCanary(25),
      timeoutMs: 300,
    }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as Error).message).to.match(/did not load version "stable-75-canary-25-.*" within 300 ms/);
  });

  it('writes nothing when the admin does not answer', async () => {
    await new Promise((r) => fake.server.close(r));
    const text = readFileSync(routesPath, 'utf8');
    const err = await switchWeights({ admin, routesPath, weights: weightsForCanary(25) }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as Error).message).to.match(/did not answer .*ECONNREFUSED.*Nothing was written/);
    expect(readFileSync(routesPath, 'utf8')).to.equal(text);
  });
});
