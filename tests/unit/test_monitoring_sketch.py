"""Sketches of live traffic on the baseline bins, their merge and serialisation, windows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from mlray.errors import InvalidInput
from mlray.monitoring.baseline import Baseline, NumericProfile, profile_frame, profile_numeric
from mlray.monitoring.sketch import MAX_UNSEEN_NAMES, Recorder, Sketch, Sketcher, bucket_start
from mlray.monitoring.window import SketchWindow


@pytest.fixture
def train() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return pd.DataFrame({"x": rng.normal(size=5000), "y": rng.exponential(size=5000),
                         "c": rng.choice(["a", "b", "c"], size=5000, p=[0.5, 0.3, 0.2])})


@pytest.fixture
def baseline(train: pd.DataFrame) -> Baseline:
    preds = np.random.default_rng(2).random(5000)
    return profile_frame(train, numeric=["x", "y"], categorical=["c"], predictions=preds)


def _cols(n: int, seed: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(loc=shift, size=n), "y": rng.exponential(size=n),
            "c": rng.choice(["a", "b", "c", "d"], size=n)}


def test_training_data_reproduces_baseline_counts(train, baseline):
    sk = Sketcher(baseline).sketch({c: train[c].to_numpy() for c in train}, now=0.0)
    for name in ("x", "y"):
        assert sk.numeric[name].counts.tolist() == baseline.numeric[name].counts
        assert sk.numeric[name].below == sk.numeric[name].above == 0
        assert sk.numeric[name].mean == pytest.approx(baseline.numeric[name].mean)
        assert sk.numeric[name].std == pytest.approx(baseline.numeric[name].std)
    freq = baseline.categorical["c"].frequencies
    counts = sk.categorical["c"].counts
    assert (counts / counts.sum()).tolist() == pytest.approx(list(freq.values()))
    assert sk.categorical["c"].unseen == 0


def test_out_of_range_values_land_in_outer_bins(baseline):
    prof = baseline.numeric["x"]
    values = np.array([prof.min - 10, prof.min - 1, prof.max + 1, 0.0])
    sk = Sketcher(baseline).sketch({"x": values}, now=0.0).numeric["x"]
    assert sk.below == 2 and sk.above == 1
    assert sk.counts[0] >= 2 and sk.counts[-1] >= 1
    assert sk.counts.sum() == sk.values == 4


def test_nulls_mismatches_and_missing_columns(baseline):
    x = np.array([1.0, np.nan, np.inf, None, "oops", [1], 2, True], dtype=object)
    sk = Sketcher(baseline).sketch({"x": x}, now=0.0)
    num = sk.numeric["x"]
    assert (num.rows, num.nulls, num.mismatches, num.values) == (8, 3, 2, 3)
    assert num.counts.sum() == 3
    assert sk.rows == 8
    assert (sk.numeric["y"].rows, sk.numeric["y"].nulls) == (8, 8)  # absent column
    assert (sk.categorical["c"].rows, sk.categorical["c"].nulls) == (8, 8)


def test_float_column_with_nans_chunks(baseline):
    rng = np.random.default_rng(3)
    x = rng.normal(size=200_000)
    x[::7] = np.nan
    x[1::11] = -np.inf
    sk = Sketcher(baseline).sketch({"x": x}, now=0.0).numeric["x"]
    finite = x[np.isfinite(x)]
    inner = np.asarray(baseline.numeric["x"].edges[1:-1])
    want = np.bincount(np.searchsorted(inner, finite, side="right"), minlength=len(inner) + 1)
    assert sk.counts.tolist() == want.tolist()
    assert sk.nulls == len(x) - len(finite)
    assert sk.sum == pytest.approx(finite.sum())


def test_many_bins_use_searchsorted_path():
    rng = np.random.default_rng(4)
    prof = profile_numeric(rng.normal(size=20_000), bins=100)
    base = Baseline(rows=20_000, numeric={"x": prof})
    live = rng.normal(0.2, size=50_000)
    sk = Sketcher(base).sketch({"x": live}, now=0.0).numeric["x"]
    inner = np.asarray(prof.edges[1:-1])
    want = np.bincount(np.searchsorted(inner, live, side="right"), minlength=len(prof.counts))
    assert sk.counts.tolist() == want.tolist()


def test_integer_and_bool_columns(baseline):
    sk = Sketcher(baseline).sketch({"x": np.array([0, 1, 2]), "y": np.array([True, False, True])},
                                   now=0.0)
    assert sk.numeric["x"].values == 3 and sk.numeric["y"].values == 3
    assert sk.numeric["x"].mismatches == 0


def test_categorical_unseen_nulls_and_mismatches(baseline):
    c = np.array(["a", "b", "zz", None, np.nan, {"k": 1}, "zz", "yy"], dtype=object)
    cs = Sketcher(baseline).sketch({"c": c}, now=0.0).categorical["c"]
    assert (cs.rows, cs.nulls, cs.mismatches, cs.unseen) == (8, 2, 1, 3)
    assert cs.unseen_names == {"zz": 2, "yy": 1}
    assert cs.counts.sum() == 2 and cs.values == 5


def test_unseen_names_are_capped_but_total_exact(baseline):
    names = np.array([f"new{i}" for i in range(100)] + ["new0"] * 5, dtype=object)
    cs = Sketcher(baseline).sketch({"c": names}, now=0.0).categorical["c"]
    assert cs.unseen == 105
    assert len(cs.unseen_names) == MAX_UNSEEN_NAMES
    assert cs.unseen_names["new0"] == 6


def test_all_null_baseline_feature_has_no_bins():
    base = Baseline(rows=3, numeric={"x": profile_numeric(np.array([np.nan] * 3))})
    assert base.numeric["x"].edges == []
    sk = Sketcher(base).sketch({"x": np.array([1.0, np.nan])}, now=0.0).numeric["x"]
    assert len(sk.counts) == 0 and sk.values == 1 and sk.nulls == 1
    assert sk.below == sk.above == 0


def test_merge_equals_sketch_of_concatenation(baseline):
    sketcher = Sketcher(baseline)
    a, b = _cols(3000, 5), _cols(2000, 6, shift=1.0)
    pa, pb = np.random.default_rng(7).random(3000), np.random.default_rng(8).random(2000)
    merged = sketcher.sketch(a, pa, now=60.0) + sketcher.sketch(b, pb, now=125.0)
    whole = sketcher.sketch({k: np.concatenate([a[k], b[k]]) for k in a},
                            np.concatenate([pa, pb]), now=60.0)
    assert merged.rows == whole.rows == 5000
    assert (merged.start, merged.end) == (60.0, 180.0)
    for name in ("x", "y"):
        m, w = merged.numeric[name], whole.numeric[name]
        assert m.counts.tolist() == w.counts.tolist()
        assert (m.below, m.above, m.min, m.max) == (w.below, w.above, w.min, w.max)
        assert m.sum == pytest.approx(w.sum)
    assert merged.categorical["c"].to_dict() == whole.categorical["c"].to_dict()
    assert merged.predictions.counts.tolist() == whole.predictions.counts.tolist()


def test_merge_of_different_baselines_is_refused(baseline):
    other = Baseline(rows=1, numeric={"z": baseline.numeric["x"]})
    with pytest.raises(InvalidInput) as err:
        Sketcher(baseline).new(0.0) + Sketcher(other).new(0.0)
    assert err.value.field in {"x", "y", "z"}
    bins = Baseline(rows=1, numeric={"x": profile_numeric(np.arange(100.0), bins=4),
                                     "y": baseline.numeric["y"]},
                    categorical=baseline.categorical, predictions=baseline.predictions)
    with pytest.raises(InvalidInput, match="bins"):
        Sketcher(baseline).new(0.0) + Sketcher(bins).new(0.0)


def test_round_trip_through_json(baseline):
    sk = Sketcher(baseline).sketch(_cols(1000, 9), np.random.default_rng(1).random(1000),
                                   now=61.0)
    data = json.loads(json.dumps(sk.to_dict()))
    back = Sketch.from_dict(data)
    assert back.to_dict() == sk.to_dict()
    assert len(json.dumps(data)) < 3000  # small: ints per bin, not rows
    empty = Sketcher(baseline).new(0.0)
    assert Sketch.from_dict(json.loads(json.dumps(empty.to_dict()))).to_dict() == empty.to_dict()


def test_malformed_dicts_are_invalid_input(baseline):
    data = Sketcher(baseline).new(0.0).to_dict()
    with pytest.raises(InvalidInput):
        Sketch.from_dict({**data, "format": 99})
    with pytest.raises(InvalidInput):
        Sketch.from_dict({**data, "numeric": {"x": {"counts": [1]}}})


def test_bad_batches_name_the_field(baseline):
    sketcher = Sketcher(baseline)
    with pytest.raises(InvalidInput) as err:
        sketcher.sketch({"x": np.zeros(3), "y": np.zeros(4)})
    assert err.value.field == "y"
    with pytest.raises(InvalidInput) as err:
        sketcher.sketch({"x": np.zeros(3)}, predictions=np.zeros((3, 2)))
    assert err.value.field == "predictions"
    with pytest.raises(InvalidInput):
        Sketcher(baseline, bucket_s=0)


def test_predictions_column_vector_is_accepted(baseline):
    sk = Sketcher(baseline).sketch({"x": np.zeros(3)}, predictions=np.full((3, 1), 0.5))
    assert sk.predictions.values == 3


def test_recorder_buckets_by_time_and_drains(baseline):
    rec = Recorder(Sketcher(baseline, bucket_s=10.0))
    rec.record(_cols(10, 1), now=101.0)
    rec.record(_cols(5, 2), now=109.9)
    rec.record(_cols(7, 3), now=110.0)
    out = rec.drain()
    assert [(d["start"], d["rows"]) for d in out] == [(100.0, 15), (110.0, 7)]
    assert rec.drain() == []
    assert bucket_start(119.99, 10.0) == 110.0


def _window_with(baseline: Baseline, rows_at: list[tuple[float, int]]) -> SketchWindow:
    sketcher = Sketcher(baseline, bucket_s=60.0)
    win = SketchWindow(max_age_s=3600.0)
    for t, n in rows_at:
        win.add(sketcher.sketch(_cols(n, int(t)), now=t).to_dict(), now=t)
    return win


def test_window_by_time_and_by_count(baseline):
    win = _window_with(baseline, [(0.0, 10), (30.0, 5), (60.0, 20), (120.0, 40), (180.0, 80)])
    assert len(win.buckets) == 4  # 0 and 30 share a bucket
    assert win.by_time(60.0, now=200.0).rows == 80  # bucket 180 only
    assert win.by_time(150.0, now=200.0).rows == 140
    last = win.by_time(1000.0, now=200.0)
    assert last.rows == 155 and (last.start, last.end) == (0.0, 240.0)
    assert win.by_count(50).rows == 80
    assert win.by_count(81).rows == 120
    assert win.by_count(10**9).rows == 155


def test_empty_window_and_age_limit(baseline):
    win = SketchWindow(max_age_s=100.0)
    assert win.by_time(60.0, now=0.0) is None
    assert win.by_count(10) is None
    sketcher = Sketcher(baseline, bucket_s=60.0)
    assert win.add(sketcher.sketch(_cols(5, 1), now=0.0), now=1.0)
    assert not win.add(sketcher.sketch(_cols(5, 1), now=0.0), now=500.0)
    assert win.late == 1 and win.buckets == {}
    with pytest.raises(InvalidInput):
        SketchWindow(max_age_s=0)


def test_window_state_round_trip(baseline):
    win = _window_with(baseline, [(0.0, 10), (60.0, 20)])
    back = SketchWindow.from_dict(json.loads(json.dumps(win.to_dict())))
    assert back.by_count(100).to_dict() == win.by_count(100).to_dict()


def test_adding_to_window_does_not_alias_the_sketch(baseline):
    sk = Sketcher(baseline).sketch(_cols(10, 1), now=0.0)
    win = SketchWindow()
    win.add(sk, now=1.0)
    win.add(sk, now=1.0)
    assert sk.rows == 10 and win.by_count(1).rows == 20


def test_numeric_profile_without_min_max_uses_edges():
    prof = NumericProfile(edges=[0.0, 1.0, 2.0], counts=[1, 1], mean=None, std=None, min=None,
                          max=None, null_rate=0.0)
    sk = Sketcher(Baseline(rows=2, numeric={"x": prof})).sketch({"x": np.array([-1.0, 3.0])})
    assert (sk.numeric["x"].below, sk.numeric["x"].above) == (1, 1)
