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

FIELDS = [
    {"name": "userId", "type": "number", "required": False, "default": 0},
    {"name": "birthday", "type": "string", "required": True,
     "transform": {"kind": "age", "unit": "years"}},
    {"name": "createTime", "type": "string", "required": True,
     "transform": {"kind": "age", "unit": "days"}},
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
     "transform": {"kind": "screen"}},
    {"name": "deviceName", "type": "string", "required": False, "default": "",
     "transform": {"kind": "hash", "buckets": DEVICE_BUCKETS}},
]


def fields() -> list[dict]:
    """A fresh deep copy of the field spec."""
    return copy.deepcopy(FIELDS)
