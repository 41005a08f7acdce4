"""Training one `conversion` model version end to end: data, features, fit,
ONNX export and parity, threshold, metrics, golden vectors, QA cases, report,
and the atomic write of the version directory. The command is
scripts/pipeline/train.py; the Flask baseline (scripts/bench/flask_app.py)
rebuilds estimators with the same argument parser.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from pipeline import PIPELINE_VERSION
from pipeline import data as D
from pipeline import features as F
from pipeline import metrics as M
from pipeline import models as MD
from pipeline import publish as P
from pipeline import spec

REPO = Path(__file__).resolve().parents[3]
PARITY_TOL = 1e-5


def log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


TRAIN_USAGE = """Train, validate, export and publish a `conversion` model version.

    .venv/bin/python scripts/pipeline/train.py --family lr            # older demo version
    .venv/bin/python scripts/pipeline/train.py --family lr --drift    # newer, drifted data

Writes <out>/<name>/<version>/{model.onnx,model.json,golden.json,qa.json,
report.md,*.png}, by default under staging/ (no server reads it; publish with
`npm run publish-model -- staging/conversion/<version> --to models`); <version> is the UTC time at which training ended. The
version directory appears atomically (temp dir + rename). Progress goes to
stderr; the published directory is printed on stdout.
"""


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=TRAIN_USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--family", choices=MD.FAMILIES, default="lr")
    ap.add_argument("--name", default="conversion", help="model name (directory under --out)")
    ap.add_argument("--out", default=str(REPO / "staging"),
                    help="where the version is written (default staging/: not a repository any server reads; "
                         "`npm run publish-model -- <version dir> --to models` is the one way into a repository)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rows", type=int, default=30000, help="synthetic rows to generate")
    ap.add_argument("--drift", action="store_true", help="use the drifted data-generating process")
    ap.add_argument("--reference-time", default=D.DEFAULT_REFERENCE_TIME,
                    help="`now` of the dataset (age transforms at training; golden referenceTime)")
    ap.add_argument("--data-dir", default=str(REPO / ".cache" / "data"))
    ap.add_argument("--data", help="train on this existing CSV instead of generating one")
    ap.add_argument("--small", action="store_true", help="smaller estimators (tests)")
    ap.add_argument("--large", action="store_true",
                    help="serving-heavy gbdt/mlp variants (500 deep trees; 512-256-128 MLP) for benchmarks")
    ap.add_argument("--no-report", action="store_true", help="skip report.md and plots")
    ap.add_argument("--no-speed", action="store_true", help="skip latency / INT8 measurements")
    ap.add_argument("--speed-runs", type=int, default=300, help="timed runs per latency measurement")
    ap.add_argument("--rebuild", metavar="VERSION_DIR",
                    help="retrain deterministically with the given flags, check that model.onnx and the data "
                         "hash are byte-identical to this existing version, and (re)write its report, plots "
                         "and manifest `speed` section in place (version, golden and qa are kept)")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> Path:
    t0 = time.time()
    fields = spec.fields()
    F.validate_fields(fields)
    names = F.feature_names(fields)
    ref_ms = F.parse_iso_date_ms(args.reference_time)

    # 1. data -------------------------------------------------------------------
    if args.data:
        data_path = Path(args.data)
        log(f"using existing data {data_path}")
    else:
        tag = f"{args.name}-seed{args.seed}-n{args.rows}{'-drift' if args.drift else ''}"
        data_path = Path(args.data_dir) / f"{tag}.csv"
        log(f"generating {args.rows} rows (seed={args.seed}, drift={args.drift}) -> {data_path}")
        D.write_csv(D.generate(args.rows, args.seed, args.drift, args.reference_time), data_path)
    data_hash = D.file_hash(data_path)
    rows = D.read_csv(data_path)
    y = np.array([r["label"] for r in rows], dtype=int)
    records = [{k: v for k, v in r.items() if k != "label"} for r in rows]
    log(f"data {data_hash[:19]}... rows={len(rows)} positives={y.mean():.3%}")

    # 2. features -----------------------------------------------------------------
    X = F.transform_records(fields, records, ref_ms)
    tr, va, te = D.split_indices(len(rows), args.seed)
    log(f"features F={X.shape[1]} train={len(tr)} val={len(va)} test={len(te)}")

    # 3. train + export -------------------------------------------------------------
    est = MD.make_estimator(args.family, args.seed, small=args.small, large=args.large)
    log(f"fitting {args.family}: {est}")
    MD.fit(est, X[tr], y[tr])
    onx = MD.to_onnx(est, X.shape[1], name=args.name)
    model_bytes = onx.SerializeToString()
    sess = MD.session(model_bytes)
    gap = MD.parity(est, sess, X[te])
    log(f"ONNX vs sklearn max |dp| on test = {gap:.2e}")
    if gap > PARITY_TOL:
        raise SystemExit(f"ONNX parity check failed: {gap} > {PARITY_TOL}")

    # 4. threshold on validation, metrics on test ------------------------------------
    s_val = MD.onnx_scores(sess, X[va])
    threshold, f1_val = M.choose_threshold(y[va], s_val)
    s_test = MD.onnx_scores(sess, X[te])
    metrics = M.compute_metrics(y[te], s_test, threshold)
    log(f"threshold={threshold} (max F1 on validation = {f1_val:.4f}); test metrics {metrics}")

    # training ends here: the version is this instant
    model_dir = Path(args.out) / args.name
    if args.rebuild:
        old = json.loads((Path(args.rebuild) / "model.json").read_text())
        if old["sha256"] != P.sha256_hex(model_bytes) or old["dataHash"] != data_hash:
            raise SystemExit(f"--rebuild: retrained model/data differ from {args.rebuild}; check the flags")
        version, trained_at = old["version"], old["trainedAt"]
        if (old["threshold"], old["metrics"]) != (threshold, metrics):
            raise SystemExit("--rebuild: threshold/metrics differ from the existing manifest")
    else:
        version, trained_at = P.training_end_version(model_dir)
    log(f"version {version} (train time {time.time() - t0:.1f}s)")

    def score_fn(Xb):
        return MD.onnx_scores(sess, Xb)

    extra = {}
    speed = None
    if not args.no_speed:
        from pipeline import speed as SP
        log("measuring latency (fp32 / optimised / int8)...")
        speed = SP.measure(model_bytes, X[te], y[te], threshold, runs=args.speed_runs, log=log)
        extra["speed"] = speed["manifest"]

    man = P.manifest(name=args.name, version=version, trained_at=trained_at, family=args.family,
                     model_bytes=model_bytes, data_hash=data_hash, threshold=threshold,
                     fields=fields, feature_names=names, metrics=metrics, extra=extra)
    test_recs = [rows[i] for i in te]
    gold = P.golden(fields, P.golden_records(test_recs, ref_ms), ref_ms, score_fn, threshold)
    now_ms = F.parse_iso_date_ms(trained_at)
    qa = P.qa(args.name, version, fields, test_recs[:400], now_ms, score_fn, threshold)

    files = {
        "model.onnx": model_bytes,
        "model.json": P.dump_json(man),
        "golden.json": P.dump_json(gold),
        "qa.json": P.dump_json(qa),
    }

    def write_report(tmp: Path) -> None:
        if args.no_report:
            return
        from pipeline import report as R
        log("writing report + plots...")
        R.write(tmp, manifest=man, args=vars(args), data_path=str(data_path), y=y, X=X, records=records,
                split=(tr, va, te), s_val=s_val, s_test=s_test, feature_names=names,
                f1_val=f1_val, parity_gap=gap, speed=speed, pipeline_version=PIPELINE_VERSION)

    if args.rebuild:
        final = Path(args.rebuild)
        P.update_in_place(final, {"model.json": files["model.json"]}, extra_writer=write_report)
        log(f"rebuilt report/speed of {final} in {time.time() - t0:.1f}s")
        return final
    final = P.publish(model_dir, version, files, extra_writer=write_report)
    log(f"wrote {final} in {time.time() - t0:.1f}s; publish it with: npm run publish-model -- {final} --to <repository>")
    return final
