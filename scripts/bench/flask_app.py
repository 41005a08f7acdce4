#!/usr/bin/env python3
"""The seed's way of serving, for `npm run bench`: Flask, its built-in threaded
server, the sklearn model in Python, JSON in and out.

    .venv/bin/python scripts/bench/flask_app.py models/conversion/<version> [--port 0]

It serves `POST /v1/test/` with the raw record as the JSON body, exactly like
the engineering notes' self-test ("服务在线指标": `requests.post(url, json=data)`),
and answers `{"model", "version", "score", "label"}`.

Same weights as the ONNX server, proved at start-up (it refuses to start
otherwise, exit 3):
  1. the sklearn estimator is rebuilt the way `train.py --rebuild` does: the
     training command recorded in the version's report.md is parsed with
     train.py's own argument parser, the synthetic data regenerated (its hash
     must equal the manifest's `dataHash`), the features built with
     scripts/pipeline/features.py and the estimator fitted with
     `make_estimator` on the same deterministic split;
  2. its ONNX export must be byte-identical to the served model.onnx (the
     manifest's sha256), as `--rebuild` checks;
  3. its `predict_proba` on every golden.json record (preprocessed at the
     golden reference time) must equal the golden score within 1e-5.

Serving is the notes' way: Werkzeug's development server (what `app.run`
starts), threaded, HTTP/1.1 keep-alive. Each prediction is logged at INFO with
its inputs and outputs through a daily `TimedRotatingFileHandler`, as the notes
describe for production; Werkzeug's own per-request access line is turned
down to WARNING so that each request is logged once, as the gRPC server does.

When ready it prints one JSON line on stdout: {"event": "listening", "port": N}.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shlex
import sys
import tempfile
import time
from logging.handlers import TimedRotatingFileHandler
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lib"))

from pipeline import training as train  # noqa: E402  (train.py's argument parser is the source of the flags)
from pipeline import data as D  # noqa: E402
from pipeline import features as F  # noqa: E402
from pipeline import models as MD  # noqa: E402
from pipeline import publish as P  # noqa: E402

GOLDEN_TOL = 1e-5
EXIT_NOT_SAME = 3
_REPRODUCE_RE = re.compile(r"^\.venv/bin/python scripts/train\.py (.+)$", re.MULTILINE)


class NotTheSameModel(Exception):
    """The rebuilt estimator is not the served model; the baseline must not start."""


def log(msg: str) -> None:
    print(f"[flask-baseline {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def training_args(version_dir: Path, override: str | None) -> argparse.Namespace:
    """The flags the version was trained with: `override`, or the command its report records."""
    if override is None:
        report = (version_dir / "report.md").read_text(encoding="utf-8")
        m = _REPRODUCE_RE.search(report)
        if not m:
            raise NotTheSameModel(f"{version_dir}/report.md has no 'Reproduce' training command; pass --train-args")
        override = m.group(1)
    args = train.parse_args(shlex.split(override))
    if args.data:
        raise NotTheSameModel("the version was trained on a given --data file; rebuilding needs the generator")
    return args


def rebuild(version_dir: Path, train_args: str | None = None):
    """The fitted sklearn estimator of `version_dir` and its manifest, verified (see the module doc)."""
    manifest = json.loads((version_dir / "model.json").read_text(encoding="utf-8"))
    args = training_args(version_dir, train_args)
    if args.family != manifest["family"]:
        raise NotTheSameModel(f"report says family {args.family}, manifest says {manifest['family']}")
    t0 = time.time()
    rows = D.generate(args.rows, args.seed, args.drift, args.reference_time)
    data = D.to_csv_bytes(rows)
    data_hash = "sha256:" + P.sha256_hex(data)
    if data_hash != manifest["dataHash"]:
        raise NotTheSameModel(f"regenerated data {data_hash[:23]}... differs from the manifest's dataHash")
    # Read back through the CSV exactly as train.py does (types come from the CSV reader).
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.csv"
        path.write_bytes(data)
        rows = D.read_csv(path)
    y = np.array([r["label"] for r in rows], dtype=int)
    records = [{k: v for k, v in r.items() if k != "label"} for r in rows]
    fields = manifest["fields"]
    X = F.transform_records(fields, records, F.parse_iso_date_ms(args.reference_time))
    tr, _, _ = D.split_indices(len(rows), args.seed)
    est = MD.make_estimator(args.family, args.seed, small=args.small, large=args.large)
    MD.fit(est, X[tr], y[tr])
    onnx_sha = P.sha256_hex(MD.to_onnx(est, X.shape[1], name=manifest["name"]).SerializeToString())
    if onnx_sha != manifest["sha256"]:
        raise NotTheSameModel(f"the rebuilt estimator exports to sha256 {onnx_sha[:16]}..., "
                              f"not the served model's {manifest['sha256'][:16]}...")
    gap = golden_gap(est, fields, json.loads((version_dir / "golden.json").read_text(encoding="utf-8")))
    if not gap <= GOLDEN_TOL:
        raise NotTheSameModel(f"predict_proba differs from golden.json by {gap:.3g} (limit {GOLDEN_TOL})")
    log(f"rebuilt {manifest['name']}/{manifest['version']} ({args.family}) in {time.time() - t0:.1f} s: "
        f"data hash and ONNX sha256 match, golden max |dp| = {gap:.2e}")
    return est, manifest


def golden_gap(est, fields, golden) -> float:
    """max |predict_proba - golden score| over the golden records, at the golden reference time."""
    ref_ms = F.parse_iso_date_ms(golden["referenceTime"])
    cases = golden["cases"]
    if not cases:
        return float("inf")
    X = np.vstack([F.transform_record(fields, c["record"], ref_ms) for c in cases])
    scores = est.predict_proba(X)[:, MD.POSITIVE_INDEX]
    return float(np.max(np.abs(scores.astype(np.float64) - np.array([c["score"] for c in cases]))))


def prediction_logger(log_file: str | None) -> logging.Logger:
    """The notes' logger: daily rotation, UTC, '%(asctime)s - %(levelname)s - %(message)s'."""
    logger = logging.getLogger("flask-baseline.predictions")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if log_file:
        handler = TimedRotatingFileHandler(filename=log_file, when="D", interval=1, backupCount=15,
                                           encoding="UTF-8", delay=False, utc=True)
        handler.suffix = "%Y-%m-%d"
        handler.setFormatter(logging.Formatter("%(asctime)s - %(levelname)s - %(message)s"))
        logger.addHandler(handler)
    else:
        logger.disabled = True
    return logger


