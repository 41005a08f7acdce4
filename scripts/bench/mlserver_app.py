#!/usr/bin/env python3
"""Seldon MLServer as a peer for `npm run bench -- --peers`.

    .venv-peers/mlserver/bin/python scripts/bench/mlserver_app.py models/conversion/<version> \
        --grpc-port N --http-port M --metrics-port K

This file is both the launcher and the custom runtime it names. The launcher
writes MLServer's settings.json and the model's model-settings.json into a
fresh temporary folder and replaces itself with MLServer's own command,
`mlserver start <folder>` (same pid, so the bench watches MLServer itself). The runtime,
`ConversionRuntime`, is an `mlserver.MLModel` that decodes the Open Inference
Protocol request with MLServer's NumpyCodec (one tensor per raw record
field), scores it with scripts/lib/bench/peer_model.py (the version's model.onnx
in ONNX Runtime, the pipeline's preprocessing) and answers `score` (FP32)
and `label` (INT64), as this project's ModelInfer does.

Settings are MLServer 1.7.1's defaults (parallel_workers 1, that is one
inference worker process beside the server; no adaptive batching; metrics on)
except the ports and `host`, which the bench sets to 127.0.0.1 (loopback only;
MLServer's default is 0.0.0.0).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lib"))

from mlserver import MLModel  # noqa: E402
from mlserver.codecs import NumpyCodec, StringCodec  # noqa: E402
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput  # noqa: E402

from bench.peer_model import ConversionModel, peer_arguments  # noqa: E402


class ConversionRuntime(MLModel):
    """The demo model behind MLServer's V2 dataplane."""

    async def load(self) -> bool:
        self.model = ConversionModel(self.settings.parameters.uri)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        records = self.model.records({i.name: _decode(i) for i in payload.inputs})
        scores, labels = self.model.score(records)
        n = len(records)
        return InferenceResponse(
            id=payload.id,
            model_name=self.name,
            outputs=[
                ResponseOutput(name="score", shape=[n], datatype="FP32", data=scores.tolist()),
                ResponseOutput(name="label", shape=[n], datatype="INT64", data=labels.tolist()),
            ],
        )


def _decode(tensor):
    # NumpyCodec reads a BYTES tensor of shape [1] as the bytes of its one string; StringCodec as the string.
    return StringCodec.decode_input(tensor) if tensor.datatype == "BYTES" else NumpyCodec.decode_input(tensor)


def main() -> None:
    a = peer_arguments(__doc__).parse_args()
    folder = Path(tempfile.mkdtemp(prefix="mlserver-peer-"))
    settings = {"host": "127.0.0.1", "grpc_port": a.grpc_port, "http_port": a.http_port,
                "metrics_port": a.metrics_port}
    (folder / "settings.json").write_text(json.dumps(settings), encoding="utf-8")
    model_settings = {"name": "conversion", "implementation": "mlserver_app.ConversionRuntime",
                      "parameters": {"uri": str(Path(a.version_dir).resolve())}}
    (folder / "model-settings.json").write_text(json.dumps(model_settings), encoding="utf-8")
    # The runtime is imported by name in the server and in its worker process.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    # `mlserver` (the console script) is this; through the venv's python so its shebang does not matter.
    os.execv(sys.executable, [sys.executable, "-c", "import sys; from mlserver.cli import main; sys.argv[0] = 'mlserver'; sys.exit(main())",
                              "start", str(folder)])


if __name__ == "__main__":
    main()
