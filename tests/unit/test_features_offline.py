"""Offline store and the point-in-time join, checked against a brute-force reference."""

from __future__ import annotations

import contextlib
import datetime as dt
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlray._private.validation import build
from mlray.errors import InvalidInput, NotFound
from mlray.features import FeatureRepo, OfflineStore, pit
from mlray.features.pit import asof_indices, encode_keys

# Near midnight UTC, so rows and TTL windows straddle date partitions.
BASE = dt.datetime(2026, 3, 1, 23, 59, 50, tzinfo=dt.UTC)
ZONES = [dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)),
         dt.timezone(dt.timedelta(hours=-8)), dt.timezone(dt.timedelta(hours=14))]


def _repo(ttl: float = 0, created: bool = False, extra_views: bool = False) -> FeatureRepo:
    source: dict[str, Any] = {"type": "push"}
    if created:
        source["created_timestamp_field"] = "created"
    views = [{"name": "stats", "entities": ["user"], "source": source, "ttl": ttl,
              "fields": [{"name": "uid", "dtype": "int64"}, {"name": "value", "dtype": "int64"}]}]
    if extra_views:
        views.append({"name": "pairs", "entities": ["user", "shop"], "source": {"type": "push"},
                      "fields": [{"name": "spend", "dtype": "float64", "range": {"min": 0}},
                                 {"name": "tag", "dtype": "string", "regex": "[a-z]+"}]})
    return build(FeatureRepo, entities=[
        {"name": "user", "join_keys": [{"name": "user_id"}]},
        {"name": "shop", "join_keys": [{"name": "shop", "dtype": "string"}]}],
        feature_views=views,
        on_demand_feature_views=[{
            "name": "derived", "function": "tests.unit.test_features_offline:double_value",
            "request": [{"name": "bonus", "dtype": "int64"}], "sources": ["stats:value"],
            "fields": [{"name": "doubled", "dtype": "int64"}]}])


def double_value(frame: pd.DataFrame) -> pd.DataFrame:
    """On-demand function used by the tests: 2 * value + bonus (null stays null)."""
    return pd.DataFrame({"doubled": frame["stats__value"] * 2 + frame["bonus"]})


def _ts(seconds: list[int], tz: dt.tzinfo) -> pa.Array:
    return pa.array([(BASE + dt.timedelta(seconds=s)).astimezone(tz) for s in seconds],
                    pa.timestamp("us", tz=str(tz) if tz is dt.UTC else _tzname(tz)))


def _tzname(tz: dt.tzinfo) -> str:
    off = tz.utcoffset(None)
    assert off is not None
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


# Reference: the DESIGN rule written as literally as possible.

def reference(entities: list[tuple[int | None, int]], feats: list[tuple[int, int, int, int]],
              ttl: int) -> list[set[int]]:
    """Per entity row, the uids acceptable as its match (empty set: no match).

    Feature rows are (key, event_s, created_s, uid). The winner is the greatest event time
    with t - ttl <= e <= t, then the greatest created time; rows equal on both are tied.
    """
    out = []
    for key, t in entities:
        cands = [f for f in feats if key is not None and f[0] == key and f[1] <= t
                 and (ttl == 0 or t - ttl <= f[1])]
        if not cands:
            out.append(set())
            continue
        best = max((f[1], f[2]) for f in cands)
        out.append({f[3] for f in cands if (f[1], f[2]) == best})
    return out


feature_rows = st.lists(st.tuples(st.integers(0, 3), st.integers(-20, 20), st.integers(0, 2)),
                        max_size=40)
entity_rows = st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 4)), st.integers(-25, 25)),
                       min_size=1, max_size=30)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feats=feature_rows, ents=entity_rows, ttl=st.sampled_from([0, 1, 3, 7, 40]),
       created=st.booleans(), ent_tz=st.sampled_from(ZONES), feat_tz=st.sampled_from(ZONES),
       nulls=st.sets(st.integers(0, 39)))
