/** Seldon MLServer 1.7.1 with scripts/bench/mlserver_app.py's custom runtime (ONNX Runtime). */
import { type PeerSpec, peerApp, portFlags } from './peer.js';

export const MLSERVER: PeerSpec = {
  key: 'mlserver',
  label: 'Seldon MLServer 1.7.1 (custom runtime, onnxruntime)',
  venv: 'mlserver',
  pb2Module: 'mlserver.grpc.dataplane_pb2',
  // MLServer's own examples and its codecs' gRPC requests use typed contents.
  wire: { encoding: 'typed', shape: [1] },
  settings:
    'MLServer defaults (parallel_workers 1: one inference worker process; no adaptive batching; metrics on)',
  args: (versionDir, p) => [peerApp('mlserver_app.py'), versionDir, ...portFlags(p)],
  startTimeoutMs: 90_000,
};
