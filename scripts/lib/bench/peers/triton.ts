/**
 * Triton Inference Server through PyTriton 0.7.0 (it bundles the Triton 2.51
 * server binary, which runs on CPU here despite its NVML/DCGM warnings), with
 * the Python backend calling scripts/bench/triton_app.py's function, which runs
 * the model in ONNX Runtime.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type PeerSpec, peerApp, portFlags } from './peer.js';

export const TRITON: PeerSpec = {
  key: 'triton',
  label: 'Triton 2.51 (PyTriton 0.7.0, python backend, onnxruntime)',
  venv: 'pytriton',
  pb2Module: 'tritonclient.grpc.service_pb2',
  // tritonclient sends raw_input_contents; PyTriton's default model config has a batch dimension.
  wire: { encoding: 'raw', shape: [1, 1] },
  settings:
    "PyTriton's ModelConfig() defaults (batching on, max batch size 4, dynamic batcher without queue delay), Triton's default threads",
  args: (versionDir, p) => [peerApp('triton_app.py'), versionDir, ...portFlags(p)],
  // The backend stub links Debian's libpython 3.11.2, which fails on the venv's
  // (pyenv 3.11.7) standard library ("'_thread.RLock' object has no attribute
  // '_recursion_count'") unless the venv's own libpython is found first.
  env: (venv): Record<string, string> =>
    venv.baseLibDir && existsSync(join(venv.baseLibDir, 'libpython3.11.so.1.0'))
      ? { LD_LIBRARY_PATH: venv.baseLibDir }
      : {},
  startTimeoutMs: 120_000,
};
