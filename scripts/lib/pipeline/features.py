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

# The largest finite float32, as a float64: model inputs are float32, so a
# larger magnitude would become Infinity.
FLOAT32_MAX = 3.4028234663852886e38
# Category keys are integers the float64 wire format holds exactly.
MAX_SAFE_INTEGER = 2**53 - 1
SCREEN_MAX_DIGITS = 6

# The grammar of models/README.md: YYYY-MM-DD, optionally followed by
# (T|space)HH:MM[:SS[.fraction]][zone]. A zone only after a time part; ASCII
# digits only; fullmatch. (The server scans the same grammar by hand.)
_DATE_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?"
    r"(Z|[+-][0-9]{2}:[0-9]{2}|[+-][0-9]{4})?)?",
    re.ASCII,
)
_SCREEN_RE = re.compile(r"([0-9]{1,%d})\*([0-9]{1,%d})" % (SCREEN_MAX_DIGITS, SCREEN_MAX_DIGITS), re.ASCII)

# Kinds whose column is a number a manifest `range` can bound.
RANGED_KINDS = ("numeric", "age", "screen")

# Property names every JavaScript object inherits: the server reads a record
# field as `record[name]`, so a field of one of these names could never be
# missing there. Manifests may not declare them (the server refuses too).
JS_OBJECT_PROTOTYPE_NAMES = frozenset({
    "__proto__", "__defineGetter__", "__defineSetter__", "__lookupGetter__", "__lookupSetter__",
    "constructor", "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable",
    "toLocaleString", "toString", "valueOf",
})


class FeatureError(ValueError):
    """A record violates the contract (maps to INVALID_ARGUMENT)."""

    def __init__(self, field: str, message: str, index: int | None = None):
        self.field = field
        self.reason = message
        self.index = index
        where = f"instance {index}: " if index is not None else ""
        super().__init__(f"{where}field '{field}': {message}")


# ----------------------------------------------------------------------------
# primitives


def utf8(text: str) -> bytes:
    """UTF-8 of `text`; a lone surrogate (JSON can escape one, UTF-8 cannot
    carry it) becomes U+FFFD, as the server's encoder and the wire do."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode("utf-8")


def fnv1a32(data: bytes | str) -> int:
    """32-bit FNV-1a over the UTF-8 bytes, as an unsigned integer."""
    if isinstance(data, str):
        data = utf8(data)
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
    # bool is an int in Python, but JSON true/false are not numbers.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def key_of(value: Any, field: str) -> str:
    """key(value): strings as is; numbers must be integers within
    ±(2**53 - 1), written in decimal without a fraction (-0 -> "0")."""
    if isinstance(value, str):
        return value
    if _is_number(value):
        x = float(value)
        if not x.is_integer() or abs(x) > MAX_SAFE_INTEGER:
            raise FeatureError(field, f"number must be an integer within ±(2^53-1), got {value!r}")
        return str(int(x))
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


def _range_of(field: Mapping[str, Any]) -> tuple[float, float] | None:
    """(min, max) of a field's optional `range`, a missing bound as ∓inf."""
    r = field.get("range")
    if r is None:
        return None
    return (float(r.get("min", -math.inf)), float(r.get("max", math.inf)))


def validate_fields(fields: Sequence[Mapping[str, Any]]) -> None:
    """Check a field spec as strictly as the server's manifest parser
    (server/model-manifest.ts): the same spec is accepted or refused by both."""
    seen = set()
    allowed = {
        "numeric": {"number"},
        "vocabulary": {"number", "string"},
        "hash": {"number", "string"},
        "age": {"string"},
        "screen": {"string"},
    }
    if not fields:
        raise ValueError("fields must be a non-empty list")
    for i, f in enumerate(fields):
        where = f"fields[{i}]"
        name = f.get("name")
        if not isinstance(name, str) or name == "":
            raise ValueError(f"{where}.name must be a non-empty string")
        if name in JS_OBJECT_PROTOTYPE_NAMES:
            raise ValueError(f"{where}.name {name!r} is a name every JavaScript object inherits")
        if name in seen:
            raise ValueError(f"field {name!r} is declared twice")
        seen.add(name)
        if f.get("type") not in ("number", "string"):
            raise ValueError(f"{where}.type must be number or string")
        t = f.get("transform")
        if t is not None:
            kind = t.get("kind")
            if kind not in allowed:
                raise ValueError(f"{where}.transform.kind {kind!r} is not a known transform")
            if f["type"] not in allowed[kind]:
                raise ValueError(f"{where}.transform: {kind} cannot take a {f['type']} field")
            if kind == "vocabulary":
                values = t.get("values")
                if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
                    raise ValueError(f"{where}.transform.values must be a non-empty list of strings")
                if len(set(values)) != len(values):
                    raise ValueError(f"{where}.transform.values must not repeat a value")
            elif kind == "hash":
                b = t.get("buckets")
                if not _is_number(b) or not float(b).is_integer() or not 1 <= b <= 1_000_000:
                    raise ValueError(f"{where}.transform.buckets must be 1..1e6")
            elif kind == "age" and t.get("unit") not in UNIT_MS:
                raise ValueError(f"{where}.transform.unit must be years or days")
        if "range" in f:
            _validate_range(f, where)
        if not isinstance(f.get("required", False), bool):
            raise ValueError(f"{where}.required must be true or false")
        if "default" in f:
            try:
                _apply(f, _check_type(f, f["default"]), None)
            except FeatureError as e:
                raise ValueError(f"{where}.default is refused by its own field: {e.reason}") from None
        elif not f.get("required", False) and t is not None:
            raise ValueError(f"{where}.default must be a {f['type']} for an optional field with a transform")


