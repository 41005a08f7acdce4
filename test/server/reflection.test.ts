import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { expect } from 'chai';
import { ROOT, SAMPLE_RECORD, startApp, type TestApp, waitFor } from '../helpers/server.js';

const run = promisify(execFile);
const GHZ = join(ROOT, '.tools', 'bin', 'ghz');

interface GhzReport {
  count: number;
  statusCodeDistribution: Record<string, number>;
  errorDistribution?: Record<string, number>;
}

/**
 * Calls a method through server reflection only (no .proto files), with ghz,
 * whose Go reflection client resolves every descriptor strictly, as grpcurl
 * does: a missing well-known type or a misnamed map entry fails here.
 */
async function ghzByReflection(port: number, call: string, data: unknown, n = 5): Promise<GhzReport> {
  const { stdout } = await run(
    GHZ,
    [
      '--insecure',
      '--call',
      call,
      '-d',
      JSON.stringify(data),
      '-n',
      String(n),
      '-c',
      '1',
      '-O',
      'json',
      `127.0.0.1:${port}`,
    ],
    { timeout: 20_000 },
  );
  return JSON.parse(stdout) as GhzReport;
}

describe('server reflection (for grpcurl and ghz)', function () {
  this.timeout(30_000);
  let t: TestApp;
  before(async () => {
    t = await startApp();
  });
  after(async () => t.stop());

  it('lets a reflection-only client call Predict with the seed sample', async () => {
    const report = await ghzByReflection(t.ports.grpc, 'inference.v1.InferenceService.Predict', {
      model: 'conversion',
      requestId: 'via-reflection',
      instances: [SAMPLE_RECORD],
    });
    expect(report.errorDistribution ?? {}).to.deep.equal({});
    expect(report.statusCodeDistribution).to.deep.equal({ OK: 5 });
    await waitFor('the reflected calls in the log', () =>
      t.logs.lines.some((l) => l.requestId === 'via-reflection' && l.code === 'OK'),
    );
  });

  it('resolves grpc.health.v1 (including its map-typed List response) by reflection', async () => {
    const report = await ghzByReflection(t.ports.grpc, 'grpc.health.v1.Health.Check', { service: '' });
    expect(report.statusCodeDistribution).to.deep.equal({ OK: 5 });
  });
});
