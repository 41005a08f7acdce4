/**
 * The floor of this stack, for `npm run bench`: a bare grpc-js server that
 * registers `inference.v1.InferenceService` with the generated stubs, so every
 * call is decoded into a `PredictRequest` and every answer encoded from a
 * `PredictResponse` by the same ts-proto code the real server uses, and
 * answers Predict with one constant response. No preprocessing, model,
 * logging, metrics, in-flight limit or A/B: what is left is the cost of
 * grpc-js and protobuf, the most any server on this stack can do.
 *
 *     node dist/scripts/bench/floor-server.js [--port 0]
 *
 * Prints `{"event":"listening","port":N}` on stdout once bound (127.0.0.1);
 * exits 0 on SIGTERM or SIGINT.
 */
import { parseArgs } from 'node:util';
import { Server, ServerCredentials, status } from '@grpc/grpc-js';
import {
  type InferenceServiceServer,
  InferenceServiceService,
  type PredictResponse,
} from '../../server/generated/inference/v1/inference.js';
import { runIfMain } from '../lib/cli.js';

/** What every Predict returns: the shape and size of a real one-record answer. */
export const FLOOR_RESPONSE: PredictResponse = Object.freeze({
  model: 'conversion',
  version: '20261124T041754Z',
  requestId: 'floor',
  arm: 'stable',
  predictions: [{ score: 0.0074, label: 0, group: 'baseline', action: 0 }],
});

/** Starts the floor server on `host:port` (0: any free port) and resolves with it and its bound port. */
async function startFloorServer(host = '127.0.0.1', port = 0): Promise<{ server: Server; port: number }> {
  const server = new Server({
    // The real server's limits (MAX_MESSAGE_BYTES' default), so both accept the same requests.
    'grpc.max_receive_message_length': 4 * 1024 * 1024,
    'grpc.max_send_message_length': 4 * 1024 * 1024,
  });
  const unimplemented = (_call: unknown, callback: (err: { code: number; details: string }) => void) =>
    callback({ code: status.UNIMPLEMENTED, details: 'the floor server only answers Predict' });
  const impl: InferenceServiceServer = {
    // grpc-js has decoded the request (PredictRequest.decode) before this runs.
    predict: (_call, callback) => callback(null, FLOOR_RESPONSE),
    listModels: unimplemented,
    getModelMetadata: unimplemented,
    recordOutcomes: unimplemented,
  };
  server.addService(InferenceServiceService, impl);
  const bound = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${port}`, ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    ),
  );
  return { server, port: bound };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { port: { type: 'string', default: '0' } }, strict: true });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`floor-server: --port must be 0-65535, got "${values.port}"\n`);
    process.exit(2);
  }
  const { server, port: bound } = await startFloorServer('127.0.0.1', port);
  process.stdout.write(`${JSON.stringify({ event: 'listening', port: bound })}\n`);
  const stop = () => {
    // Connections a load generator keeps open must not hold the exit up for long.
    setTimeout(() => server.forceShutdown(), 1000).unref();
    server.tryShutdown(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

runIfMain(import.meta.url, 'floor-server', async () => {
  await main();
  return 0;
});