def test_pit_join_matches_brute_force(feats: list[tuple[int, int, int]],
                                      ents: list[tuple[int | None, int]], ttl: int,
                                      created: bool, ent_tz: dt.tzinfo, feat_tz: dt.tzinfo,
                                      nulls: set[int]) -> None:
    repo = _repo(ttl, created)
    rows = [(k, e, c if created else 0, uid) for uid, (k, e, c) in enumerate(feats)]
    with tempfile.TemporaryDirectory() as root:
        store = OfflineStore(root, repo, project="default")
        if rows:
            batch: dict[str, Any] = {
                "user_id": [r[0] for r in rows],
                "event_timestamp": _ts([r[1] for r in rows], feat_tz),
                "uid": [r[3] for r in rows],
                "value": [None if r[3] in nulls else r[3] * 10 for r in rows]}
            if created:
                batch["created"] = _ts([r[2] for r in rows], dt.UTC)
            half = len(rows) // 2  # two writes: two files per partition
            store.write("stats", pa.table(batch).slice(0, half))
            store.write("stats", pa.table(batch).slice(half))
        entity = pa.table({
            "user_id": pa.array([k for k, _ in ents], pa.int64()),
            "event_timestamp": _ts([t for _, t in ents], ent_tz),
            "row": list(range(len(ents))),
            "bonus": [1] * len(ents)})
        got = store.get_historical_features(entity, ["stats:uid", "stats:value",
                                                     "derived:doubled"])
    assert isinstance(got, pa.Table)
    assert got["row"].to_pylist() == list(range(len(ents)))  # order, duplicates kept
    assert got["event_timestamp"].equals(entity["event_timestamp"])  # passed through as given
    expected = reference(ents, rows, ttl)
    for uid, value, doubled, want in zip(got["uid"].to_pylist(), got["value"].to_pylist(),
                                         got["doubled"].to_pylist(), expected, strict=True):
        if not want:
            assert uid is None and value is None and doubled is None
        else:
            assert uid in want
            # the row is taken whole: a null value stays null, it is not filled from elsewhere
            assert value == (None if uid in nulls else uid * 10)
            assert doubled == (None if value is None else value * 2 + 1)


@settings(max_examples=300, deadline=None)
@given(feats=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10), st.integers(0, 2)),
                      max_size=50),
       ents=entity_rows, ttl=st.sampled_from([0, 1, 4]),
       scale=st.sampled_from([1, 1000, 10**9]), ranked=st.booleans())
def test_asof_indices_exact_tie_break(feats: list[tuple[int, int, int]],
                                      ents: list[tuple[int | None, int]], ttl: int, scale: int,
                                      ranked: bool) -> None:
    """Exact duplicates (same event and created time) go to the last one in table order,
    whether times pack with the keys (in steps of ``scale``) or are ranked first."""
    lk, rk = encode_keys([pa.array([k for k, _ in ents], pa.int64())],
                         [pa.array([k for k, _, _ in feats], pa.int64())])
    with mock.patch.object(pit, "_scaled_times", return_value=None) if ranked \
            else contextlib.nullcontext():
        idx = asof_indices(lk, np.array([t * scale for _, t in ents], np.int64), rk,
                           np.array([e * scale for _, e, _ in feats], np.int64),
                           np.array([c for _, _, c in feats], np.int64), ttl * scale)
    for (key, t), got in zip(ents, idx.tolist(), strict=True):
        cands = [i for i, (k, e, _) in enumerate(feats)
                 if key is not None and k == key and e <= t and (ttl == 0 or t - ttl <= e)]
        want = max(cands, key=lambda i: (feats[i][1], feats[i][2], i)) if cands else -1
        assert got == want


def test_times_centuries_apart_never_wrap() -> None:
    """Spans beyond an int64 of ns: nothing after t is taken, and ages do not wrap."""
    ns = [int(dt.datetime(y, 1, 1, tzinfo=dt.UTC).timestamp()) * 10**9
          for y in (1700, 1800, 2000, 2024, 2200)]
    zero = np.zeros(2, np.int64)
    right = np.array([ns[2], ns[3]], np.int64)
    assert asof_indices(zero[:1], np.array([ns[0]]), zero, right).tolist() == [-1]
    far = np.array([ns[0], ns[4]], np.int64)
    assert asof_indices(zero, np.array([ns[1], ns[4]]), zero, far).tolist() == [0, 1]
    year = 366 * 86_400 * 10**9
    assert asof_indices(zero, np.array([ns[1], ns[4]]), zero, far, ttl=year).tolist() == [-1, 1]


