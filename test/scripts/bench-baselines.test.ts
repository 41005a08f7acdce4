import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { expect } from 'chai';
import { FLOOR_RESPONSE } from '../../scripts/bench/floor-server.js';
import { FLASK_APP, FLASK_EXIT_NOT_SAME, startFlask, startFloor } from '../../scripts/lib/bench/baselines.js';
import { Processes } from '../../scripts/lib/bench/processes.js';
import { VENV_PYTHON } from '../../scripts/lib/paths.js';
import {
  InferenceServiceClient,
  type PredictRequest,
  type PredictResponse,
} from '../../server/generated/inference/v1/inference.js';
import { runCli } from '../helpers/cli.js';
import { demoVersions } from '../helpers/envoy.js';
import { DEMO_MODELS, removeDir, SAMPLE_RECORD, startApp, type TestApp } from '../helpers/server.js';

function predict(client: InferenceServiceClient, req: PredictRequest): Promise<PredictResponse> {
  return new Promise((resolve, reject) =>
    client.predict(req, (err: ServiceError | null, res) => (err ? reject(err) : resolve(res))),
  );
}

/**
 * The baselines `npm run bench` compares against, each started the way the
 * bench starts them, on loopback, for one request each. No timing is judged.
 */
describe('bench baselines (Flask + sklearn, grpc-js floor)', function () {
  // The Flask baseline regenerates 30 000 rows and refits the LR before it listens.
  this.timeout(180_000);
  const procs = new Processes();
  let workDir: string;
  let app: TestApp | undefined;
  let flaskPort: number;
  const { newer } = demoVersions();

  before(async () => {
    workDir = mkdtempSync(join(tmpdir(), 'bench-baselines-'));
    // allSettled, not all: a server that started while Flask failed must still reach after().
    const [flask, started] = await Promise.allSettled([
      startFlask(procs, {
        workDir,
        versionDir: join(DEMO_MODELS, 'conversion', newer),
        logPredictions: false,
      }),
      startApp({ MODEL_VERSION_POLICY: `conversion=${newer}` }),
    ]);
    if (started.status === 'fulfilled') app = started.value;
    if (flask.status === 'rejected') throw flask.reason;
    if (started.status === 'rejected') throw started.reason;
    flaskPort = flask.value.port;
  });
  after(async () => {
    await procs.stopAll();
    await app?.stop();
    removeDir(workDir);
  });

  it('Flask answers the seed sample with the score the server gives, from the same weights', async () => {
    const res = await fetch(`http://127.0.0.1:${flaskPort}/v1/test/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(SAMPLE_RECORD),
      signal: AbortSignal.timeout(10_000),
    });
    expect(res.status).to.equal(200);
    const body = (await res.json()) as { model: string; version: string; score: number; label: number };
    const grpc = await predict((app as TestApp).client, {
      model: 'conversion',
      version: '',
      requestId: 'bench-baseline',
      instances: [SAMPLE_RECORD],
    });
    expect(body.model).to.equal('conversion');
    expect(body.version).to.equal(newer);
    expect(grpc.version).to.equal(newer);
    // float64 sklearn vs float32 ONNX Runtime: the golden tolerance.
    expect(body.score).to.be.closeTo(grpc.predictions[0]?.score ?? Number.NaN, 1e-5);
    expect(body.label).to.equal(grpc.predictions[0]?.label);
  });

  it('Flask answers a bad record with 400, naming the field', async () => {
    const res = await fetch(`http://127.0.0.1:${flaskPort}/v1/test/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...SAMPLE_RECORD, birthday: 5 }),
      signal: AbortSignal.timeout(10_000),
    });
    expect(res.status).to.equal(400);
    expect(((await res.json()) as { error: string }).error).to.match(/birthday/);
  });

  it('Flask refuses to start when the rebuilt estimator is not the served model', async () => {
    // The older version's training flags (no --drift) against the newer version's files.
    // Bounded below this suite's timeout: the child is killed if it neither refuses nor exits.
    const { code, stdout, stderr } = await runCli(
      VENV_PYTHON,
      [
        FLASK_APP,
        join(DEMO_MODELS, 'conversion', newer),
        '--train-args',
        '--family lr --seed 7 --rows 30000',
      ],
      { name: 'Flask baseline', timeoutMs: 150_000 },
    );
    expect(code).to.equal(FLASK_EXIT_NOT_SAME);
    expect(stderr).to.match(/refusing to start: regenerated data .* differs from the manifest's dataHash/);
    expect(stdout).to.equal('');
  });

  it('the floor server decodes Predict with the generated stubs and answers the constant response', async () => {
    const floor = await startFloor(procs, workDir);
    const client = new InferenceServiceClient(`127.0.0.1:${floor.port}`, credentials.createInsecure());
    try {
      const res = await predict(client, {
        model: 'conversion',
        version: '',
        requestId: 'x',
        instances: [SAMPLE_RECORD],
      });
      expect(res).to.deep.equal(FLOOR_RESPONSE);
    } finally {
      client.close();
    }
  });
});
