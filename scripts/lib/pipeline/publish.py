"""Model-repository artefacts: version naming, manifest, golden vectors, QA
cases, and the atomic publish (temp dir in the same parent, then rename)."""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import PIPELINE_VERSION
from .data import SEED_SAMPLE
from .features import MS_PER_DAY, format_iso_ms, transform_records
from .models import INPUT_NAME, OUTPUT_NAME, POSITIVE_INDEX

VERSION_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z")
SCHEMA_VERSION = 1


# ----------------------------------------------------------------------------
# versions


def existing_versions(model_dir: Path) -> list[str]:
    if not model_dir.is_dir():
        return []
    return sorted(p.name for p in model_dir.iterdir() if p.is_dir() and VERSION_RE.fullmatch(p.name))


def training_end_version(model_dir: Path) -> tuple[str, str]:
    """(version, trainedAt) for 'now' (UTC, whole seconds). If that would not
    sort after every existing version (two runs in the same second), wait for
    the next second, so versions stay unique and chronological."""
    latest = (existing_versions(model_dir) or [""])[-1]
    while True:
        now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        version = now.strftime("%Y%m%dT%H%M%SZ")
        if version > latest:
            return version, now.strftime("%Y-%m-%dT%H:%M:%SZ")
        time.sleep(0.2)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ----------------------------------------------------------------------------
# manifest


def manifest(*, name: str, version: str, trained_at: str, family: str,
             model_bytes: bytes, data_hash: str, threshold: float,
             fields: list[dict], feature_names: list[str], metrics: dict,
             extra: dict | None = None) -> dict:
    m = {
        "schemaVersion": SCHEMA_VERSION,
        "name": name,
        "version": version,
        "family": family,
        "pipelineVersion": PIPELINE_VERSION,
        "trainedAt": trained_at,
        "sha256": sha256_hex(model_bytes),
        "dataHash": data_hash,
        "threshold": threshold,
        "onnx": {"input": INPUT_NAME, "output": OUTPUT_NAME, "positiveIndex": POSITIVE_INDEX},
        "fields": copy.deepcopy(fields),
        "featureNames": list(feature_names),
        "metrics": metrics,
    }
    if extra:
        m.update(extra)
    return m


# ----------------------------------------------------------------------------
# golden vectors


def _without(rec: dict, *keys: str) -> dict:
    return {k: v for k, v in rec.items() if k not in keys}


def golden_records(test_records: Sequence[dict], reference_ms: int, n_test: int = 10) -> list[tuple[str, dict]]:
    """(id, record) pairs covering the contract's corners."""
    s = dict(SEED_SAMPLE)
    future = format_iso_ms(reference_ms + 10 * MS_PER_DAY)
    cases: list[tuple[str, dict]] = [("seed-sample", dict(s))]
    for i, r in enumerate(test_records[:n_test]):
        cases.append((f"test-{i}", {k: v for k, v in r.items() if k != "label"}))
    cases += [
        ("only-required-fields", {k: s[k] for k in ("birthday", "createTime", "appId", "countryId", "platformType")}),
        ("missing-device-and-screen", _without(s, "deviceName", "screenSize")),
        ("missing-userId", _without(s, "userId")),
        ("missing-language-stone-type-channel", _without(s, "languageId", "stoneVersion", "type", "channel")),
        ("unknown-categories", {**s, "countryId": 999, "appId": 12345, "languageId": "99",
                                "stoneVersion": "v9", "channel": 7, "type": 42, "platformType": 3}),
        ("unknown-device", {**s, "deviceName": "Some-Unseen-Phone-X1"}),
        ("empty-device-name", {**s, "deviceName": ""}),
        ("non-ascii-device-name", {**s, "deviceName": "华为-P40 Pro ✓"}),
        ("zone-plus-colon", {**s, "birthday": "1995-04-29T00:00:00+00:00",
                             "createTime": "2020-11-02T02:51:19.000+00:00"}),
        ("zone-z", {**s, "birthday": "1995-04-29T00:00:00Z", "createTime": "2020-11-02T02:51:19.000Z"}),
        ("zone-offsets", {**s, "birthday": "1995-04-29T08:00:00+08:00", "createTime": "2020-11-01T21:21:19-0530"}),
        ("no-zone-and-date-only", {**s, "birthday": "1995-04-29", "createTime": "2020-11-02T02:51:19"}),
        ("space-separator-no-seconds", {**s, "createTime": "2020-11-02 02:51"}),
        ("nine-digit-fraction", {**s, "createTime": "2020-11-02T02:51:19.987654321Z"}),
        ("leap-day-birthday", {**s, "birthday": "2000-02-29T12:00:00.000+0000"}),
        ("future-createTime-negative-age", {**s, "createTime": future}),
        ("integral-float-ids", {**s, "countryId": 182.0, "appId": 20001.0}),
        ("extra-fields-ignored", {**s, "extra": "ignored", "nested": {"a": [1, 2]}, "flag": True}),
        ("large-screen", {**s, "screenSize": "1440*3200"}),
        ("zero-screen", {**s, "screenSize": "0*0"}),
        ("ios-premium", {**s, "platformType": 1, "deviceName": "iPhone13,2", "screenSize": "1170*2532",
                         "stoneVersion": "v3", "countryId": 1, "birthday": "2003-01-15T00:00:00.000+0000",
                         "createTime": format_iso_ms(reference_ms - 3 * MS_PER_DAY)}),
    ]
    return cases