def create_app(est, manifest, logger: logging.Logger, clock=lambda: int(time.time() * 1000)):
    from flask import Flask, jsonify, request

    app = Flask("flask-baseline")
    fields = manifest["fields"]
    threshold = float(manifest["threshold"])
    name, version = manifest["name"], manifest["version"]

    @app.post("/v1/test/")
    def predict():
        record = request.get_json(force=True, silent=True)
        if not isinstance(record, dict):
            return jsonify(error="the body must be a JSON object (one record)"), 400
        try:
            row = F.transform_record(fields, record, clock())
        except (F.FeatureError, TypeError, ValueError) as e:
            return jsonify(error=str(e)), 400
        score = float(est.predict_proba(row.reshape(1, -1))[0, MD.POSITIVE_INDEX])
        label = int(score >= threshold)
        logger.info(json.dumps({"model": name, "version": version, "inputs": record,
                                "outputs": {"score": score, "label": label}}))
        return jsonify(model=name, version=version, score=score, label=label)

    return app


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("version_dir", help="a model version directory (model.json, golden.json, report.md)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0: any free port (printed when listening)")
    ap.add_argument("--log-file", default=None, help="prediction log (daily rotation); default: none")
    ap.add_argument("--train-args", default=None, help="training flags, instead of report.md's command")
    a = ap.parse_args(argv)
    try:
        est, manifest = rebuild(Path(a.version_dir), a.train_args)
    except NotTheSameModel as e:
        log(f"refusing to start: {e}")
        return EXIT_NOT_SAME
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(est, manifest, prediction_logger(a.log_file))
    # make_server is what app.run() uses underneath; it lets port 0 report the bound port.
    server = make_server(a.host, a.port, app, threaded=True)
    print(json.dumps({"event": "listening", "port": server.server_port}), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
