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
    assert F.key_of(2**53 - 1, "f") == "9007199254740991"
    assert F.key_of(-(2**53 - 1), "f") == "-9007199254740991"
    for bad in [182.5, 2**53, 2.0**53, -(2**53), 1e21, 1e300, True]:
        with pytest.raises(F.FeatureError):
            F.key_of(bad, "f")


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
    assert F.transform_record(SCREEN, {"s": "999999*0720"}, 0).tolist() == [999999.0, 720.0]
    for bad in ["720x1440", "*1440", "720*", " 720*1440", "720*1440*2", "-1*5", "7.5*3", "", "1000000*1",
                "1*0000000", "٧٢٠*1440"]:
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
    # proleptic Gregorian: 0000 is a leap year (divisible by 400), 0100 is not
    ("0000-02-29", -62162121600000),
    ("0000-03-01", -62162035200000),
    ("0000-01-01T00:00+23:59", -62167219200000 - (23 * 60 + 59) * 60_000),
    ("0050-06-15T12:00:00Z", utc_ms(50, 6, 15, 12)),
    ("9999-12-31T23:59:59.999-23:59", 253402300799999 + (23 * 60 + 59) * 60_000),
])
def test_parse_accepted_dates(text, expected):
    assert F.parse_iso_date_ms(text) == expected


@pytest.mark.parametrize("text", [
    "1995-02-30T00:00:00.000+0000", "1995-13-01", "1995-00-10", "1995-04-32", "2021-02-29",
    "1900-02-29", "1995-04-29T24:00", "1995-04-29T23:60", "1995-04-29T23:59:60",
    "1995-4-29", "1995-04-29T00:00:00.0000000000Z", "1995-04-29T00:00:00+24:00",
    "1995-04-29Z", "1995-04-29t00:00", "1995-04-29T00:00:00+00", "1995-04-29T00", "yesterday", "",
    "1995-04-29T00:00:00.000+0000\n", "١٩٩٥-04-29",
    "1995-04-29+05:30", "1995-04-29-0800", "0000-02-30", "0100-02-29", "1995-04-29T00:00:00.Z",
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
    now = utc_ms(2026, 11, 20)
    with pytest.raises(F.FeatureError, match=r"instance 1: field 'createTime'") as e:
        F.transform_records(fields, [SEED_SAMPLE, broken], now)
    assert e.value.index == 1
    assert F.transform_records(fields, [], 0).shape == (0, 66)


# --- the contract's number, string and range rules -------------------------------

NUMERIC = [{"name": "x", "type": "number", "required": True, "transform": {"kind": "numeric"}}]


def test_numbers_are_float64_and_float32_bounded():
    assert F.transform_record(NUMERIC, {"x": 3.4028234663852886e38}, 0).tolist() == [3.4028234663852886e38]
    for bad in [3.4028235e38, 1e39, -1e39, 10**400, math.nan, -math.inf, True, False, "1"]:
        with pytest.raises(F.FeatureError) as e:
            F.transform_record(NUMERIC, {"x": bad}, 0)
        assert e.value.field == "x"
    # an int is taken as the float64 the wire would carry
    assert F.transform_record(NUMERIC, {"x": 2**53 + 1}, 0).tolist() == [float(2**53)]


def test_lone_surrogates_hash_as_replacement_characters():
    assert F.utf8("a\ud800b") == "a\ufffdb".encode()
    assert F.fnv1a32("\ud83d") == F.fnv1a32("\ufffd")
    assert F.utf8("\ud83d\ude00") == "😀".encode()  # a pair, as JavaScript strings hold it


def test_ranges_bound_the_column_inclusively():
    now = utc_ms(2026, 11, 20)
    fields = [
        {"name": "x", "type": "number", "required": True, "transform": {"kind": "numeric"},
         "range": {"min": -1, "max": 1}},
        {"name": "b", "type": "string", "required": True, "transform": {"kind": "age", "unit": "days"},
         "range": {"min": 0}},
        {"name": "s", "type": "string", "required": True, "transform": {"kind": "screen"},
         "range": {"max": 100}},
    ]
    F.validate_fields(fields)
    ok = {"x": 1, "b": "2026-11-20", "s": "100*0"}
    assert F.transform_record(fields, ok, now).tolist() == [1.0, 0.0, 100.0, 0.0]
    for field, value in [("x", 1.0000001), ("x", -2), ("b", "2026-11-20T00:00:00.001Z"), ("s", "0*101")]:
        with pytest.raises(F.FeatureError, match="outside the range") as e:
            F.transform_record(fields, {**ok, field: value}, now)
        assert e.value.field == field


def test_conversion_spec_refuses_a_createtime_in_year_9999():
    now = utc_ms(2026, 11, 20)
    with pytest.raises(F.FeatureError) as e:
        F.transform_record(spec.fields(), {**SEED_SAMPLE, "createTime": "9999-01-01T00:00:00.000+0000"}, now)
    assert e.value.field == "createTime"


def _field(**kw):
    return {"name": "f", "type": "number", "required": True, "transform": {"kind": "numeric"}, **kw}


@pytest.mark.parametrize("fields,message", [
    ([_field(range={"min": 2, "max": 1})], "range.min must not exceed"),
    ([_field(range={})], "min and/or max"),
    ([_field(range={"min": 0, "step": 1})], "min and/or max"),
    ([_field(range={"min": "0"})], "range.min must be a finite number"),
    ([_field(range={"max": True})], "range.max must be a finite number"),
    ([_field(range=None)], "min and/or max"),
    ([_field(transform={"kind": "vocabulary", "values": ["1"]}, range={"min": 0})], "only allowed on"),
    ([_field(transform=None, range={"min": 0})], "only allowed on"),
    ([_field(required=False, default=5, range={"max": 1})], "default is refused"),
    ([_field(required=False, default=1e39)], "default is refused"),
    ([_field(required=False)], "default must be"),
    ([_field(required=1)], "required must be true or false"),
    ([_field(name="constructor")], "JavaScript"),
    ([_field(transform={"kind": "vocabulary", "values": ["1", "1"]})], "must not repeat"),
    ([_field(type="string", required=False, default="1*", transform={"kind": "screen"})], "default is refused"),
    ([_field(type="string", required=False, default="1995-04-29Z", transform={"kind": "age", "unit": "days"})],
     "default is refused"),
    ([_field(), _field()], "declared twice"),
])
def test_validate_fields_refuses_what_the_server_refuses(fields, message):
    with pytest.raises(ValueError, match=message):
        F.validate_fields(fields)


def test_optional_field_without_transform_needs_no_default():
    fields = [{"name": "note", "type": "string", "required": False}]
    F.validate_fields(fields)
    assert F.transform_record(fields, {}, 0).tolist() == []
    with pytest.raises(F.FeatureError):
        F.transform_record(fields, {"note": 1}, 0)


def test_outcome_is_a_json_ready_verdict():
    fields = spec.fields()
    now = utc_ms(2026, 11, 20)
    good = F.outcome(fields, SEED_SAMPLE, now)
    assert good["ok"] is True and len(good["features"]) == 66
    assert F.outcome(fields, {**SEED_SAMPLE, "screenSize": "1*2*3"}, now) == {
        "ok": False, "field": "screenSize", "error": F.outcome(fields, {**SEED_SAMPLE, "screenSize": "1*2*3"},
                                                              now)["error"]}
