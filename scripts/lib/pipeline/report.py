"""Validation report (report.md + PNG plots) for one published version."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix, roc_curve  # noqa: E402

from .metrics import f1_curve  # noqa: E402

GROUPS = ("TP", "FP", "FN", "TN")
NUMERIC = [("birthday_age_years", "age (years)"), ("createTime_age_days", "account age (days)"),
           ("screenSize_width", "screen width")]
CATEGORICAL = ["countryId", "platformType", "stoneVersion", "appId", "type", "languageId"]


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def calibration_bins(y: np.ndarray, s: np.ndarray, bins: int = 10):
    """Quantile bins: (mean score, positive rate, count) per bin and the ECE."""
    order = np.argsort(s, kind="stable")
    rows = []
    for chunk in np.array_split(order, bins):
        if len(chunk):
            rows.append((float(s[chunk].mean()), float(y[chunk].mean()), len(chunk)))
    ece = sum(n * abs(p - o) for p, o, n in rows) / max(len(s), 1)
    return rows, float(ece)


def _groups(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    return {"TP": (pred == 1) & (y == 1), "FP": (pred == 1) & (y == 0),
            "FN": (pred == 0) & (y == 1), "TN": (pred == 0) & (y == 0)}


def error_table(records, X, feature_names, fields, y, s, threshold):
    pred = (s >= threshold).astype(int)
    g = _groups(y, pred)
    defaults = {f["name"]: f.get("default") for f in fields}
    col = {n: i for i, n in enumerate(feature_names)}
    unknown_cols = [i for n, i in col.items() if n.endswith("=<unknown>")]
    table = {}
    for name in GROUPS:
        m = g[name]
        idx = np.flatnonzero(m)
        row = {"n": int(m.sum()), "meanScore": float(s[m].mean()) if m.any() else float("nan")}
        for feat, _ in NUMERIC:
            row[feat] = float(X[m, col[feat]].mean()) if m.any() else float("nan")
        row["anyUnknownCategory"] = float((X[np.ix_(m, unknown_cols)].sum(axis=1) > 0).mean()) if m.any() else float("nan")
        for c in CATEGORICAL:
            vals = Counter(str(records[i].get(c, defaults.get(c))) for i in idx)
            if vals:
                v, k = vals.most_common(1)[0]
                row[c] = (v, k / len(idx))
            else:
                row[c] = ("-", 0.0)
        table[name] = row
    return table, g


def _fmt(v, digits=3):
    if isinstance(v, float):
        return "nan" if np.isnan(v) else f"{v:.{digits}f}"
    return str(v)


def write(out: Path, *, manifest, args, data_path, y, X, records, split, s_val, s_test,
          feature_names, f1_val, parity_gap, speed, pipeline_version) -> None:
    out = Path(out)
    tr, va, te = split
    thr = float(manifest["threshold"])
    y_val, y_test = y[va], y[te]
    X_test = X[te]
    rec_test = [records[i] for i in te]
    met = manifest["metrics"]

    # --- plots ------------------------------------------------------------------
    fpr, tpr, _ = roc_curve(y_test, s_test)
    bins, ece = calibration_bins(y_test, s_test.astype(np.float64))
    fig, ax = plt.subplots(1, 3, figsize=(13, 4))
    ax[0].plot(fpr, tpr, label=f"AUC {met['auc']:.3f}")
    ax[0].plot([0, 1], [0, 1], "k--", lw=0.8)
    ax[0].set(title="ROC (test)", xlabel="false positive rate", ylabel="true positive rate")
    ax[0].legend(loc="lower right")
    ax[1].plot([b[0] for b in bins], [b[1] for b in bins], "o-", label=f"model (ECE {ece:.3f})")
    lim = max(max(b[0] for b in bins), max(b[1] for b in bins)) * 1.1
    ax[1].plot([0, lim], [0, lim], "k--", lw=0.8, label="perfect")
    ax[1].set(title="Calibration (test, 10 quantile bins)", xlabel="mean predicted probability",
              ylabel="observed positive rate")
    ax[1].legend()
    ax[2].hist([s_test[y_test == 0], s_test[y_test == 1]], bins=40, stacked=True, label=["y=0", "y=1"])
    ax[2].axvline(thr, color="r", ls="--", label=f"threshold {thr:.3f}")
    ax[2].set(title="Score distribution (test)", xlabel="score", ylabel="count")
    ax[2].legend()
    _save(fig, out / "roc_calibration.png")

    pred_test = (s_test >= thr).astype(int)
    cm = confusion_matrix(y_test, pred_test, labels=[0, 1])
    fig, axc = plt.subplots(figsize=(4, 3.6))
    axc.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        axc.text(j, i, str(v), ha="center", va="center", color="black" if v < cm.max() / 2 else "white")
    axc.set(xticks=[0, 1], yticks=[0, 1], xlabel="predicted", ylabel="actual",
            title=f"Confusion matrix @ {thr:.3f} (test)")
    _save(fig, out / "confusion_matrix.png")

    curve = f1_curve(y_val, s_val.astype(np.float64), np.linspace(0.01, 0.8, 80))
    fig, axt = plt.subplots(figsize=(6, 4))
    t_, p_, r_, f_ = zip(*curve)
    axt.plot(t_, p_, label="precision")
    axt.plot(t_, r_, label="recall")
    axt.plot(t_, f_, label="F1")
    axt.axvline(thr, color="k", ls="--", label=f"chosen {thr:.4f} (F1 {f1_val:.3f})")
    axt.set(title="Threshold selection (validation)", xlabel="threshold")
    axt.legend()
    _save(fig, out / "threshold.png")

    table, groups = error_table(rec_test, X_test, feature_names, manifest["fields"], y_test, s_test, thr)
    col = {n: i for i, n in enumerate(feature_names)}
    fig, axe = plt.subplots(1, 4, figsize=(15, 3.8))
    for k, (feat, label) in enumerate(NUMERIC[:2]):
        data = [X_test[groups[g], col[feat]] for g in GROUPS]
        axe[k].boxplot([d if len(d) else [np.nan] for d in data], tick_labels=GROUPS, showfliers=False)
        axe[k].set(title=label + " by outcome")
    for k, (feat, label) in enumerate([("platformType=1", "share iOS (platformType=1)"),
                                       ("stoneVersion=v3", "share stoneVersion=v3")], start=2):
        vals = [X_test[groups[g], col[feat]].mean() if groups[g].any() else 0 for g in GROUPS]
        axe[k].bar(GROUPS, vals, color=["tab:green", "tab:red", "tab:orange", "tab:blue"])
        axe[k].set(title=label)
    _save(fig, out / "error_analysis.png")

    # --- markdown ----------------------------------------------------------------
    L = []
    w = L.append
    w(f"# Validation report: {manifest['name']} {manifest['version']} ({manifest['family']})\n")
    w(f"Trained at {manifest['trainedAt']} by pipeline {pipeline_version}. "
      f"Served file: `model.onnx` (sha256 `{manifest['sha256'][:16]}...`).\n")
    w("## Data\n")
    w(f"- file: `{Path(data_path).name}` ({manifest['dataHash']})")
    w(f"- synthetic generator: seed {args['seed']}, {len(y)} rows, drift={args['drift']}, "
      f"reference time (`now` for ages) {args['reference_time']}")
    w(f"- positives: {y.mean():.2%}; split train/validation/test = {len(tr)}/{len(va)}/{len(te)} "
      f"(deterministic permutation of seed {args['seed']})")
    w(f"- features: {len(feature_names)} columns from {len(manifest['fields'])} raw fields "
      "(see `fields` in model.json)\n")
    w("## Model\n")
    w(f"- family `{manifest['family']}`; ONNX input `{manifest['onnx']['input']}` float32 "
      f"[N, {len(feature_names)}], output `{manifest['onnx']['output']}` float32 [N, 2]")
    w(f"- ONNX vs sklearn parity on the test split: max |Δp| = {parity_gap:.2e} (limit 1e-5)\n")
    w("## Metrics (test split, label = score >= threshold)\n")
    w("| AUC | log loss | accuracy | precision | recall | ECE (10 bins) |")
    w("| --- | --- | --- | --- | --- | --- |")
    w(f"| {met['auc']:.4f} | {met['logLoss']:.4f} | {met['accuracy']:.4f} | {met['precision']:.4f} "
      f"| {met['recall']:.4f} | {ece:.4f} |\n")
    w(f"Base rate {y_test.mean():.2%}: always predicting 0 would give accuracy {1 - y_test.mean():.4f}; "
      "accuracy is not the metric to optimise here.\n")
    w("![ROC, calibration, scores](roc_calibration.png)\n")
    w("## Threshold selection\n")
    w(f"The threshold maximises F1 on the validation split over all distinct validation scores "
      f"(rounded down to 6 decimals): **{thr}** (validation F1 {f1_val:.4f}). "
      "F1 is used because positives are rare (~10%) and both kinds of error matter; "
      "a business cost ratio, if known, should replace it.\n")
    w("![threshold](threshold.png)\n")
    w("| | predicted 0 | predicted 1 |\n| --- | --- | --- |")
    w(f"| actual 0 | {cm[0, 0]} (TN) | {cm[0, 1]} (FP) |\n| actual 1 | {cm[1, 0]} (FN) | {cm[1, 1]} (TP) |\n")
    w("![confusion matrix](confusion_matrix.png)\n")
    w("## Calibration\n")
    w("| bin | mean score | observed rate | n |\n| --- | --- | --- | --- |")
    for i, (p, o, n) in enumerate(bins):
        w(f"| {i + 1} | {p:.4f} | {o:.4f} | {n} |")
    w("")
    w("## Error analysis (test split)\n")
    w("Mispredicted (FP, FN) vs correctly predicted (TP, TN) samples. Numeric columns are means of the "
      "model inputs; categorical columns give the most common raw value (after defaults) and its share.\n")
    hdr = ["group", "n", "mean score"] + [lbl for _, lbl in NUMERIC] + ["any unknown cat."] + CATEGORICAL
    w("| " + " | ".join(hdr) + " |")
    w("| " + " | ".join("---" for _ in hdr) + " |")
    for gname in GROUPS:
        r = table[gname]
        cells = [gname, str(r["n"]), _fmt(r["meanScore"])] + [_fmt(r[f], 1) for f, _ in NUMERIC]
        cells.append(_fmt(r["anyUnknownCategory"]))
        cells += [f"{r[c][0]} ({r[c][1]:.0%})" for c in CATEGORICAL]
        w("| " + " | ".join(cells) + " |")
    w("")
    w("Observations (generated from the table):\n")
    for a, b, what in (("FN", "TP", "missed positives (FN) vs caught positives (TP)"),
                       ("FP", "TN", "false alarms (FP) vs true negatives (TN)")):
        ra, rb = table[a], table[b]
        if ra["n"] == 0 or rb["n"] == 0:
            continue
        parts = []
        for f, lbl in NUMERIC:
            if rb[f] and not np.isnan(ra[f]):
                rel = ra[f] / rb[f] - 1 if rb[f] else 0
                if abs(rel) >= 0.1:
                    parts.append(f"{lbl} {ra[f]:.1f} vs {rb[f]:.1f} ({rel:+.0%})")
        for c in CATEGORICAL:
            if ra[c][0] != rb[c][0]:
                parts.append(f"most common {c} {ra[c][0]} vs {rb[c][0]}")
        w(f"- {what}: " + ("; ".join(parts) if parts else "no large differences in the summarised features") + ".")
    fn, tp, tn, fp = table["FN"], table["TP"], table["TN"], table["FP"]
    if min(fn["n"], tp["n"], tn["n"], fp["n"]) > 0:
        fn_like_tn = sum(abs(fn[f] - tn[f]) < abs(fn[f] - tp[f]) for f, _ in NUMERIC)
        fp_like_tp = sum(abs(fp[f] - tp[f]) < abs(fp[f] - tn[f]) for f, _ in NUMERIC)
        w(f"\nOn the {len(NUMERIC)} numeric inputs, FN means are closer to TN than to TP for {fn_like_tn}, "
          f"and FP means closer to TP than to TN for {fp_like_tp}.")
        if fn_like_tn >= 2 and fp_like_tp >= 2:
            w("The errors look like the *other* class on the features the model relies on: a missed "
              "positive resembles a typical negative and a false alarm a typical positive. That points at "
              "label noise / missing signal rather than a systematic bias that a threshold or "
              "re-weighting would fix. Candidate actions: interaction features (e.g. platform x country), "
              "a non-linear family (gbdt), or more informative raw fields.\n")
        else:
            w("The errors do not simply mirror the other class on these features; inspect the per-category "
              "columns above for a segment the model handles badly (candidate for a new feature or "
              "interaction).\n")
    w("![error analysis](error_analysis.png)\n")
    if speed:
        w("## Speed (ONNX Runtime, Python)\n")
        g = speed["graph"]
        w(f"onnxruntime {speed['manifest']['python']['onnxruntime']}, CPU provider, 1 intra-op thread, "
          f"{speed['manifest']['python']['runs']} timed runs per cell after warm-up, variants interleaved "
          "round-robin; times are `session.run` only (no preprocessing). Shared 2-core machine: p99 is noisy.\n")
        w(f"Graph: {g['nodes']} nodes ({g['nodesOptimized']} after ORT_ENABLE_ALL, saved with "
          f"`optimized_model_filepath`), {g['sizeBytes']} bytes.\n")
        w("| variant | batch 1 p50 ms | batch 1 p99 ms | batch 32 p50 ms | batch 32 p99 ms |")
        w("| --- | --- | --- | --- | --- |")
        for key, label in (("fp32", "FP32, ORT_ENABLE_ALL (served)"), ("fp32NoOpt", "FP32, ORT_DISABLE_ALL"),
                           ("int8", "INT8 dynamic quantisation")):
            v = speed[key]
            w(f"| {label} | {v['batch1']['p50Ms']:.4f} | {v['batch1']['p99Ms']:.4f} | "
              f"{v['batch32']['p50Ms']:.4f} | {v['batch32']['p99Ms']:.4f} |")
        q = speed["int8"]
        w("")
        w(f"INT8 (`quantize_dynamic`, QInt8 weights): {q['quantizedNodes']} quantised nodes, "
          f"{q['sizeBytes']} bytes; AUC change {q['aucDelta']:+.6f}, accuracy change {q['accuracyDelta']:+.6f}, "
          f"max |Δscore| {q['maxAbsScoreDiff']:.6f}, label agreement {q['labelAgreement']:.2%}.\n")
        rec = speed["recommendation"]
        w(f"**Serve: {rec['serve'].upper()}.** {rec['reason']}. The served file stays `model.onnx`.\n")
    w("## Reproduce\n")
    flags = [f"--family {manifest['family']}", f"--seed {args['seed']}", f"--rows {args['rows']}"]
    if args["drift"]:
        flags.append("--drift")
    if args["reference_time"] != "2026-11-20T00:00:00.000Z":
        flags.append(f"--reference-time {args['reference_time']}")
    w("```sh\n.venv/bin/python scripts/pipeline/train.py " + " ".join(flags) + "\n```\n")
    w("Training is deterministic for a given seed (same data hash and, for lr, the same model sha256); "
      "the version name is the time training ended, so a rerun publishes a new version.\n")
    (out / "report.md").write_text("\n".join(L), encoding="utf-8")
    (out / "error_analysis.json").write_text(json.dumps(
        {g: {k: (list(v) if isinstance(v, tuple) else v) for k, v in r.items()} for g, r in table.items()},
        indent=2) + "\n", encoding="utf-8")