def golden(fields: list[dict], cases: list[tuple[str, dict]], reference_ms: int,
           score_fn: Callable[[np.ndarray], np.ndarray], threshold: float) -> dict:
    X = transform_records(fields, [r for _, r in cases], reference_ms)
    scores = score_fn(X)
    out = []
    for (cid, rec), x, sc in zip(cases, X, scores):
        sc = float(np.float32(sc))
        out.append({"id": cid, "record": rec, "inputs": [float(v) for v in x],
                    "score": sc, "label": int(sc >= threshold)})
    return {"referenceTime": format_iso_ms(reference_ms), "threshold": threshold, "cases": out}


# ----------------------------------------------------------------------------
# QA cases


def qa(name: str, version: str, fields: list[dict], candidates: Sequence[dict], now_ms: int,
       score_fn: Callable[[np.ndarray], np.ndarray], threshold: float,
       tolerance: float = 1e-2, horizon_days: int = 180) -> dict:
    """QA requests and expected responses.

    Expected scores are computed with `now` = the end of training. Ages move
    with the request time, so OK cases use records whose label does not change
    within `horizon_days` after training (checked here by re-scoring every 30
    days), preferring the least time-sensitive ones; scoreTolerance is 1e-2 or,
    for a record whose score moves more within the horizon, that movement x1.5.
    The seed sample is always included."""

    def scores_at(recs, t_ms):
        return score_fn(transform_records(fields, recs, t_ms)).astype(np.float64)

    recs = [dict(SEED_SAMPLE)] + [{k: v for k, v in r.items() if k != "label"} for r in candidates]
    base = scores_at(recs, now_ms)
    worst = np.zeros(len(recs))
    stable = np.ones(len(recs), dtype=bool)
    for d in range(30, horizon_days + 1, 30):
        s = scores_at(recs, now_ms + d * MS_PER_DAY)
        worst = np.maximum(worst, np.abs(s - base))
        stable &= (s >= threshold) == (base >= threshold)
    # per-case tolerance: 1e-2, or (if the score moves more than 5e-3 within
    # the horizon) the observed movement x1.5 rounded up to 0.01
    tol = np.maximum(tolerance, np.ceil(worst * 1.5 * 100) / 100)
    order = np.argsort(worst)
    pos = [int(i) for i in order if i > 0 and stable[i] and base[i] >= threshold][:2]
    neg = [int(i) for i in order if i > 0 and stable[i] and base[i] < threshold][:2]
    picks = [0] + pos + neg
    n = [0]

    def req(instances, ver=version, model=name):
        n[0] += 1
        return {"model": model, "version": ver, "requestId": f"qa-{n[0]}", "instances": instances}

    def pred(i):
        sc = round(float(np.float32(base[i])), 6)
        return {"label": int(base[i] >= threshold), "score": sc}

    cases = []
    for i in picks:
        cases.append({
            "name": "seed sample" if i == 0 else f"{'positive' if base[i] >= threshold else 'negative'} record {i}",
            "request": req([recs[i]]),
            "expect": {"code": "OK", "predictions": [pred(i)], "scoreTolerance": float(tol[i])},
        })
    batch = picks[:4]
    cases.append({"name": "batch of %d" % len(batch), "request": req([recs[i] for i in batch]),
                  "expect": {"code": "OK", "predictions": [pred(i) for i in batch],
                             "scoreTolerance": float(max(tol[i] for i in batch))}})
    s = dict(SEED_SAMPLE)
    bad = [
        ("missing required field birthday", [_without(s, "birthday")]),
        ("wrong type: countryId as string", [{**s, "countryId": "182"}]),
        ("wrong type: birthday as number", [{**s, "birthday": 19950429}]),
        ("null field", [{**s, "appId": None}]),
        ("non-integer vocabulary number", [{**s, "appId": 20000.5}]),
        ("bad date: Feb 30", [{**s, "birthday": "1995-02-30T00:00:00.000+0000"}]),
        ("bad date: not a date", [{**s, "createTime": "yesterday"}]),
        ("bad screenSize", [{**s, "screenSize": "720x1440"}]),
        ("second instance invalid", [dict(s), _without(s, "createTime")]),
        ("empty instances", []),
    ]
    for title, inst in bad:
        cases.append({"name": title, "request": req(inst), "expect": {"code": "INVALID_ARGUMENT"}})
    cases.append({"name": "unknown version", "request": req([dict(s)], ver="19700101T000000Z"),
                  "expect": {"code": "NOT_FOUND"}})
    cases.append({"name": "unknown model", "request": req([dict(s)], model="no-such-model"),
                  "expect": {"code": "NOT_FOUND"}})
    return {"model": name, "version": version, "expectedAt": format_iso_ms(now_ms),
            "note": "OK scores were computed at expectedAt; labels are stable for horizonDays after it",
            "horizonDays": horizon_days, "cases": cases}


