import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { credentials, type ServiceError, status } from '@grpc/grpc-js';
import { expect } from 'chai';
import { HealthCheckResponse_ServingStatus, HealthClient, watchHealth } from '../helpers/health-client.js';
import {
  DEMO_VERSIONS,
  expectGrpcError,
  predict,
  removeDir,
  SAMPLE_RECORD,
  type SpawnedServer,
  spawnServer,
  startApp,
  type TestApp,
  waitFor,
} from '../helpers/server.js';

/** Servers spawned by a test; whatever the test did, none outlives it (a live child keeps mocha from exiting). */
const spawned: SpawnedServer[] = [];
async function spawn(env: Record<string, string>): Promise<SpawnedServer> {
  const s = await spawnServer(env);
  spawned.push(s);
  return s;
}
async function killSpawned(): Promise<void> {
  for (const s of spawned.splice(0)) {
    if (s.proc.exitCode === null && s.proc.signalCode === null) await s.kill();
  }
}

async function scrape(port: number): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).to.equal(200);
  return res.text();
}

/** The value of one sample line, or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

/** The sum of every sample line of `name` carrying these labels (whatever its other labels). */
function total(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (want.every((w) => line.includes(w))) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}

describe('metrics endpoint', function () {
  this.timeout(30_000);
  let t: TestApp;
  before(async () => {
    t = await startApp();
  });
  after(async () => t.stop());

  it('exports request counts, latency, inference time, in-flight, loads, versions and process defaults', async () => {
    const serving = t.app.repository.resolve('conversion', '').version;
    const runs = { model: 'conversion', version: serving };
    // Warm-up (the golden replay) already ran the model once at load.
    const runsBefore = sample(
      await scrape(t.ports.metrics),
      'inference_model_run_duration_seconds_count',
      runs,
    );
    expect(runsBefore).to.equal(1);
    for (let i = 0; i < 5; i++) await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
    await expectGrpcError(predict(t.client, { model: 'nope', instances: [{ ...SAMPLE_RECORD }] }));
    const text = await scrape(t.ports.metrics);
    const ok = { method: 'Predict', model: 'conversion', version: serving, code: 'OK' };
    expect(sample(text, 'inference_requests_total', ok)).to.equal(5);
    expect(sample(text, 'inference_requests_total', { method: 'Predict', code: 'NOT_FOUND' })).to.equal(1);
    expect(sample(text, 'inference_request_duration_seconds_count', ok)).to.equal(5);
    expect(sample(text, 'inference_request_duration_seconds_bucket', { ...ok, le: '2.5' })).to.equal(5);
    expect(sample(text, 'inference_model_run_duration_seconds_count', runs)).to.equal(6);
    // One run per call, plus the warm-up of every loaded version.
    expect(sample(text, 'inference_batch_instances_count', { model: 'conversion' })).to.equal(
      5 + DEMO_VERSIONS.length,
    );
    expect(sample(text, 'inference_in_flight_requests', {})).to.equal(0);
    expect(sample(text, 'inference_model_loads_total', { version: serving, result: 'success' })).to.equal(1);
    expect(sample(text, 'inference_model_version_info', { version: serving, state: 'serving' })).to.equal(1);
    // One assignment per scored instance, across its label values; none for the failed call.
    expect(total(text, 'inference_ab_assignments_total', { arm: 'stable', group: 'baseline' })).to.equal(5);
    expect(text).to.match(/^process_resident_memory_bytes \d+/m);
    expect(text).to.match(/^nodejs_eventloop_lag_seconds /m);
  });

  it('resolves sub-millisecond latencies: each bucket holds exactly the calls whose logged latency fits it', async () => {
    const serving = t.app.repository.resolve('conversion', '').version;
    const ok = { method: 'Predict', model: 'conversion', version: serving, code: 'OK' };
    const latencies = () =>
      t.logs.lines.filter((l) => l.msg === 'Predict' && l.code === 'OK').map((l) => l.latencyMs as number);
    // The demo model answers well under 1 ms server-side; bounded: at most 200 calls to see one.
    for (let i = 0; i < 200 && !latencies().some((ms) => ms < 1); i++) {
      await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
    }
    expect(latencies().filter((ms) => ms < 1).length, 'calls served in under 1 ms').to.be.greaterThan(0);
    const text = await scrape(t.ports.metrics);
    expect(sample(text, 'inference_request_duration_seconds_count', ok)).to.equal(latencies().length);
    for (const le of ['0.00005', '0.0001', '0.00025', '0.0005', '0.00075', '0.001']) {
      const bound = Number(le) * 1000;
      // The log rounds to the microsecond: allow a call within 2 µs of the bound on either side.
      const surely = latencies().filter((ms) => ms < bound - 0.002).length;
      const maybe = latencies().filter((ms) => ms <= bound + 0.002).length;
      expect(
        sample(text, 'inference_request_duration_seconds_bucket', { ...ok, le }),
        `le=${le}`,
      ).to.be.within(surely, maybe);
    }
  });

  it('answers 404 elsewhere', async () => {
    const res = await fetch(`http://127.0.0.1:${t.ports.metrics}/`);
    expect(res.status).to.equal(404);
  });
});

