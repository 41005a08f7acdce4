"""Python implementation of the preprocessing contract (models/README.md).

The manifest's ``fields`` list drives everything: the same code builds the
training matrices and the golden-vector inputs, so both agree by construction.
Every transform is computed in float64 and cast to float32 at the end.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

MS_PER_DAY = 86_400_000
UNIT_MS = {"years": 365.25 * MS_PER_DAY, "days": float(MS_PER_DAY)}

FNV_OFFSET = 2166136261
FNV_PRIME = 16777619

# YYYY-MM-DD, optionally followed by (T|space)HH:MM[:SS[.fraction]][zone].
# A zone is only accepted after a time part; ASCII digits only; fullmatch.
_DATE_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2}|[+-][0-9]{4})?)?",
    re.ASCII,
)
_SCREEN_RE = re.compile(r"([0-9]+)\*([0-9]+)", re.ASCII)


class FeatureError(ValueError):
    """A record violates the contract (maps to INVALID_ARGUMENT)."""

    def __init__(self, field: str, message: str, index: int | None = None):
        self.field = field
        self.index = index
        where = f"instance {index}: " if index is not None else ""
        super().__init__(f"{where}field '{field}': {message}")


# ----------------------------------------------------------------------------
# primitives


def fnv1a32(data: bytes | str) -> int:
    """32-bit FNV-1a over the UTF-8 bytes, as an unsigned integer."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    h = FNV_OFFSET
    for b in data:
        h ^= b
        h = (h * FNV_PRIME) & 0xFFFFFFFF
    return h


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _days_in_month(y: int, m: int) -> int:
    if m == 2:
        leap = (y % 4 == 0 and y % 100 != 0) or y % 400 == 0
        return 29 if leap else 28
    return 30 if m in (4, 6, 9, 11) else 31


def parse_iso_date_ms(text: str) -> int:
    """Parse an ISO 8601 date of the contract to epoch milliseconds (UTC).

    Raises ValueError for anything the contract does not accept.
    """
    m = _DATE_RE.fullmatch(text)
    if not m:
        raise ValueError(f"not an ISO 8601 date: {text!r}")
    year, month, day = int(m[1]), int(m[2]), int(m[3])
    hour = int(m[4]) if m[4] is not None else 0
    minute = int(m[5]) if m[5] is not None else 0
    second = int(m[6]) if m[6] is not None else 0
    millis = int((m[7] + "00")[:3]) if m[7] is not None else 0
    if not 1 <= month <= 12:
        raise ValueError(f"month out of range: {text!r}")
    if not 1 <= day <= _days_in_month(year, month):
        raise ValueError(f"day out of range: {text!r}")
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f"time out of range: {text!r}")
    offset_min = 0
    zone = m[8]
    if zone is not None and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        zh, zm = int(digits[:2]), int(digits[2:])
        if zh > 23 or zm > 59:
            raise ValueError(f"zone out of range: {text!r}")
        offset_min = sign * (zh * 60 + zm)
    return (
        _days_from_civil(year, month, day) * MS_PER_DAY
        + hour * 3_600_000
        + minute * 60_000
        + second * 1000
        + millis
        - offset_min * 60_000
    )


def format_iso_ms(ms: int) -> str:
    """Epoch ms -> 'YYYY-MM-DDTHH:MM:SS.mmmZ' (used for referenceTime)."""
    import datetime as _dt

    t = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def key_of(value: Any, field: str) -> str:
    """key(value): strings as is; integral numbers in decimal, no fraction."""
    if isinstance(value, str):
        return value
    if _is_number(value):
        if isinstance(value, float) and not value.is_integer():
            raise FeatureError(field, f"number must be an integer, got {value!r}")
        return str(int(value))
    raise FeatureError(field, f"cannot key {type(value).__name__}")


# ----------------------------------------------------------------------------
# field spec


def transform_width(field: Mapping[str, Any]) -> int:
    t = field.get("transform")
    if t is None:
        return 0
    kind = t["kind"]
    if kind in ("numeric", "age"):
        return 1
    if kind == "vocabulary":
        return len(t["values"]) + 1
    if kind == "hash":
        return int(t["buckets"])
    if kind == "screen":
        return 2
    raise ValueError(f"unknown transform kind {kind!r}")


