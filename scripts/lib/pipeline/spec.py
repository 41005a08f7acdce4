"""The field spec of the `conversion` model (goes verbatim into model.json)."""

from __future__ import annotations

import copy

APP_IDS = ["20000", "20001", "20002", "20003"]
CHANNELS = ["1", "2", "3", "4", "5"]
COUNTRY_IDS = ["1", "33", "44", "49", "62", "63", "66", "84", "86", "91", "182", "234"]
LANGUAGE_IDS = ["1", "2", "5", "10", "20", "31"]
TYPES = ["1", "2", "3", "4", "5", "6"]
STONE_VERSIONS = ["other", "v1", "v2", "v3"]
PLATFORM_TYPES = ["1", "2"]
DEVICE_BUCKETS = 16

# Sane bounds, declared rather than learnt from the (synthetic) training data,
# in the unit of each field's column (models/README.md, "Ranges"). Ages are
# relative to the request time, so the bounds do not go stale as time passes.
BIRTHDAY_AGE_YEARS = {"min": 0, "max": 120}       # born today .. 120 years ago
CREATE_TIME_AGE_DAYS = {"min": -30, "max": 10000}  # clocks a month fast .. ~27 years ago
SCREEN_PIXELS = {"min": 0, "max": 20000}           # each side; "0*0" is the unknown default

FIELDS = [
    {"name": "userId", "type": "number", "required": False, "default": 0},
    {"name": "birthday", "type": "string", "required": True,
     "transform": {"kind": "age", "unit": "years"}, "range": BIRTHDAY_AGE_YEARS},
    {"name": "createTime", "type": "string", "required": True,
     "transform": {"kind": "age", "unit": "days"}, "range": CREATE_TIME_AGE_DAYS},
    {"name": "appId", "type": "number", "required": True,
     "transform": {"kind": "vocabulary", "values": APP_IDS}},
    {"name": "channel", "type": "number", "required": False, "default": 1,
     "transform": {"kind": "vocabulary", "values": CHANNELS}},
    {"name": "countryId", "type": "number", "required": True,
     "transform": {"kind": "vocabulary", "values": COUNTRY_IDS}},
    {"name": "languageId", "type": "string", "required": False, "default": "20",
     "transform": {"kind": "vocabulary", "values": LANGUAGE_IDS}},
    {"name": "type", "type": "number", "required": False, "default": 6,
     "transform": {"kind": "vocabulary", "values": TYPES}},
    {"name": "stoneVersion", "type": "string", "required": False, "default": "other",
     "transform": {"kind": "vocabulary", "values": STONE_VERSIONS}},
    {"name": "platformType", "type": "number", "required": True,
     "transform": {"kind": "vocabulary", "values": PLATFORM_TYPES}},
    {"name": "screenSize", "type": "string", "required": False, "default": "0*0",
     "transform": {"kind": "screen"}, "range": SCREEN_PIXELS},
    {"name": "deviceName", "type": "string", "required": False, "default": "",
     "transform": {"kind": "hash", "buckets": DEVICE_BUCKETS}},
]


def fields() -> list[dict]:
    """A fresh deep copy of the field spec."""
    return copy.deepcopy(FIELDS)
