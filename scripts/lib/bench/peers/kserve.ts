/** The KServe 0.21 Python model server, with scripts/bench/kserve_app.py's `kserve.Model` (ONNX Runtime). */
import { type PeerSpec, peerApp } from './peer.js';

export const KSERVE: PeerSpec = {
  key: 'kserve',
  label: 'KServe 0.21 Python model server (onnxruntime)',
  venv: 'kserve',
  pb2Module: 'kserve.protocol.grpc.grpc_predict_v2_pb2',
  // The KServe SDK's InferInput fills typed contents for gRPC.
  wire: { encoding: 'typed', shape: [1] },
  settings: 'ModelServer defaults (1 worker, gRPC with 4 threads, access and latency logging on)',
  args: (versionDir, p) => [
    peerApp('kserve_app.py'),
    versionDir,
    '--http_port',
    String(p.http),
    '--grpc_port',
    String(p.grpc),
  ],
  startTimeoutMs: 60_000,
};
