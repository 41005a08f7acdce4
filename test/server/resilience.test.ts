import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { expect } from 'chai';
import { Registry } from 'prom-client';
import { createApp } from '../../server/app.js';
import { loadConfig } from '../../server/config.js';
import { WorkerPoolRunner } from '../../server/inference-runner.js';
import { createStreamLogger } from '../../server/logger.js';
import { DEMO_MODELS, LogSink, NEWER, waitFor } from '../helpers/server.js';

function listen(port = 0): Promise<Server> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(port, '127.0.0.1', () => resolve(s));
  });
}

function close(s: Server): Promise<void> {
  return new Promise((resolve) => s.close(() => resolve()));
}

describe('resilience', function () {
  this.timeout(30_000);

  it('a dead inference worker fails its calls instead of hanging them, and is replaced', async () => {
    const dir = join(DEMO_MODELS, 'conversion', NEWER);
    const manifest = JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')) as {
      onnx: { input: string; output: string; positiveIndex: number };
      featureNames: string[];
    };
    const io = { ...manifest.onnx, width: manifest.featureNames.length };
    const pool = await WorkerPoolRunner.create(readFileSync(join(dir, 'model.onnx')), io, 1, 1);
    try {
      const rows = () => new Float32Array(io.width);
      expect((await pool.run(rows(), 1)).length).to.equal(1);
      const workers = () =>
        (pool as unknown as { workers: { worker: { terminate(): Promise<number> } }[] }).workers;
      const first = workers()[0];
      if (!first) throw new Error('the pool has no worker');
      // Posted after terminate() began: the dying worker runs no more JavaScript, so
      // the call can only settle through the pool noticing the exit; a pool that did
      // not fail pending calls would leave it hanging.
      const dying = first.worker.terminate();
      const inFlight = pool.run(rows(), 1).then(
        () => 'resolved',
        (e: Error) => e.message,
      );
      await dying;
      const pending = new Promise<string>((r) =>
        setTimeout(() => r('still pending after 5 s'), 5000).unref(),
      );
      expect(await Promise.race([inFlight, pending])).to.match(/^inference worker exited with \d+$/);
      await waitFor('a replacement worker', () => pool.size === 1 && workers()[0] !== first);
      expect((await pool.run(rows(), 1)).length).to.equal(1);
    } finally {
      await pool.release();
    }
  });

  it('a failed start (gRPC port taken) leaves nothing listening', async () => {
    const grpcBlocker = await listen();
    const probe = await listen();
    const metricsPort = (probe.address() as { port: number }).port;
    await close(probe);
    const config = loadConfig({
      GRPC_PORT: String((grpcBlocker.address() as { port: number }).port),
      METRICS_PORT: String(metricsPort),
      MODEL_ROOT: DEMO_MODELS,
      LOG_DIR: '',
    });
    const app = createApp(config, {
      logger: createStreamLogger(config.log, new LogSink()),
      registry: new Registry(),
    });
    try {
      let failed = false;
      await app.start().catch(() => {
        failed = true;
      });
      expect(failed).to.equal(true);
      // The metrics port was released: it can be bound again.
      await close(await listen(metricsPort));
    } finally {
      await close(grpcBlocker);
    }
  });

  it('stop() during start() ends with nothing left running', async () => {
    const config = loadConfig({
      GRPC_PORT: '0',
      METRICS_PORT: '0',
      MODEL_ROOT: DEMO_MODELS,
      LOG_DIR: '',
      DRAIN_MS: '0',
    });
    const logs = new LogSink();
    const app = createApp(config, { logger: createStreamLogger(config.log, logs), registry: new Registry() });
    const starting = app.start();
    const stopping = app.stop();
    await Promise.allSettled([starting, stopping]);
    expect(logs.withMsg('shutdown: complete')).to.have.length(1);
    // Nothing was switched on after the shutdown: no "server started" after "shutdown: complete".
    const msgs = logs.lines.map((l) => l.msg);
    const started = msgs.indexOf('server started');
    expect(started === -1 || started < msgs.indexOf('shutdown: complete'), msgs.join(' | ')).to.equal(true);
    expect(app.health.status).to.equal('NOT_SERVING');
  });
});
