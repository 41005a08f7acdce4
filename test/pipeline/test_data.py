import numpy as np

from pipeline import data as D


def test_generation_is_deterministic(tmp_path):
    a = D.generate(1500, seed=3)
    b = D.generate(1500, seed=3)
    assert a == b
    h1 = D.write_csv(a, tmp_path / "a.csv")
    h2 = D.write_csv(b, tmp_path / "b.csv")
    assert h1 == h2 == D.file_hash(tmp_path / "a.csv")
    assert h1.startswith("sha256:") and len(h1) == 7 + 64
    assert D.generate(1500, seed=4) != a


def test_about_ten_percent_positives():
    for drift in (False, True):
        y = np.array([r["label"] for r in D.generate(6000, seed=11, drift=drift)])
        assert 0.08 <= y.mean() <= 0.12


def test_drift_changes_the_distribution():
    base = D.generate(4000, seed=5)
    drift = D.generate(4000, seed=5, drift=True)

    def share(rows, key, value):
        return np.mean([r.get(key) == value for r in rows])

    assert share(drift, "platformType", 1) - share(base, "platformType", 1) > 0.1
    assert share(drift, "stoneVersion", "v3") - share(base, "stoneVersion", "v3") > 0.1
    assert D.to_csv_bytes(base) != D.to_csv_bytes(drift)


def test_csv_round_trip_keeps_missing_fields(tmp_path):
    rows = D.generate(800, seed=2)
    D.write_csv(rows, tmp_path / "d.csv")
    back = D.read_csv(tmp_path / "d.csv")
    # deviceName "" cannot be told apart from missing, but the generator never emits ""
    assert back == rows
    assert any("channel" not in r for r in rows)  # some optional fields are missing
    assert all(isinstance(r["appId"], int) and isinstance(r.get("languageId", ""), str) for r in back)


def test_split_is_a_partition():
    tr, va, te = D.split_indices(1000, seed=1)
    allidx = np.concatenate([tr, va, te])
    assert sorted(allidx.tolist()) == list(range(1000))
    assert len(va) == len(te) == 150
    assert np.array_equal(D.split_indices(1000, seed=1)[2], te)
