import datetime as dt
import math

import numpy as np
import pytest

from pipeline import features as F
from pipeline import spec
from pipeline.data import SEED_SAMPLE


def utc_ms(*a):
    return int(dt.datetime(*a, tzinfo=dt.timezone.utc).timestamp() * 1000)


# --- fnv1a32 ---------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("", 0x811C9DC5),          # the offset basis
    ("a", 0xE40C292C),         # published FNV-1a 32-bit test vectors
    ("foobar", 0xBF9CF968),
])
def test_fnv1a32_known_vectors(text, expected):
    assert F.fnv1a32(text) == expected


def test_fnv1a32_hashes_utf8_bytes():
    h = 2166136261
    for b in "é".encode("utf-8"):  # 0xC3 0xA9
        h = ((h ^ b) * 16777619) % 2**32
    assert F.fnv1a32("é") == h
    assert F.fnv1a32("TECNO-BB4k") == F.fnv1a32(b"TECNO-BB4k")


# --- key / vocabulary / hash / screen ---------------------------------------------

def test_key_of_numbers_and_strings():
    assert F.key_of(182, "f") == "182"
    assert F.key_of(182.0, "f") == "182"
    assert F.key_of(-0.0, "f") == "0"
    assert F.key_of("20", "f") == "20"
    with pytest.raises(F.FeatureError):
        F.key_of(182.5, "f")


VOCAB = [{"name": "c", "type": "number", "required": True,
          "transform": {"kind": "vocabulary", "values": ["1", "2", "3"]}}]


def test_vocabulary_one_hot_and_unknown_bucket():
    assert F.transform_record(VOCAB, {"c": 2}, 0).tolist() == [0, 1, 0, 0]
    assert F.transform_record(VOCAB, {"c": 99}, 0).tolist() == [0, 0, 0, 1]
    assert F.feature_names(VOCAB) == ["c=1", "c=2", "c=3", "c=<unknown>"]
    with pytest.raises(F.FeatureError):
        F.transform_record(VOCAB, {"c": 1.5}, 0)


def test_hash_bucket():
    fields = [{"name": "d", "type": "string", "required": False, "default": "",
               "transform": {"kind": "hash", "buckets": 16}}]
    row = F.transform_record(fields, {"d": "foobar"}, 0)
    assert row.sum() == 1 and row[0xBF9CF968 % 16] == 1  # 0xBF9CF968 % 16 == 8
    assert F.transform_record(fields, {}, 0)[0x811C9DC5 % 16] == 1  # default "" -> bucket 5


SCREEN = [{"name": "s", "type": "string", "required": True, "transform": {"kind": "screen"}}]


def test_screen_parsing():
    assert F.transform_record(SCREEN, {"s": "720*1440"}, 0).tolist() == [720.0, 1440.0]
    assert F.transform_record(SCREEN, {"s": "0*0"}, 0).tolist() == [0.0, 0.0]
    for bad in ["720x1440", "*1440", "720*", " 720*1440", "720*1440*2", "-1*5", "7.5*3", ""]:
        with pytest.raises(F.FeatureError):
            F.transform_record(SCREEN, {"s": bad}, 0)


# --- dates ------------------------------------------------------------------------

@pytest.mark.parametrize("text,expected", [
    ("1995-04-29T00:00:00.000+0000", utc_ms(1995, 4, 29)),
    ("1995-04-29T00:00:00+00:00", utc_ms(1995, 4, 29)),
    ("1995-04-29T00:00:00Z", utc_ms(1995, 4, 29)),
    ("1995-04-29", utc_ms(1995, 4, 29)),
    ("1995-04-29T08:00+08:00", utc_ms(1995, 4, 29)),
    ("1995-04-28T18:30:00-0530", utc_ms(1995, 4, 29)),
    ("2020-11-02 02:51", utc_ms(2020, 11, 2, 2, 51)),
    ("2020-11-02T02:51:19.9", utc_ms(2020, 11, 2, 2, 51, 19) + 900),
    ("2020-11-02T02:51:19.987654321Z", utc_ms(2020, 11, 2, 2, 51, 19) + 987),
    ("2000-02-29T12:00:00.000+0000", utc_ms(2000, 2, 29, 12)),
    ("1969-12-31T23:59:59.999Z", -1),
])
def test_parse_accepted_dates(text, expected):
    assert F.parse_iso_date_ms(text) == expected