describe('health and shutdown', function () {
  this.timeout(30_000);
  afterEach(killSpawned);

  it('goes SERVING after load, then NOT_SERVING on stop while still answering during the drain, then refuses', async () => {
    const t = await startApp({ DRAIN_MS: '1500' });
    const health = new HealthClient(`127.0.0.1:${t.ports.grpc}`, credentials.createInsecure());
    try {
      const seen: HealthCheckResponse_ServingStatus[] = [];
      const stream = watchHealth(health, 'inference.v1.InferenceService', (s) => seen.push(s));
      await waitFor('SERVING from Watch', () => seen.includes(HealthCheckResponse_ServingStatus.SERVING));

      const stopping = t.app.stop();
      await waitFor(
        'NOT_SERVING from Watch',
        () => seen.at(-1) === HealthCheckResponse_ServingStatus.NOT_SERVING,
      );
      // During the drain period the server still answers: the balancer may not have noticed yet.
      const during = await predict(t.client, { instances: [{ ...SAMPLE_RECORD }] });
      expect(during.predictions).to.have.length(1);
      await stopping;
      stream.cancel();
      // After shutdown new calls fail with UNAVAILABLE.
      const err = await expectGrpcError(
        predict(t.client, { instances: [{ ...SAMPLE_RECORD }] }, undefined, 2000),
      );
      expect(err.code).to.equal(status.UNAVAILABLE);
      expect(seen).to.deep.equal([
        HealthCheckResponse_ServingStatus.SERVING,
        HealthCheckResponse_ServingStatus.NOT_SERVING,
      ]);
      const order = t.logs.lines.map((l) => l.msg).filter((m) => String(m).startsWith('shutdown:'));
      expect(order).to.deep.equal([
        'shutdown: health NOT_SERVING, draining',
        'shutdown: closing the gRPC server',
        'shutdown: complete',
      ]);
    } finally {
      health.close();
      t.client.close();
    }
  });

  it('a real process exits 0 on SIGTERM after draining, and reports NOT_SERVING first', async () => {
    const s = await spawn({ DRAIN_MS: '300' });
    const health = new HealthClient(`127.0.0.1:${s.grpcPort}`, credentials.createInsecure());
    try {
      const seen: HealthCheckResponse_ServingStatus[] = [];
      const stream = watchHealth(health, '', (st) => seen.push(st));
      await waitFor('SERVING', () => seen.includes(HealthCheckResponse_ServingStatus.SERVING));
      const code = await s.stop();
      stream.cancel();
      expect(code).to.equal(0);
      expect(seen).to.include(HealthCheckResponse_ServingStatus.NOT_SERVING);
      expect(s.lines.map((l) => l.msg)).to.include('shutdown: complete');
    } finally {
      health.close();
    }
  });

  it('a bad config value stops start-up with one sentence naming the variable (exit 2)', async () => {
    const err = await spawnServer({ GRPC_PORT: 'seventy' }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message)
      .to.contain('exited with 2')
      .and.contain('GRPC_PORT must be an integer from 0 to 65535');
  });

  it('health Check answers for "" and the service name', async () => {
    const t = await startApp();
    const health = new HealthClient(`127.0.0.1:${t.ports.grpc}`, credentials.createInsecure());
    try {
      for (const service of ['', 'inference.v1.InferenceService']) {
        const res = await new Promise<{ status: HealthCheckResponse_ServingStatus }>((resolve, reject) =>
          health.check({ service }, (err: ServiceError | null, r) => (err ? reject(err) : resolve(r))),
        );
        expect(res.status).to.equal(HealthCheckResponse_ServingStatus.SERVING);
      }
    } finally {
      health.close();
      await t.stop();
    }
  });
});

