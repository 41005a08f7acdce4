"""Deterministic synthetic data shaped like the seed's sample record.

The label is drawn from a known logistic model of the raw fields (so there is a
learnable signal); the intercept is solved so that ~10% of rows are positive.
``drift=True`` changes both the feature distributions and the coefficients,
so a model trained on drifted data really differs.

Rows are persisted as CSV (one column per raw field, in spec order, plus
``label``); an empty cell means the field is missing from the record.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from .features import MS_PER_DAY, fnv1a32, format_iso_ms, parse_iso_date_ms
from .spec import COUNTRY_IDS, FIELDS

DEFAULT_REFERENCE_TIME = "2026-11-20T00:00:00.000Z"
POSITIVE_RATE = 0.10

SEED_SAMPLE = {
    "userId": 102079311,
    "birthday": "1995-04-29T00:00:00.000+0000",
    "appId": 20000,
    "channel": 1,
    "countryId": 182,
    "createTime": "2020-11-02T02:51:19.000+0000",
    "languageId": "20",
    "type": 6,
    "stoneVersion": "other",
    "platformType": 2,
    "screenSize": "720*1440",
    "deviceName": "TECNO-BB4k",
}

DEVICES = [
    "TECNO-BB4k", "TECNO-KE5", "TECNO-LD7", "Infinix-X657", "Infinix-X688B",
    "itel-L6005", "SM-A105F", "SM-A205F", "SM-G960F", "SM-G973F", "SM-N975F",
    "Redmi-Note-8", "Redmi-9A", "M2006C3LG", "POCO-X3", "vivo-1906", "vivo-1904",
    "OPPO-A5s", "CPH1909", "CPH2127", "HUAWEI-Y6", "HUAWEI-P30", "iPhone8,1",
    "iPhone10,3", "iPhone11,8", "iPhone12,1", "iPhone13,2", "Pixel-4a",
    "moto-g(7)", "Nokia-2.3",
]
SCREENS = ["480*854", "720*1280", "720*1440", "720*1600", "750*1334",
           "828*1792", "1080*1920", "1080*2340", "1170*2532", "1440*3040"]

NUMBER_FIELDS = {f["name"] for f in FIELDS if f["type"] == "number"}
COLUMNS = [f["name"] for f in FIELDS] + ["label"]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _solve_intercept(logit: np.ndarray, rate: float) -> float:
    lo, hi = -20.0, 20.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if _sigmoid(logit + mid).mean() < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _fmt(ms: int) -> str:
    t = dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=int(ms))
    return t.strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def generate(n: int, seed: int = 7, drift: bool = False,
             reference_time: str = DEFAULT_REFERENCE_TIME) -> list[dict[str, Any]]:
    """n raw records (dicts with JSON-typed values, missing keys = missing) + 'label'."""
    rng = np.random.default_rng([seed, 1 if drift else 0])
    ref_ms = parse_iso_date_ms(reference_time)

    # --- distributions --------------------------------------------------------
    age = np.clip(rng.normal(26.0 if drift else 30.0, 8.0, n), 14.0, 70.0)
    acct_days = np.minimum(rng.exponential(250.0 if drift else 420.0, n), 2500.0)
    app_p = [0.40, 0.30, 0.20, 0.10] if drift else [0.55, 0.25, 0.15, 0.05]
    app = rng.choice(4, n, p=app_p)
    channel = rng.integers(1, 6, n)
    n_c = len(COUNTRY_IDS)
    c_w = np.linspace(2.0, 0.5, n_c) if drift else np.linspace(0.5, 2.0, n_c)
    country = rng.choice(n_c, n, p=c_w / c_w.sum())
    lang = rng.choice(6, n)
    typ = rng.integers(1, 7, n)
    stone_p = [0.30, 0.20, 0.25, 0.25] if drift else [0.45, 0.25, 0.20, 0.10]
    stone = rng.choice(4, n, p=stone_p)
    ios = rng.random(n) < (0.45 if drift else 0.30)
    screen = rng.choice(len(SCREENS), n)
    device = rng.choice(len(DEVICES), n)
    premium = np.array([fnv1a32(d) % 4 == 0 for d in DEVICES])[device]
    width = np.array([int(s.split("*")[0]) for s in SCREENS])[screen]

    # --- label model ----------------------------------------------------------
    country_eff = np.linspace(-0.8, 0.8, n_c)
    if drift:
        country_eff = country_eff[::-1] * 1.2
    stone_eff = np.array([0.0, 0.2, 0.6, 0.9]) if not drift else np.array([0.0, 0.5, 0.1, -0.6])
    app_eff = np.array([0.0, 0.4, -0.3, 0.8]) if not drift else np.array([0.0, -0.4, 0.5, 0.3])
    type_eff = np.where(typ == 6, 0.5, 0.0) + np.where(typ == 1, -0.4, 0.0)
    logit = (
        (-0.045 if not drift else 0.035) * (age - 30.0)
        + (-0.0015 if not drift else -0.0006) * acct_days
        + country_eff[country]
        + stone_eff[stone]
        + app_eff[app]
        + type_eff
        + (0.9 if not drift else 0.2) * ios
        + (0.45 if not drift else 0.1) * (width >= 1080)
        + (0.6 if not drift else 1.0) * premium
        + np.where(lang == 4, 0.3, 0.0)
    )
    p = _sigmoid(logit + _solve_intercept(logit, POSITIVE_RATE))
    label = (rng.random(n) < p).astype(int)

    # --- raw records (with missing values and unknown categories) --------------
    user_ids = rng.integers(100_000_000, 110_000_000, n)
    miss = {k: rng.random(n) < r for k, r in [
        ("userId", 0.01), ("channel", 0.05), ("languageId", 0.05), ("type", 0.03),
        ("stoneVersion", 0.05), ("screenSize", 0.03), ("deviceName", 0.08)]}
    unknown_country = rng.random(n) < 0.01
    unknown_app = rng.random(n) < 0.005
    unknown_channel = rng.random(n) < 0.005
    birth_ms = ref_ms - np.round(age * 365.25) * MS_PER_DAY
    birth_ms = birth_ms - birth_ms % MS_PER_DAY  # midnight, like the sample
    create_ms = ref_ms - np.round(acct_days * MS_PER_DAY)
    create_ms = create_ms - create_ms % 1000

    langs = ["1", "2", "5", "10", "20", "31"]
    rows = []
    for i in range(n):
        r: dict[str, Any] = {
            "userId": int(user_ids[i]),
            "birthday": _fmt(birth_ms[i]),
            "createTime": _fmt(create_ms[i]),
            "appId": 20000 + int(app[i]) if not unknown_app[i] else 20009,
            "channel": int(channel[i]) if not unknown_channel[i] else 9,
            "countryId": int(COUNTRY_IDS[country[i]]) if not unknown_country[i] else 999,
            "languageId": langs[lang[i]],
            "type": int(typ[i]),
            "stoneVersion": ["other", "v1", "v2", "v3"][stone[i]],
            "platformType": 1 if ios[i] else 2,
            "screenSize": SCREENS[screen[i]],
            "deviceName": DEVICES[device[i]],
        }
        for k, m in miss.items():
            if m[i]:
                del r[k]
        r["label"] = int(label[i])
        rows.append(r)
    return rows


# ----------------------------------------------------------------------------
# persistence


def to_csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow(["" if c not in r else r[c] for c in COLUMNS])
    return buf.getvalue().encode("utf-8")


def write_csv(rows: list[dict[str, Any]], path: str | os.PathLike) -> str:
    """Write rows atomically; returns 'sha256:<hex>' of the file's bytes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = to_csv_bytes(rows)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_hash(path: str | os.PathLike) -> str:
    return "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_csv(path: str | os.PathLike) -> list[dict[str, Any]]:
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        for rec in csv.DictReader(fh):
            r: dict[str, Any] = {}
            for k, v in rec.items():
                if v == "":
                    continue  # missing (deviceName "" == its default anyway)
                r[k] = int(v) if (k in NUMBER_FIELDS or k == "label") else v
            r.setdefault("label", 0)
            rows.append(r)
    return rows


def split_indices(n: int, seed: int, val: float = 0.15, test: float = 0.15):
    """Deterministic train/validation/test split of range(n)."""
    perm = np.random.default_rng([seed, 99]).permutation(n)
    n_test, n_val = int(round(n * test)), int(round(n * val))
    return perm[n_test + n_val:], perm[n_test:n_test + n_val], perm[:n_test]


__all__ = ["generate", "write_csv", "read_csv", "file_hash", "split_indices",
           "SEED_SAMPLE", "DEFAULT_REFERENCE_TIME", "format_iso_ms"]