@pytest.mark.parametrize("text", [
    "1995-02-30T00:00:00.000+0000", "1995-13-01", "1995-00-10", "1995-04-32", "2021-02-29",
    "1900-02-29", "1995-04-29T24:00", "1995-04-29T23:60", "1995-04-29T23:59:60",
    "1995-4-29", "1995-04-29T00:00:00.0000000000Z", "1995-04-29T00:00:00+24:00",
    "1995-04-29Z", "1995-04-29t00:00", "1995-04-29T00:00:00+00", "1995-04-29T00", "yesterday", "",
    "1995-04-29T00:00:00.000+0000\n", "١٩٩٥-04-29",
])
def test_parse_rejected_dates(text):
    with pytest.raises(ValueError):
        F.parse_iso_date_ms(text)


def test_age_units_and_negative_age():
    fields = [{"name": "b", "type": "string", "required": True,
               "transform": {"kind": "age", "unit": "years"}},
              {"name": "c", "type": "string", "required": True,
               "transform": {"kind": "age", "unit": "days"}}]
    now = utc_ms(2026, 11, 20)
    row = F.transform_record(fields, {"b": "1995-04-29T00:00:00.000+0000", "c": "2026-11-30T12:00Z"}, now)
    years = (now - utc_ms(1995, 4, 29)) / (365.25 * 86_400_000)
    assert row[0] == np.float32(years)
    assert row[1] == np.float32(-10.5)
    with pytest.raises(F.FeatureError, match="'b'"):
        F.transform_record(fields, {"b": "1995-02-30", "c": "2026-11-30"}, now)


# --- the conversion spec on the seed sample ------------------------------------------

def test_seed_sample_row_by_hand():
    fields = spec.fields()
    F.validate_fields(fields)
    names = F.feature_names(fields)
    now = utc_ms(2026, 11, 20)
    row = F.transform_record(fields, SEED_SAMPLE, now)
    assert row.dtype == np.float32 and len(row) == len(names) == 66
    v = dict(zip(names, row.tolist()))
    assert v["birthday_age_years"] == np.float32((now - utc_ms(1995, 4, 29)) / (365.25 * 86_400_000))
    assert v["createTime_age_days"] == np.float32((now - utc_ms(2020, 11, 2, 2, 51, 19)) / 86_400_000)
    hot = {n for n, x in v.items() if x == 1.0}
    assert {"appId=20000", "channel=1", "countryId=182", "languageId=20", "type=6", "stoneVersion=other",
            "platformType=2", f"deviceName#{F.fnv1a32('TECNO-BB4k') % 16}"} <= hot
    assert v["screenSize_width"] == 720 and v["screenSize_height"] == 1440
    assert sum(x for n, x in v.items() if "=" in n or "#" in n) == 8  # exactly one hot per one-hot field


def test_defaults_and_type_checks():
    fields = spec.fields()
    now = utc_ms(2026, 11, 20)
    req = {k: SEED_SAMPLE[k] for k in ("birthday", "createTime", "appId", "countryId", "platformType")}
    with_defaults = {**req, "userId": 0, "channel": 1, "languageId": "20", "type": 6,
                     "stoneVersion": "other", "screenSize": "0*0", "deviceName": ""}
    assert np.array_equal(F.transform_record(fields, req, now), F.transform_record(fields, with_defaults, now))
    assert np.array_equal(F.transform_record(fields, {**SEED_SAMPLE, "extra": [1]}, now),
                          F.transform_record(fields, SEED_SAMPLE, now))
    bad = [({k: v for k, v in SEED_SAMPLE.items() if k != "birthday"}, "birthday"),
           ({**SEED_SAMPLE, "countryId": "182"}, "countryId"),
           ({**SEED_SAMPLE, "languageId": 20}, "languageId"),
           ({**SEED_SAMPLE, "appId": None}, "appId"),
           ({**SEED_SAMPLE, "appId": True}, "appId"),
           ({**SEED_SAMPLE, "userId": math.nan}, "userId"),
           ({**SEED_SAMPLE, "userId": math.inf}, "userId"),
           ({**SEED_SAMPLE, "channel": [1]}, "channel"),
           ({**SEED_SAMPLE, "deviceName": {"a": 1}}, "deviceName")]
    for rec, field in bad:
        with pytest.raises(F.FeatureError) as e:
            F.transform_record(fields, rec, now)
        assert e.value.field == field


def test_batch_error_names_the_instance():
    fields = spec.fields()
    broken = {k: v for k, v in SEED_SAMPLE.items() if k != "createTime"}
    with pytest.raises(F.FeatureError, match=r"instance 1: field 'createTime'") as e:
        F.transform_records(fields, [SEED_SAMPLE, broken], 0)
    assert e.value.index == 1
    assert F.transform_records(fields, [], 0).shape == (0, 66)
