"""Metrics and threshold selection."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (accuracy_score, log_loss, precision_recall_curve,
                             precision_score, recall_score, roc_auc_score)


def choose_threshold(y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """Threshold maximising F1 on (validation) data; label = score >= threshold.

    Candidates are the distinct validation scores; the chosen one is rounded
    down to 6 decimals (so every validation score >= the exact candidate still
    gets label 1). Returns (threshold, best F1)."""
    prec, rec, thr = precision_recall_curve(y, scores)
    prec, rec = prec[:-1], rec[:-1]
    f1 = np.where(prec + rec > 0, 2 * prec * rec / np.maximum(prec + rec, 1e-12), 0.0)
    i = int(np.argmax(f1))
    t = float(np.floor(float(thr[i]) * 1e6) / 1e6)
    return t, float(f1[i])


def compute_metrics(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    s = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    pred = (scores >= threshold).astype(int)
    return {
        "auc": round(float(roc_auc_score(y, s)), 6),
        "logLoss": round(float(log_loss(y, s, labels=[0, 1])), 6),
        "accuracy": round(float(accuracy_score(y, pred)), 6),
        "precision": round(float(precision_score(y, pred, zero_division=0)), 6),
        "recall": round(float(recall_score(y, pred, zero_division=0)), 6),
    }


def f1_curve(y: np.ndarray, scores: np.ndarray, grid: np.ndarray | None = None):
    grid = np.linspace(0.01, 0.99, 99) if grid is None else grid
    out = []
    for t in grid:
        pred = scores >= t
        tp = float(np.sum(pred & (y == 1)))
        p = tp / max(float(pred.sum()), 1.0)
        r = tp / max(float((y == 1).sum()), 1.0)
        f = 2 * p * r / (p + r) if p + r > 0 else 0.0
        out.append((float(t), p, r, f))
    return out
