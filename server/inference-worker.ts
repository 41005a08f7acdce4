/**
 * A worker thread of `WorkerPoolRunner`: owns one ONNX Runtime session and
 * answers score requests, so a long inference blocks this thread rather than
 * the server's event loop.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as ort from 'onnxruntime-node';
import {
  type GraphIO,
  positiveScores,
  sessionOptions,
  type WorkerReply,
  type WorkerRequest,
} from './inference-runner.js';

const { model, io, intraOpThreads } = workerData as {
  model: Uint8Array;
  io: GraphIO;
  intraOpThreads: number;
};
const port = parentPort;
if (!port) throw new Error('inference-worker must run as a worker thread');

function reply(msg: WorkerReply, transfer: ArrayBuffer[] = []): void {
  port?.postMessage(msg, transfer);
}

ort.InferenceSession.create(model, sessionOptions(intraOpThreads)).then(
  (session) => {
    port.on('message', async ({ id, rows, n }: WorkerRequest) => {
      try {
        const feeds = { [io.input]: new ort.Tensor('float32', rows, [n, io.width]) };
        const result = await session.run(feeds, [io.output]);
        const scores = positiveScores(result[io.output]?.data, n, io);
        reply({ id, scores }, [scores.buffer as ArrayBuffer]);
      } catch (err) {
        reply({ id, error: err instanceof Error ? err.message : String(err) });
      }
    });
    reply({ ready: true });
  },
  (err: unknown) => reply({ initError: err instanceof Error ? err.message : String(err) }),
);