describe('log files', function () {
  this.timeout(30_000);
  afterEach(killSpawned);

  it('creates a LOG_DIR that does not exist yet', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'logs-'));
    const dir = join(parent, 'nested', 'stable');
    try {
      const s = await spawn({ LOG_DIR: dir });
      expect(await s.stop()).to.equal(0);
      expect(readdirSync(dir).some((f) => /^server\..*\.log$/.test(f))).to.equal(true);
    } finally {
      removeDir(parent);
    }
  });

  it('rotates with pino-roll into dated files and archives files older than the retention', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'logs-'));
    try {
      // A 300 ms rotation period stands in for a day.
      const s = await spawn({ LOG_DIR: dir, LOG_ROTATE: '300', LOG_STDOUT: 'true' });
      const client = (await import('../../server/generated/inference/v1/inference.js'))
        .InferenceServiceClient;
      const c = new client(`127.0.0.1:${s.grpcPort}`, credentials.createInsecure());
      // In the order pino-roll numbers them (server.<date>.<n>.log; by name, .10 sorts before .2).
      const dated = () =>
        readdirSync(dir)
          .filter((n) => /^server\.\d{4}-\d{2}-\d{2}\.\d+\.log$/.test(n))
          .sort((a, b) => Number(a.split('.').at(-2)) - Number(b.split('.').at(-2)));
      // A slow start-up (a loaded machine) already rotates a few times: count from the
      // first call, so the calls span three rotations. Bounded: at most 200 calls.
      const atFirstCall = dated().length;
      let calls = 0;
      for (; calls < 200 && (calls === 0 || dated().length < atFirstCall + 3); calls++) {
        await predict(c, { requestId: `rot-${calls}`, instances: [{ ...SAMPLE_RECORD }] });
        await new Promise((r) => setTimeout(r, 25));
      }
      c.close();
      expect(dated().length, `dated files after ${calls} calls`).to.be.at.least(atFirstCall + 3);
      // pino-roll re-points the link at each rotation, so it may dangle for a moment: await it.
      await waitFor('current.log to link a dated log file', () => {
        try {
          return dated().includes(basename(realpathSync(join(dir, 'current.log'))));
        } catch {
          return false;
        }
      });
      expect(await s.stop()).to.equal(0);
      const texts = dated().map((f) => readFileSync(join(dir, f), 'utf8'));
      expect(texts.join('')).to.contain('"requestId":"rot-0"').and.contain('"level":"info"');
      // Every call logged once, across the rotated files; the calls span more than one file.
      const logged = texts.flatMap((t) => t.match(/"requestId":"rot-\d+"/g) ?? []);
      expect(new Set(logged).size).to.equal(calls);
      expect(logged.length).to.equal(calls);
      expect(texts.filter((t) => t.includes('"requestId":"rot-')).length).to.be.at.least(2);

      // Age two files past the 3-day retention; a restarted server archives them on start.
      const files = dated();
      const old = (Date.now() - 4 * 86_400_000) / 1000;
      for (const f of files.slice(0, 2)) utimesSync(join(dir, f), old, old);
      const again = await spawn({ LOG_DIR: dir, LOG_ROTATE: 'daily' });
      const archive = join(dir, 'archive');
      await waitFor('two archived files', () => existsSync(archive) && readdirSync(archive).length === 2);
      expect(readdirSync(archive).sort()).to.deep.equal(files.slice(0, 2).map((f) => `${f}.gz`));
      expect(await again.stop()).to.equal(0);
    } finally {
      removeDir(dir);
    }
  });
});
