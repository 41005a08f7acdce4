"""Estimators per family, ONNX export and ONNX-vs-sklearn parity check."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

FAMILIES = ("lr", "gbdt", "mlp")
INPUT_NAME = "float_input"
OUTPUT_NAME = "probabilities"
POSITIVE_INDEX = 1
# Conservative opsets: loadable by onnxruntime-node 1.30 and older runtimes.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}


def make_estimator(family: str, seed: int = 0, small: bool = False, large: bool = False):
    """The estimator of a family. `small` is for tests; `large` builds serving-
    heavy variants (many deep trees, a wide MLP) for latency and event-loop
    benchmarks, not for accuracy."""
    if large and family == "gbdt":
        return HistGradientBoostingClassifier(
            max_iter=500, learning_rate=0.05, max_leaf_nodes=64, max_depth=None,
            min_samples_leaf=20, l2_regularization=1.0, early_stopping=False,
            random_state=seed)
    if large and family == "mlp":
        return Pipeline([
            ("scaler", StandardScaler()),
            ("clf", MLPClassifier(
                hidden_layer_sizes=(512, 256, 128), alpha=1.0, batch_size=256,
                learning_rate_init=1e-3, max_iter=5, random_state=seed)),
        ])
    if family == "lr":
        return Pipeline([
            ("scaler", StandardScaler()),
            ("clf", LogisticRegression(C=1.0, max_iter=1000)),
        ])
    if family == "gbdt":
        return HistGradientBoostingClassifier(
            max_iter=20 if small else 100, learning_rate=0.05, max_leaf_nodes=8,
            min_samples_leaf=100, l2_regularization=1.0, early_stopping=False,
            random_state=seed)
    if family == "mlp":
        # No early stopping: sklearn's uses validation *accuracy*, which is flat
        # at the 90% majority baseline on this imbalanced data. Strong L2
        # (alpha=1) generalised best in a small sweep (val AUC 0.769).
        return Pipeline([
            ("scaler", StandardScaler()),
            ("clf", MLPClassifier(
                hidden_layer_sizes=(8,) if small else (16,), alpha=1.0, batch_size=256,
                learning_rate_init=1e-3, max_iter=5 if small else 40, random_state=seed)),
        ])
    raise ValueError(f"unknown family {family!r} (expected one of {FAMILIES})")


def fit(estimator, X: np.ndarray, y: np.ndarray):
    """fit, silencing sklearn's ConvergenceWarning (max_iter is a deliberate budget)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def _round_thresholds_down(model: onnx.ModelProto, estimator) -> None:
    """Make float32 tree splits agree with sklearn's float64 ones.

    sklearn's histogram GBDT sends ``x <= t`` left with ``t`` a float64
    midpoint between two data values; skl2onnx stores ``t`` as the *nearest*
    float32, which can be the upper data value itself, so samples equal to it
    go left in ONNX Runtime and right in sklearn (seen as |dp| ~ 2e-3 on small
    data). The largest float32 not above ``t`` keeps every float32 input on the
    same side as in sklearn.
    """
    predictors = estimator._predictors  # [iteration][class] -> TreePredictor
    for node in model.graph.node:
        if node.op_type != "TreeEnsembleClassifier":
            continue
        attrs = {a.name: a for a in node.attribute}
        modes = list(attrs["nodes_modes"].strings)
        trees = list(attrs["nodes_treeids"].ints)
        ids = list(attrs["nodes_nodeids"].ints)
        values = attrs["nodes_values"]
        fixed = list(values.floats)
        for k, mode in enumerate(modes):
            if mode != b"BRANCH_LEQ":
                continue
            t64 = float(predictors[trees[k]][0].nodes[ids[k]]["num_threshold"])
            f32 = np.float32(t64)
            if float(f32) > t64:
                f32 = np.nextafter(f32, np.float32(-np.inf))
            # The mapping (tree, node) -> sklearn node must be the one skl2onnx used.
            if abs(float(f32) - fixed[k]) > 1e-6 * max(1.0, abs(t64)):
                raise RuntimeError(f"tree {trees[k]} node {ids[k]}: ONNX threshold {fixed[k]} is not sklearn's {t64}")
            fixed[k] = float(f32)
        del values.floats[:]
        values.floats.extend(fixed)


def to_onnx(estimator, n_features: int, name: str = "conversion") -> onnx.ModelProto:
    """Export with tensor outputs only; the probability output is renamed
    to ``probabilities`` and the int64 label output is dropped."""
    import warnings

    with warnings.catch_warnings():
        # skl2onnx passes HistGradientBoosting's numpy uint8 flags as attribute
        # ints; protobuf 6 only warns (7.x rejects them, hence the pin).
        warnings.filterwarnings("ignore", message=".*Expected an int, got a boolean.*",
                                category=DeprecationWarning)
        model = convert_sklearn(
            estimator,
            initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
            options={id(estimator): {"zipmap": False}},
            target_opset=TARGET_OPSET,
            name=name,
        )
    if isinstance(estimator, HistGradientBoostingClassifier):
        _round_thresholds_down(model, estimator)
    graph = model.graph
    outs = {o.name: o for o in graph.output}
    prob = outs.get(OUTPUT_NAME)
    if prob is None:  # defensive: find the float [N,2] output
        prob = next(o for o in graph.output
                    if o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT)
        old = prob.name
        for node in graph.node:
            node.output[:] = [OUTPUT_NAME if x == old else x for x in node.output]
        prob.name = OUTPUT_NAME
    keep = [o for o in graph.output if o.name == OUTPUT_NAME]
    del graph.output[:]
    graph.output.extend(keep)
    # skl2onnx may list the same domain twice in opset_import; dedupe (keep max)
    ops: dict[str, int] = {}
    for o in model.opset_import:
        ops[o.domain] = max(ops.get(o.domain, 0), o.version)
    del model.opset_import[:]
    for d, v in ops.items():
        model.opset_import.append(onnx.helper.make_opsetid(d, v))
    model.producer_name = "conversion-pipeline"
    onnx.checker.check_model(model)
    return model


def session(model_bytes: bytes, optimize: bool = True, threads: int = 1,
            optimized_path: str | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimize
                                   else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    so.log_severity_level = 3
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


def onnx_scores(sess: ort.InferenceSession, X: np.ndarray) -> np.ndarray:
    """Positive-class probability (float32) from the ``probabilities`` output."""
    (probs,) = sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(X, np.float32)})
    return probs[:, POSITIVE_INDEX]


def parity(estimator, sess: ort.InferenceSession, X: np.ndarray) -> float:
    """max |ONNX - sklearn| over the positive-class probabilities."""
    ref = estimator.predict_proba(X.astype(np.float32))[:, POSITIVE_INDEX]
    return float(np.max(np.abs(onnx_scores(sess, X).astype(np.float64) - ref))) if len(X) else 0.0
