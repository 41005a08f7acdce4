"""The model every peer of `npm run bench -- --peers` serves, and the tensors it takes.

    from bench.peer_model import ConversionModel   # with scripts/lib on sys.path
    model = ConversionModel("models/conversion/<version>")
    scores, labels = model.score(model.records({"birthday": [b"1995-04-29"], ...}))

The peers (Triton via PyTriton, the KServe Python model server, Seldon
MLServer) serve the same contract as this project's ModelInfer
(server/open-inference-tensors.ts): one input tensor per raw record field of
the manifest (INT64 or FP64 for numbers, BYTES for strings, shape [N]), and
the outputs `score` (FP32, the positive class's probability) and `label`
(INT64, score >= the manifest's threshold). Each preprocesses the raw record
with the pipeline's own preprocessing (scripts/lib/pipeline/features.py, the
contract the golden vectors are built with) at the current time, as this
server does, and runs the version's model.onnx with ONNX Runtime's default
session options. The weights are the served file itself: its sha256 must
equal the manifest's, or loading fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from pipeline import features as F


class ConversionModel:
    """One version directory's model.onnx, its manifest's fields and threshold."""

    def __init__(self, version_dir: str | Path):
        import onnxruntime as ort

        d = Path(version_dir)
        manifest = json.loads((d / "model.json").read_text(encoding="utf-8"))
        onnx = (d / "model.onnx").read_bytes()
        digest = hashlib.sha256(onnx).hexdigest()
        if digest != manifest["sha256"]:
            raise ValueError(f"{d}/model.onnx has sha256 {digest[:16]}..., the manifest says {manifest['sha256'][:16]}...")
        self.name: str = manifest["name"]
        self.version: str = manifest["version"]
        self.fields: list[Mapping[str, Any]] = manifest["fields"]
        self.threshold = float(manifest["threshold"])
        self._input = manifest["onnx"]["input"]
        self._output = manifest["onnx"]["output"]
        self._positive = int(manifest["onnx"]["positiveIndex"])
        self._session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])

    @property
    def field_names(self) -> list[str]:
        return [f["name"] for f in self.fields]

    def records(self, columns: Mapping[str, Iterable[Any]]) -> list[dict[str, Any]]:
        """Records from one column per field (numpy arrays or lists); BYTES elements become str."""
        cols = {k: [_scalar(x) for x in np.asarray(v, dtype=object).reshape(-1)] for k, v in columns.items()}
        n = {len(v) for v in cols.values()}
        if len(n) != 1:
            raise ValueError(f"every input needs the same number of elements, got {sorted(n)}")
        size = n.pop()
        return [{k: v[i] for k, v in cols.items()} for i in range(size)]

    def score(self, records: Sequence[Mapping[str, Any]], now_ms: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores FP32 [N], labels INT64 [N]) of raw records, preprocessed at `now_ms` (default: now)."""
        now = int(time.time() * 1000) if now_ms is None else now_ms
        x = np.vstack([F.transform_record(self.fields, r, now) for r in records]).astype(np.float32)
        probs = self._session.run([self._output], {self._input: x})[0]
        scores = np.asarray(probs[:, self._positive], dtype=np.float32)
        return scores, (scores >= self.threshold).astype(np.int64)


def _scalar(x: Any) -> Any:
    """A tensor element as the JSON value the preprocessing takes."""
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode("utf-8")
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    return x



def peer_arguments(doc: str) -> argparse.ArgumentParser:
    """The command line of a peer app that takes a version directory and its three ports (gRPC, REST, metrics)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("version_dir", help="a model version directory (model.json, model.onnx)")
    ap.add_argument("--grpc-port", type=int, required=True)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--metrics-port", type=int, required=True)
    return ap