def test_times_that_do_not_pack_with_the_keys_are_ranked() -> None:
    """Keys times time steps beyond an int64: the join ranks the times first."""
    keys = np.array([0, 1, 2**40], np.int64)
    times = np.array([0, 2**30 + 1, 5], np.int64)  # 1-ns steps over 2**30: 2**70 > int64
    assert pit._scaled_times(times, times, 2**40 + 1) is None
    idx = asof_indices(keys, times + 1, keys, times)
    assert idx.tolist() == [0, 1, 2]


def test_ttl_edges_are_inclusive(tmp_path: Path) -> None:
    store = OfflineStore(str(tmp_path), _repo(ttl=10), project="default")
    store.write("stats", {"user_id": [1, 1], "event_timestamp": _ts([0, 5], dt.UTC),
                          "uid": [0, 1], "value": [0, 10]})
    entity = {"user_id": [1] * 6, "event_timestamp": _ts([-1, 0, 4, 10, 15, 16], dt.UTC)}
    got = store.get_historical_features(entity, ["stats:uid"])
    # before the first event; at it; between; 10 s after 0 (still in); 15 = 5 + ttl; past it
    assert got["uid"].to_pylist() == [None, 0, 0, 1, 1, None]


def test_fractional_ttl_keeps_a_row_exactly_one_ttl_old(tmp_path: Path) -> None:
    """ttl 1.001 s is 1,001,000,000 ns exactly (through a float it was 1,000,999,999 and
    the row at t - ttl fell out)."""
    store = OfflineStore(str(tmp_path), _repo(ttl=1.001), project="default")
    t = BASE + dt.timedelta(seconds=5)
    ns = pa.timestamp("ns", "UTC")
    store.write("stats", {"user_id": [1], "uid": [7], "value": [1], "event_timestamp":
                          pa.array([t - dt.timedelta(seconds=1, milliseconds=1)], ns)})
    entity = {"user_id": [1, 1], "event_timestamp": pa.array(
        [t, t + dt.timedelta(microseconds=1)], ns)}
    assert store.get_historical_features(entity, ["stats:uid"])["uid"].to_pylist() == [7, None]


def test_multi_key_views_full_names_and_pandas(tmp_path: Path) -> None:
    store = OfflineStore(str(tmp_path / "off"), _repo(extra_views=True), project="default")
    store.write("pairs", pd.DataFrame({
        "user_id": [1, 1, 2], "shop": ["a", "b", "a"],
        "event_timestamp": pd.to_datetime(["2026-03-01T10:00Z"] * 3),
        "spend": [1.5, 2.5, 3.5], "tag": ["x", "y", "z"]}))
    store.write("stats", {"user_id": [1], "event_timestamp": _ts([0], dt.UTC),
                          "uid": [7], "value": [70]})
    entity = pd.DataFrame({
        "user_id": [1, 1, 2, 2, 1],
        "shop": ["b", "a", "b", "a", None],
        "event_timestamp": pd.to_datetime(["2026-03-02T05:00+05:00"] * 5)})
    got = store.get_historical_features(entity, ["pairs:*", "stats:value"],
                                        full_feature_names=True, as_pandas=True)
    assert isinstance(got, pd.DataFrame)
    assert list(got.columns) == ["user_id", "shop", "event_timestamp", "pairs__spend",
                                 "pairs__tag", "stats__value"]
    plain = got.astype(object).where(got.notna(), None)
    assert plain["pairs__spend"].tolist() == [2.5, 1.5, None, 3.5, None]  # null key: no match
    assert plain["pairs__tag"].tolist() == ["y", "x", None, "z", None]
    assert plain["stats__value"].tolist() == [70, 70, None, None, 70]