# ----------------------------------------------------------------------------
# atomic publish


def dump_json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def publish(model_dir: Path, version: str, files: dict[str, bytes],
            extra_writer: Callable[[Path], None] | None = None) -> Path:
    """Write files into model_dir/.tmp-<version>-<pid>/ then rename it to
    model_dir/<version>/ (atomic on one filesystem)."""
    model_dir.mkdir(parents=True, exist_ok=True)
    final = model_dir / version
    if final.exists():
        raise FileExistsError(final)
    tmp = model_dir / f".tmp-{version}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for fname, data in files.items():
            (tmp / fname).write_bytes(data)
        if extra_writer:
            extra_writer(tmp)
        for p in tmp.iterdir():  # flush to disk before the rename
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def update_in_place(version_dir: Path, files: dict[str, bytes],
                    extra_writer: Callable[[Path], None] | None = None) -> None:
    """Add/replace files of an existing version; each file is replaced
    atomically (written beside it, then os.replace). model.onnx is never
    touched here."""
    version_dir = Path(version_dir)
    assert "model.onnx" not in files
    tmp = version_dir.parent / f".tmp-update-{version_dir.name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for fname, data in files.items():
            (tmp / fname).write_bytes(data)
        if extra_writer:
            extra_writer(tmp)
        for p in sorted(tmp.iterdir(), key=lambda p: p.name == "model.json"):  # manifest last
            os.replace(p, version_dir / p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
