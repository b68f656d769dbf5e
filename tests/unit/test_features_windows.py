"""Sliding windows against a brute-force reference: out of order, duplicates, expiry."""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlray._private.validation import build
from mlray.errors import InvalidInput
from mlray.features import FeatureView
from mlray.features.definitions import Aggregation
from mlray.features.windows import Outcome, WindowStore

S = 10**6  # microseconds per second
WINDOWS = {"10s": 10 * S, "1m": 60 * S}
LATENESS = 15 * S
AGGS = [build(Aggregation, column="x", function=f, window=w, name=f"{f}_{w}")
        for w in WINDOWS for f in ("sum", "avg", "min", "max", "count", "std")]


def _reference(accepted: list[tuple[int, float]], newest: int) -> dict[str, object]:
    out: dict[str, object] = {}
    for w, length in WINDOWS.items():
        xs = [v for t, v in accepted if newest - length < t <= newest]
        n = len(xs)
        exact = sum((Fraction(v) for v in xs), Fraction(0))
        sq = sum((Fraction(v) ** 2 for v in xs), Fraction(0))
        out[f"count_{w}"] = n
        out[f"sum_{w}"] = float(exact)
        out[f"avg_{w}"] = float(exact / n) if n else None
        out[f"min_{w}"] = min(xs) if xs else None
        out[f"max_{w}"] = max(xs) if xs else None
        out[f"std_{w}"] = math.sqrt(float(sq / n - (exact / n) ** 2)) if n else None
    return out


values = st.one_of(st.integers(-50, 50).map(float),
                   st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False),
                   st.sampled_from([0.1, 0.2, 0.3, 1e-300, -1e15, 1e15 + 0.5]))
events = st.lists(st.tuples(st.integers(0, 400), st.integers(0, 30), values),
                  min_size=1, max_size=120)


@settings(max_examples=150, deadline=None)
@given(events=events, data=st.data())
def test_windows_match_brute_force(events: list[tuple[int, int, float]],
                                   data: st.DataObject) -> None:
    """Events walk forward in time with jitter (some beyond the lateness bound), ids
    repeat (redeliveries), and every step is checked against the reference."""
    store = WindowStore(AGGS, allowed_lateness=dt.timedelta(seconds=15))
    seen: dict[str, tuple[int, float]] = {}
    accepted: list[tuple[int, float]] = []
    newest: int | None = None
    clock = 0
    for step, (advance, jitter, value) in enumerate(events):
        clock += advance * S // 10
        if data.draw(st.booleans()) and seen:
            event_id = data.draw(st.sampled_from(sorted(seen)))  # a redelivery
            ts, value = seen[event_id]
        else:
            event_id, ts = f"e{step}", clock - jitter * S
        outcome = store.add("k", ts, event_id, store.check_values([value]))
        if event_id in seen:  # counted before: a no-op (late once its id has aged out)
            late = newest is not None and ts < newest - LATENESS
            assert outcome == Outcome.DUPLICATE or (late and outcome == Outcome.LATE)
        elif newest is not None and ts < newest - LATENESS:
            assert outcome == Outcome.LATE
        else:
            assert outcome == Outcome.ADDED
            seen[event_id] = (ts, value)
            accepted.append((ts, value))
            newest = ts if newest is None else max(newest, ts)
        if newest is not None:
            assert store.newest("k") == newest
            assert store.values("k") == _reference(accepted, newest)
    # A restart from the snapshot gives the same values and still knows the ids.
    again = WindowStore(AGGS, allowed_lateness=dt.timedelta(seconds=15))
    again.restore("k", store.snapshot("k"))
    assert again.values("k") == store.values("k")
    for event_id, (ts, value) in seen.items():
        assert again.add("k", ts, event_id, [value]) in (Outcome.DUPLICATE, Outcome.LATE)
    assert again.values("k") == store.values("k")


def test_integer_sums_min_max_and_entities_apart() -> None:
    view = build(FeatureView, name="v", entities=["e"], source={
        "type": "stream", "stream": "s", "allowed_lateness": "1m"},
        aggregations=[{"column": "n", "function": "sum", "window": "1h"},
                      {"column": "n", "function": "max", "window": "1h"},
                      {"function": "count", "window": "5m"}],
        fields=[{"name": "n_sum_1h", "dtype": "int64"}, {"name": "n_max_1h", "dtype": "int64"},
                {"name": "event_count_5m", "dtype": "int64"}])
    store = WindowStore.for_view(view)
    big = 2**62
    assert store.add(1, 0, "a", store.check_values([big])) == Outcome.ADDED
    assert store.add(1, 10 * S, "b", store.check_values([big])) == Outcome.ADDED
    assert store.add(2, 10 * S, "a", store.check_values([3])) == Outcome.ADDED
    assert store.values(1) == {"n_sum_1h": 2 * big, "n_max_1h": big, "event_count_5m": 2}
    assert store.values(2) == {"n_sum_1h": 3, "n_max_1h": 3, "event_count_5m": 1}
    store.add(1, 400 * S, "c", [1])  # the 5m window drops a and b, the hour keeps them
    assert store.values(1) == {"n_sum_1h": 2 * big + 1, "n_max_1h": big, "event_count_5m": 1}
    assert store.values(99) == {"n_sum_1h": None, "n_max_1h": None, "event_count_5m": 0}
    with pytest.raises(InvalidInput, match="expected an integer"):
        store.check_values([1.5])
    with pytest.raises(InvalidInput, match="expected a number"):
        store.check_values(["7"])


def test_float_inputs_must_be_finite() -> None:
    store = WindowStore(AGGS)
    for bad in (math.inf, math.nan, 1e200, None, True):
        with pytest.raises(InvalidInput):
            store.check_values([bad])


def test_long_streams_stay_bounded_and_exact() -> None:
    store = WindowStore(AGGS)
    for i in range(5000):
        store.add("k", i * S, f"e{i}", [0.1])
    got = store.values("k")
    assert got["count_1m"] == 60 and got["sum_1m"] == float(Fraction(0.1) * 60)
    assert got["std_1m"] == 0.0 and got["min_1m"] == got["max_1m"] == 0.1
    snap = store.snapshot("k")
    assert snap is not None and len(snap) < 5000


@pytest.mark.parametrize(("spec", "message"), [
    ({"function": "sum", "window": "1h"}, "sum needs a column"),
    ({"column": "x", "function": "sum", "window": 0}, "positive"),
    ({"column": "x", "function": "median", "window": "1h"}, "function"),
])
def test_aggregation_validation(spec: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        build(Aggregation, **spec)


def test_view_aggregation_checks() -> None:
    base = {"name": "v", "entities": ["e"], "source": {"type": "stream", "stream": "s"},
            "fields": [{"name": "x_avg_1h", "dtype": "int64"}]}
    with pytest.raises(InvalidInput, match="avg writes float64"):
        build(FeatureView, **base, aggregations=[
            {"column": "x", "function": "avg", "window": "1h"}])
    with pytest.raises(InvalidInput, match="names no field"):
        build(FeatureView, **base, aggregations=[
            {"column": "x", "function": "sum", "window": "2h"}])
    with pytest.raises(InvalidInput, match="need a stream source"):
        build(FeatureView, **{**base, "source": {"type": "push"}}, aggregations=[
            {"column": "x", "function": "sum", "window": "1h", "name": "x_avg_1h"}])
    assert build(Aggregation, column="amount", function="sum", window="24h").output == \
        "amount_sum_1d"