def _validate_range(f: Mapping[str, Any], where: str) -> None:
    r = f["range"]
    t = f.get("transform")
    if t is None or t["kind"] not in RANGED_KINDS:
        raise ValueError(f"{where}.range is only allowed on numeric, age and screen transforms")
    if not isinstance(r, dict) or not r or set(r) - {"min", "max"}:
        raise ValueError(f"{where}.range must be an object with min and/or max (and nothing else)")
    for k, v in r.items():
        if not _is_number(v) or not math.isfinite(v):
            raise ValueError(f"{where}.range.{k} must be a finite number")
    if "min" in r and "max" in r and r["min"] > r["max"]:
        raise ValueError(f"{where}.range.min must not exceed range.max")


# ----------------------------------------------------------------------------
# record -> row


def _check_type(field: Mapping[str, Any], value: Any) -> Any:
    """The value as the server sees it (a number as float64), or FeatureError."""
    name = field["name"]
    if field["type"] == "number":
        if not _is_number(value):
            raise FeatureError(name, f"expected a number, got {_describe(value)}")
        try:
            x = float(value)  # the wire carries float64; an int past its range is not finite
        except OverflowError:
            x = math.inf
        if not math.isfinite(x):
            raise FeatureError(name, "number must be finite")
        return x
    if not isinstance(value, str):
        raise FeatureError(name, f"expected a string, got {_describe(value)}")
    return value


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


def _in_range(field: Mapping[str, Any], x: float) -> float:
    r = _range_of(field)
    if r is not None and not r[0] <= x <= r[1]:
        raise FeatureError(field["name"], f"{x!r} is outside the range [{r[0]!r}, {r[1]!r}]")
    return x


def _apply(field: Mapping[str, Any], value: Any, now_ms: int | None) -> list[float]:
    """The field's columns in float64. `now_ms` None: an age is only parsed
    (a default is checked at load, when there is no request time)."""
    t = field.get("transform")
    if t is None:
        return []
    name, kind = field["name"], t["kind"]
    if kind == "numeric":
        if abs(value) > FLOAT32_MAX:
            raise FeatureError(name, f"must be within ±{FLOAT32_MAX} (float32), got {value!r}")
        return [_in_range(field, value)]
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
        if now_ms is None:
            return [0.0]
        return [_in_range(field, (now_ms - ms) / UNIT_MS[t["unit"]])]
    if kind == "screen":
        m = _SCREEN_RE.fullmatch(value)
        if not m:
            raise FeatureError(name, f"expected '<W>*<H>' of 1-{SCREEN_MAX_DIGITS} digits each, got {value!r}")
        return [_in_range(field, float(int(m[1]))), _in_range(field, float(int(m[2])))]
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
        elif f.get("required"):
            raise FeatureError(name, "required field is missing")
        elif "default" in f:
            value = f["default"]
        else:
            continue  # optional, no default: nothing to check (no transform either)
        row += _apply(f, _check_type(f, value), now_ms)
    return np.asarray(row, dtype=np.float64).astype(np.float32)


def outcome(fields: Sequence[Mapping[str, Any]], record: Any, now_ms: int) -> dict[str, Any]:
    """What the contract says of one record, as a JSON-ready verdict:
    {"ok": true, "features": [float32 values]} or {"ok": false, "field", "error"}.
    The server's answer to the same record is compared with it (the
    differential test, test/e2e/preprocess-parity.test.ts)."""
    try:
        row = transform_record(fields, record, now_ms)
    except FeatureError as e:
        return {"ok": False, "field": e.field, "error": e.reason}
    return {"ok": True, "features": [float(v) for v in row]}


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
