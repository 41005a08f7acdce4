#!/usr/bin/env python3
"""Triton Inference Server, through PyTriton, as a peer for `npm run bench -- --peers`.

    LD_LIBRARY_PATH=<pyenv>/lib .venv-peers/pytriton/bin/python scripts/bench/triton_app.py \
        models/conversion/<version> --grpc-port N --http-port M --metrics-port K

PyTriton 0.7.0 starts the Triton server binary it bundles (2.51; CPU only
here, it warns about NVML/DCGM) with its Python backend, whose stub process
hands each batch to the function bound below in this process. The function
takes the Open Inference Protocol tensors (one per raw record field, with
Triton's batch dimension: shape [N, 1]), scores them with
scripts/lib/bench/peer_model.py (the version's model.onnx in ONNX Runtime, the
pipeline's preprocessing) and answers `score` (FP32) and `label` (INT64),
as this project's ModelInfer does.

Settings are PyTriton's defaults (`ModelConfig()`: batching on, max batch
size 4, its dynamic batcher with no queue delay; Triton's default thread
counts), except the ports and the addresses, which the bench sets to
127.0.0.1 (loopback only; Triton's default is 0.0.0.0).

The stub links Debian's libpython 3.11.2; with this machine's pyenv 3.11.7
standard library it fails (`'_thread.RLock' object has no attribute
'_recursion_count'`) unless LD_LIBRARY_PATH puts pyenv's lib first, which
the bench does (scripts/lib/bench/peers/triton.ts).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from pytriton.decorators import batch  # noqa: E402
from pytriton.model_config import ModelConfig, Tensor  # noqa: E402
from pytriton.triton import Triton, TritonConfig  # noqa: E402

from bench.peer_model import ConversionModel, peer_arguments  # noqa: E402


def dtype_of(field) -> type:
    # Triton checks each input's datatype: numbers arrive as INT64 (the bench's records hold integers).
    return np.int64 if field["type"] == "number" else np.bytes_


def main() -> None:
    a = peer_arguments(__doc__).parse_args()
    model = ConversionModel(a.version_dir)

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        scores, labels = model.score(model.records(inputs))
        return {"score": scores.reshape(-1, 1), "label": labels.reshape(-1, 1)}

    config = TritonConfig(grpc_address="127.0.0.1", grpc_port=a.grpc_port, http_address="127.0.0.1",
                          http_port=a.http_port, metrics_address="127.0.0.1", metrics_port=a.metrics_port)
    with Triton(config=config) as triton:
        triton.bind(
            model_name=model.name,
            infer_func=infer,
            inputs=[Tensor(name=f["name"], dtype=dtype_of(f), shape=(1,)) for f in model.fields],
            outputs=[Tensor(name="score", dtype=np.float32, shape=(1,)),
                     Tensor(name="label", dtype=np.int64, shape=(1,))],
            config=ModelConfig(),
        )
        triton.serve()


if __name__ == "__main__":
    main()