def feature_names(fields: Sequence[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for f in fields:
        t = f.get("transform")
        if t is None:
            continue
        n, kind = f["name"], t["kind"]
        if kind == "numeric":
            names.append(n)
        elif kind == "age":
            names.append(f"{n}_age_{t['unit']}")
        elif kind == "vocabulary":
            names += [f"{n}={v}" for v in t["values"]] + [f"{n}=<unknown>"]
        elif kind == "hash":
            names += [f"{n}#{i}" for i in range(int(t["buckets"]))]
        elif kind == "screen":
            names += [f"{n}_width", f"{n}_height"]
        else:
            raise ValueError(f"unknown transform kind {kind!r}")
    return names


def validate_fields(fields: Sequence[Mapping[str, Any]]) -> None:
    """Sanity-check a field spec (types, defaults, transform compatibility)."""
    seen = set()
    allowed = {
        "numeric": {"number"},
        "vocabulary": {"number", "string"},
        "hash": {"number", "string"},
        "age": {"string"},
        "screen": {"string"},
    }
    for f in fields:
        if f["name"] in seen:
            raise ValueError(f"duplicate field {f['name']}")
        seen.add(f["name"])
        if f["type"] not in ("number", "string"):
            raise ValueError(f"bad type for {f['name']}")
        t = f.get("transform")
        if t is not None and f["type"] not in allowed[t["kind"]]:
            raise ValueError(f"{t['kind']} cannot take {f['type']} ({f['name']})")
        if t is not None and t["kind"] == "vocabulary":
            if not all(isinstance(v, str) for v in t["values"]):
                raise ValueError(f"vocabulary values must be strings ({f['name']})")
        if not f["required"]:
            if "default" not in f:
                raise ValueError(f"optional field {f['name']} needs a default")
            d = f["default"]
            ok = isinstance(d, str) if f["type"] == "string" else _is_number(d)
            if not ok:
                raise ValueError(f"default of {f['name']} has the wrong type")


# ----------------------------------------------------------------------------
# record -> row


def _check_type(field: Mapping[str, Any], value: Any) -> None:
    name = field["name"]
    if field["type"] == "number":
        if not _is_number(value):
            raise FeatureError(name, f"expected a number, got {_describe(value)}")
        if not math.isfinite(value):
            raise FeatureError(name, "number must be finite")
    else:
        if not isinstance(value, str):
            raise FeatureError(name, f"expected a string, got {_describe(value)}")


def _describe(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, str):
        return "string"
    return "number"


def _apply(field: Mapping[str, Any], value: Any, now_ms: int) -> list[float]:
    t = field.get("transform")
    if t is None:
        return []
    name, kind = field["name"], t["kind"]
    if kind == "numeric":
        return [float(value)]
    if kind == "vocabulary":
        k = key_of(value, name)
        values = t["values"]
        out = [0.0] * (len(values) + 1)
        try:
            out[values.index(k)] = 1.0
        except ValueError:
            out[-1] = 1.0
        return out
    if kind == "hash":
        buckets = int(t["buckets"])
        out = [0.0] * buckets
        out[fnv1a32(key_of(value, name)) % buckets] = 1.0
        return out
    if kind == "age":
        try:
            ms = parse_iso_date_ms(value)
        except ValueError as e:
            raise FeatureError(name, str(e)) from None
        return [(now_ms - ms) / UNIT_MS[t["unit"]]]
    if kind == "screen":
        m = _SCREEN_RE.fullmatch(value)
        if not m:
            raise FeatureError(name, f"expected '<W>*<H>', got {value!r}")
        return [float(int(m[1])), float(int(m[2]))]
    raise ValueError(f"unknown transform kind {kind!r}")


def transform_record(
    fields: Sequence[Mapping[str, Any]], record: Mapping[str, Any], now_ms: int
) -> np.ndarray:
    """One raw record -> float32 row of length len(feature_names(fields))."""
    if not isinstance(record, Mapping):
        raise FeatureError("<instance>", "instance must be an object")
    row: list[float] = []
    for f in fields:
        name = f["name"]
        if name in record:
            value = record[name]
        elif f["required"]:
            raise FeatureError(name, "required field is missing")
        else:
            value = f["default"]
        _check_type(f, value)
        row += _apply(f, value, now_ms)
    return np.asarray(row, dtype=np.float64).astype(np.float32)


def transform_records(
    fields: Sequence[Mapping[str, Any]], records: Iterable[Mapping[str, Any]], now_ms: int
) -> np.ndarray:
    width = len(feature_names(fields))
    rows = []
    for i, r in enumerate(records):
        try:
            rows.append(transform_record(fields, r, now_ms))
        except FeatureError as e:
            e.index = i
            e.args = (f"instance {i}: {e.args[0]}",)
            raise
    if not rows:
        return np.zeros((0, width), dtype=np.float32)
    return np.vstack(rows)
