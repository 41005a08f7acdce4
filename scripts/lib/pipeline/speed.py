"""Speed tuning measurements in ONNX Runtime (Python).

* FP32 with all graph optimisations (ORT_ENABLE_ALL, what the server uses)
  vs. optimisations disabled; the optimised graph is also saved via
  SessionOptions.optimized_model_filepath to report its size/node count.
* A dynamically quantised INT8 variant (onnxruntime.quantization.quantize_dynamic):
  number of quantised nodes, accuracy change and latency change.
* Latency at batch 1 and 32: median and p99 over a bounded number of runs,
  single intra-op thread (one request per core, as in the server).

The served file stays model.onnx (FP32); `recommendation` says which variant
we would serve and why.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import onnxruntime as ort

from .metrics import compute_metrics
from .models import INPUT_NAME, OUTPUT_NAME, POSITIVE_INDEX, session

BATCHES = (1, 32)


def latencies(sessions: dict[str, ort.InferenceSession], X: np.ndarray, batch: int, runs: int,
              warmup: int = 50) -> dict[str, dict]:
    """Latency of sess.run per variant. Runs are interleaved round-robin across
    the variants so that CPU frequency/noise from the shared machine affects
    them alike (measuring one variant after the other biased the first one)."""
    xb = np.ascontiguousarray(np.resize(X, (batch, X.shape[1])), dtype=np.float32)
    feed = {INPUT_NAME: xb}
    names = list(sessions)
    for _ in range(warmup):
        for n in names:
            sessions[n].run([OUTPUT_NAME], feed)
    t = {n: np.empty(runs) for n in names}
    for i in range(runs):
        for n in names:
            t0 = time.perf_counter_ns()
            sessions[n].run([OUTPUT_NAME], feed)
            t[n][i] = time.perf_counter_ns() - t0
    out = {}
    for n in names:
        ms = t[n] / 1e6
        out[n] = {"p50Ms": round(float(np.median(ms)), 4), "p99Ms": round(float(np.percentile(ms, 99)), 4),
                  "meanMs": round(float(ms.mean()), 4), "runs": runs}
    return out


def _scores(sess, X):
    return sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(X, np.float32)})[0][:, POSITIVE_INDEX]


def measure(model_bytes: bytes, X: np.ndarray, y: np.ndarray, threshold: float, runs: int = 300,
            log: Callable[[str], None] = lambda m: None) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out: dict = {}
    with tempfile.TemporaryDirectory() as td:
        td = Path(td)
        fp32_path, opt_path, int8_path = td / "model.onnx", td / "model.opt.onnx", td / "model.int8.onnx"
        fp32_path.write_bytes(model_bytes)

        sess_opt = session(model_bytes, optimize=True, optimized_path=str(opt_path))
        sess_raw = session(model_bytes, optimize=False)
        opt_model = onnx.load(str(opt_path))
        out["graph"] = {
            "nodes": len(onnx.load_from_string(model_bytes).graph.node),
            "nodesOptimized": len(opt_model.graph.node),
            "sizeBytes": len(model_bytes),
            "sizeBytesOptimized": opt_path.stat().st_size,
        }

        quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8)
        q_model = onnx.load(str(int8_path))
        n_quant = sum(1 for n in q_model.graph.node
                      if n.op_type in ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger",
                                       "DynamicQuantizeMatMul", "QLinearMatMul"))
        sess_q = session(int8_path.read_bytes(), optimize=True)
        sessions = {"fp32": sess_opt, "fp32NoOpt": sess_raw, "int8": sess_q}
        lat = {}
        for b in BATCHES:
            log(f"  latency batch {b}: fp32 / fp32 without graph optimisation / int8, {runs} runs each")
            lat[b] = latencies(sessions, X, b, runs)
        for n in ("fp32", "fp32NoOpt"):
            out[n] = {f"batch{b}": lat[b][n] for b in BATCHES}
        s32 = _scores(sess_opt, X).astype(np.float64)
        s8 = _scores(sess_q, X).astype(np.float64)
        m32 = compute_metrics(y, s32, threshold)
        m8 = compute_metrics(y, s8, threshold)
        out["int8"] = {
            **{f"batch{b}": lat[b]["int8"] for b in BATCHES},
            "quantizedNodes": n_quant,
            "sizeBytes": int8_path.stat().st_size,
            "maxAbsScoreDiff": round(float(np.max(np.abs(s8 - s32))), 6),
            "labelAgreement": round(float(np.mean((s8 >= threshold) == (s32 >= threshold))), 6),
            "aucDelta": round(m8["auc"] - m32["auc"], 6),
            "accuracyDelta": round(m8["accuracy"] - m32["accuracy"], 6),
            "metrics": m8,
        }
    out["fp32Metrics"] = m32

    gain = 1 - out["int8"]["batch1"]["p50Ms"] / out["fp32"]["batch1"]["p50Ms"]
    gain32 = 1 - out["int8"]["batch32"]["p50Ms"] / out["fp32"]["batch32"]["p50Ms"]
    q = out["int8"]
    if q["quantizedNodes"] == 0:
        served, why = "fp32", ("quantize_dynamic found nothing to quantise (no MatMul/Gemm weights; "
                               "the graph is ai.onnx.ml operators), so INT8 is the same model")
    elif gain >= 0.2 and abs(q["aucDelta"]) < 0.002 and q["labelAgreement"] >= 0.995:
        served, why = "int8", (f"INT8 is {gain:.0%} faster at batch 1 with AUC change {q['aucDelta']:+.4f} "
                               f"and {q['labelAgreement']:.2%} label agreement")
    else:
        def rel(g):
            return f"{abs(g):.0%} {'faster' if g >= 0 else 'slower'}"
        served, why = "fp32", (f"INT8 is {rel(gain)} at batch 1 and {rel(gain32)} at batch 32 (p50) with AUC "
                               f"change {q['aucDelta']:+.4f} and {q['labelAgreement']:.2%} label agreement: "
                               "not worth the accuracy risk (needs >=20% gain, |dAUC|<0.002, >=99.5% agreement)")
    out["recommendation"] = {"serve": served, "reason": why, "int8GainBatch1": round(gain, 4),
                             "int8GainBatch32": round(gain32, 4)}
    out["manifest"] = {
        "python": {
            "onnxruntime": ort.__version__, "intraOpThreads": 1, "graphOptimization": "ORT_ENABLE_ALL",
            "batch1": {k: out["fp32"]["batch1"][k] for k in ("p50Ms", "p99Ms")},
            "batch32": {k: out["fp32"]["batch32"][k] for k in ("p50Ms", "p99Ms")},
            "runs": runs,
        },
        "noOptimization": {f"batch{b}": {k: out["fp32NoOpt"][f"batch{b}"][k] for k in ("p50Ms", "p99Ms")}
                           for b in BATCHES},
        "int8": {f"batch{b}": {k: q[f"batch{b}"][k] for k in ("p50Ms", "p99Ms")} for b in BATCHES}
        | {"quantizedNodes": q["quantizedNodes"], "aucDelta": q["aucDelta"],
           "labelAgreement": q["labelAgreement"], "maxAbsScoreDiff": q["maxAbsScoreDiff"]},
        "served": served,
    }
    return out