def test_errors_are_clear(tmp_path: Path) -> None:
    store = OfflineStore(str(tmp_path), _repo(extra_views=True), project="default")
    naive = pa.table({"user_id": [1], "event_timestamp": pa.array([dt.datetime(2026, 1, 1)])})
    with pytest.raises(InvalidInput, match="no time zone") as info:
        store.get_historical_features(naive, ["stats:uid"])
    assert info.value.field == "entity_rows.event_timestamp"
    with pytest.raises(InvalidInput, match="missing join key column 'shop'"):
        store.get_historical_features({"user_id": [1], "event_timestamp": _ts([0], dt.UTC)},
                                      ["pairs:spend"])
    with pytest.raises(InvalidInput, match="user_id: expected int64"):
        store.get_historical_features({"user_id": ["x"], "event_timestamp": _ts([0], dt.UTC)},
                                      ["stats:uid"])
    with pytest.raises(InvalidInput, match="missing timestamp column 'ts'"):
        store.get_historical_features({"user_id": [1]}, ["stats:uid"], timestamp_field="ts")
    with pytest.raises(InvalidInput, match="rows have no timestamp"):
        store.get_historical_features(
            {"user_id": [1], "event_timestamp": pa.array([None], pa.timestamp("us", "UTC"))},
            ["stats:uid"])
    with pytest.raises(NotFound, match="no feature view 'nope'"):
        store.get_historical_features({"user_id": [1], "event_timestamp": _ts([0], dt.UTC)},
                                      ["nope:x"])
    with pytest.raises(InvalidInput, match="would be duplicated"):
        store.get_historical_features({"user_id": [1], "uid": [3],
                                       "event_timestamp": _ts([0], dt.UTC)}, ["stats:uid"])
    with pytest.raises(InvalidInput, match="needs request column 'bonus'"):
        store.get_historical_features({"user_id": [1], "event_timestamp": _ts([0], dt.UTC)},
                                      ["derived:doubled"])


def test_write_is_all_or_nothing(tmp_path: Path) -> None:
    store = OfflineStore(str(tmp_path), _repo(extra_views=True), project="default")
    good = {"user_id": [1, 2, 3], "shop": ["a", "b", "c"],
            "event_timestamp": _ts([0, 1, 2], dt.UTC), "spend": [1.0, 2.0, 3.0],
            "tag": ["x", "y", "z"]}
    for column, values, message in [
        ("spend", [1.0, -2.0, -3.0], r"spend: must be >= 0.0 \(rows \[1, 2\]\)"),
        ("tag", ["x", "Y", "z"], r"tag: must match '\[a-z\]\+' \(rows \[1\]\)"),
        ("user_id", ["1", "2", "3"], "user_id: expected int64, got string"),
        ("spend", [True, False, True], "spend: expected double, got bool"),
        ("event_timestamp", pa.array([dt.datetime(2026, 1, 1)] * 3), "no time zone"),
    ]:
        with pytest.raises(InvalidInput, match=message):
            store.write("pairs", {**good, column: values})
    assert store.read("pairs").num_rows == 0
    with pytest.raises(InvalidInput, match="missing feature column 'tag'"):
        store.write("pairs", {k: v for k, v in good.items() if k != "tag"})
    assert store.write("pairs", good) == 3
    assert store.read("pairs").num_rows == 3
    window = store.read("pairs", start=BASE + dt.timedelta(seconds=1),
                        end=BASE + dt.timedelta(seconds=2))
    assert window["user_id"].to_pylist() == [2]
    dates = sorted(p.name for p in (tmp_path / "default" / "features" / "pairs").iterdir())
    assert dates == ["date=2026-03-01"]


