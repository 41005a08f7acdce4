import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'chai';
import { WorkerPoolRunner } from '../../server/inference-runner.js';
import { DEMO_MODELS, NEWER, predict, startApp, type TestApp } from '../helpers/server.js';

const golden = JSON.parse(readFileSync(join(DEMO_MODELS, 'conversion', NEWER, 'golden.json'), 'utf8')) as {
  referenceTime: string;
  cases: { id: string; record: Record<string, unknown>; score: number }[];
};
const now = Date.parse(golden.referenceTime);

/** Sends every golden case as its own concurrent request and checks each score. */
async function concurrentGolden(t: TestApp): Promise<void> {
  const results = await Promise.all(golden.cases.map((c) => predict(t.client, { instances: [c.record] })));
  results.forEach((r, i) => {
    const c = golden.cases[i];
    expect(Math.abs((r.predictions[0]?.score ?? 2) - (c?.score ?? -1)), `case ${c?.id}`).to.be.at.most(1e-5);
  });
}

async function histogram(t: TestApp, name: string): Promise<{ count: number; sum: number }> {
  const m = await t.registry.getSingleMetric(name)?.get();
  const values = m?.values ?? [];
  const count = values.find((v) => (v as { metricName?: string }).metricName === `${name}_count`)?.value ?? 0;
  const sum = values.find((v) => (v as { metricName?: string }).metricName === `${name}_sum`)?.value ?? 0;
  return { count, sum };
}

/**
 * The runners the serving version scores through, outermost first (reached
 * through private fields: the modes differ in nothing a client can see but
 * where and how ONNX Runtime runs).
 */
function runners(t: TestApp): { name: string; size?: number }[] {
  const out: { name: string; size?: number }[] = [];
  let r = (t.app.repository.resolve('conversion', '') as unknown as { runner?: unknown }).runner as
    | { inner?: unknown; size?: number; constructor: { name: string } }
    | undefined;
  while (r) {
    out.push(
      r instanceof WorkerPoolRunner
        ? { name: r.constructor.name, size: r.size }
        : { name: r.constructor.name },
    );
    r = r.inner as typeof r;
  }
  return out;
}

describe('execution modes', function () {
  this.timeout(30_000);
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.stop();
    t = undefined;
  });

  it('worker threads (INFERENCE_WORKERS=2) give the same scores as inline, under concurrency', async () => {
    t = await startApp({ INFERENCE_WORKERS: '2', MODEL_BATCHING: 'off' }, () => now);
    expect(runners(t)).to.deep.equal([{ name: 'MeteredRunner' }, { name: 'WorkerPoolRunner', size: 2 }]);
    await concurrentGolden(t);
    const batch = await predict(t.client, { instances: golden.cases.map((c) => c.record) });
    batch.predictions.forEach((p, i) => {
      expect(Math.abs(p.score - (golden.cases[i]?.score ?? -1))).to.be.at.most(1e-5);
    });
  });

  it('dynamic batching merges concurrent requests into fewer ONNX Runtime runs, each caller getting its own scores', async () => {
    t = await startApp({ MODEL_BATCHING: 'conversion=64/20ms' }, () => now);
    expect(runners(t).map((r) => r.name)).to.deep.equal(['DynamicBatcher', 'MeteredRunner', 'InlineRunner']);
    const before = await histogram(t, 'inference_batch_instances');
    await concurrentGolden(t);
    const after = await histogram(t, 'inference_batch_instances');
    const runs = after.count - before.count;
    const rows = after.sum - before.sum;
    expect(rows).to.equal(golden.cases.length);
    expect(runs).to.be.lessThan(golden.cases.length);
  });

  it('coalesces by default: concurrent requests share runs with no queue delay, each caller getting its own scores', async () => {
    t = await startApp({}, () => now);
    expect(runners(t).map((r) => r.name)).to.deep.equal(['DynamicBatcher', 'MeteredRunner', 'InlineRunner']);
    const batcher = (t.app.repository.resolve('conversion', '') as unknown as { runner: { config: unknown } })
      .runner;
    expect(batcher.config).to.deep.equal({ maxBatchSize: 64, maxQueueDelayMs: 0 });
    const before = await histogram(t, 'inference_batch_instances');
    await concurrentGolden(t);
    const after = await histogram(t, 'inference_batch_instances');
    expect(after.sum - before.sum).to.equal(golden.cases.length);
    expect(after.count - before.count).to.be.lessThan(golden.cases.length);
  });

  it('with MODEL_BATCHING=off, every request is its own run', async () => {
    t = await startApp({ MODEL_BATCHING: 'off' }, () => now);
    expect(runners(t).map((r) => r.name)).to.deep.equal(['MeteredRunner', 'InlineRunner']);
    const before = await histogram(t, 'inference_batch_instances');
    await concurrentGolden(t);
    const after = await histogram(t, 'inference_batch_instances');
    expect(after.count - before.count).to.equal(golden.cases.length);
  });
});
