#!/usr/bin/env python3
"""The KServe Python model server as a peer for `npm run bench -- --peers`.

    .venv-peers/kserve/bin/python scripts/bench/kserve_app.py models/conversion/<version> \
        --http_port N --grpc_port M [any other kserve ModelServer flag]

A `kserve.Model` whose `predict` takes the Open Inference Protocol request
KServe decodes (`InferRequest`, one tensor per raw record field), scores it
with scripts/lib/bench/peer_model.py (the version's model.onnx in ONNX Runtime,
the pipeline's preprocessing) and answers `score` (FP32) and `label` (INT64),
as this project's ModelInfer does. Everything else is KServe's default: its
ModelServer with one worker, its gRPC server (v2 `inference.GRPCInferenceService`)
and its REST server, its access and latency logging. The bench binds both
ports on free ports and waits on the gRPC ModelReady.

Loopback only: KServe 0.21 hard-codes its listen addresses (gRPC `[::]`,
uvicorn `0.0.0.0`); `loopback_only()` rewrites both to 127.0.0.1 and changes
nothing else.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer  # noqa: E402
from kserve import model_server  # noqa: E402

from bench.peer_model import ConversionModel  # noqa: E402


def loopback_only() -> None:
    """Binds KServe's gRPC and REST servers to 127.0.0.1 instead of every interface."""
    import uvicorn
    from grpc.aio import _server

    add = _server.Server.add_insecure_port

    def add_loopback(self, address: str) -> int:
        return add(self, address.replace("[::]:", "127.0.0.1:", 1))

    _server.Server.add_insecure_port = add_loopback

    class LoopbackConfig(uvicorn.Config):
        def __init__(self, *args, **kwargs):
            kwargs["host"] = "127.0.0.1"
            super().__init__(*args, **kwargs)

    uvicorn.Config = LoopbackConfig


class ConversionKServeModel(Model):
    def __init__(self, model: ConversionModel):
        super().__init__(model.name)
        self.model = model
        self.ready = True

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        records = self.model.records({i.name: i.as_numpy() for i in payload.inputs})
        scores, labels = self.model.score(records)
        n = len(records)
        outputs = [
            InferOutput(name="score", shape=[n], datatype="FP32", data=scores.tolist()),
            InferOutput(name="label", shape=[n], datatype="INT64", data=labels.tolist()),
        ]
        return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=outputs)


def main() -> None:
    ap = argparse.ArgumentParser(parents=[model_server.parser], description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("version_dir", help="a model version directory (model.json, model.onnx)")
    a = ap.parse_args()
    loopback_only()
    model = ConversionKServeModel(ConversionModel(a.version_dir))
    ModelServer(http_port=a.http_port, grpc_port=a.grpc_port).start([model])


if __name__ == "__main__":
    main()