def test_parquet_source_is_read_in_place(tmp_path: Path) -> None:
    path = tmp_path / "raw.parquet"
    pq.write_table(pa.table({
        "customer_id": [1, 1, 2], "amount": [5.0, 6.0, 7.0],
        "event_timestamp": _ts([0, 10, 0], dt.UTC)}), path)
    repo = build(FeatureRepo, entities=[{"name": "c", "join_keys": [{"name": "customer_id"}]}],
                 feature_views=[{"name": "tx", "entities": ["c"],
                                 "source": {"type": "parquet", "path": str(path)},
                                 "fields": [{"name": "amount", "dtype": "float64"}]}])
    store = OfflineStore(str(tmp_path / "root"), repo, project="default")
    got = store.get_historical_features(
        {"customer_id": [1, 1, 2, 3], "event_timestamp": _ts([5, 10, 0, 0], ZONES[2])},
        ["tx:amount"])
    assert got["amount"].to_pylist() == [5.0, 6.0, 7.0, None]
    with pytest.raises(InvalidInput, match="single Parquet file"):
        store.write("tx", {"customer_id": [1], "event_timestamp": _ts([0], dt.UTC),
                           "amount": [1.0]})


def test_projects_keep_their_rows_apart(tmp_path: Path) -> None:
    """Two projects with a view of the same name over one root: each reads only its rows."""
    a = OfflineStore(str(tmp_path), _repo(), project="a")
    b = OfflineStore(str(tmp_path), _repo(), project="b")
    a.write("stats", {"user_id": [1], "event_timestamp": _ts([0], dt.UTC), "uid": [1],
                      "value": [10]})
    assert b.read("stats").num_rows == 0 and b.location("stats") != a.location("stats")
    b.write("stats", {"user_id": [1], "event_timestamp": _ts([0], dt.UTC), "uid": [2],
                      "value": [20]})
    assert a.read("stats")["value"].to_pylist() == [10]
    assert b.read("stats")["value"].to_pylist() == [20]
    with pytest.raises(ValueError, match="project"):
        OfflineStore(str(tmp_path), _repo(), project="../a")


def test_empty_store_and_empty_entity_rows(tmp_path: Path) -> None:
    store = OfflineStore(str(tmp_path), _repo(), project="default")
    got = store.get_historical_features({"user_id": [1, 2], "event_timestamp": _ts([0, 1], dt.UTC)},
                                        ["stats:*"])
    assert got["uid"].to_pylist() == [None, None] and got.num_columns == 4
    empty = pa.table({"user_id": pa.array([], pa.int64()),
                      "event_timestamp": pa.array([], pa.timestamp("us", "UTC"))})
    got = store.get_historical_features(empty, ["stats:value"])
    assert got.num_rows == 0 and got.column_names == ["user_id", "event_timestamp", "value"]


def test_matches_pandas_merge_asof(tmp_path: Path) -> None:
    """On data without ties, the join equals pandas.merge_asof(by=..., tolerance=ttl)."""
    rng = np.random.default_rng(3)
    n_feat, n_ent = 5_000, 2_000
    feats = pd.DataFrame({
        "user_id": rng.integers(0, 300, n_feat),
        "event_timestamp": pd.Timestamp("2026-03-01", tz="UTC")
        + pd.to_timedelta(rng.permutation(n_feat) * 7, unit="s"),
        "uid": np.arange(n_feat), "value": rng.integers(0, 100, n_feat)})
    ents = pd.DataFrame({
        "user_id": rng.integers(0, 320, n_ent),
        "event_timestamp": pd.Timestamp("2026-03-01", tz="UTC")
        + pd.to_timedelta(rng.integers(0, n_feat * 7, n_ent), unit="s")})
    store = OfflineStore(str(tmp_path), _repo(ttl=3600), project="default")
    store.write("stats", feats)
    got = store.get_historical_features(ents, ["stats:uid"], as_pandas=True)
    ref = pd.merge_asof(
        ents.reset_index().sort_values("event_timestamp"),
        feats.sort_values("event_timestamp")[["user_id", "event_timestamp", "uid"]],
        on="event_timestamp", by="user_id", tolerance=pd.Timedelta(seconds=3600),
        direction="backward").sort_values("index")
    assert got["uid"].astype("Int64").tolist() == ref["uid"].astype("Int64").tolist()
