"""The online store contract; every test runs on SQLite and on a real Redis."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from mlray._private.validation import build
from mlray.errors import BackendUnavailable, ConfigError, InvalidInput, NotFound
from mlray.features import BoundView, FeatureRepo, FeatureStatus, OnlineStore, open_online_store
from mlray.features.online_redis import RedisOnlineStore
from mlray.features.rowcodec import fixed_layout

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
PRESENT, NOT_FOUND, OLD = (FeatureStatus.PRESENT, FeatureStatus.NOT_FOUND,
                           FeatureStatus.OUTSIDE_MAX_AGE)


@pytest.fixture
def online(state_url: str, redis_prefix: str) -> Iterator[OnlineStore]:
    """An empty online store on each backend (``backend`` fixture); Redis keys are removed."""
    url = state_url.replace("state.db", "online.db")
    store = open_online_store(url, project="default", redis_prefix=redis_prefix)
    yield store
    if isinstance(store, RedisOnlineStore):
        store.drop_all()
    store.close()


def _repo(ttl: str | float = "1h") -> FeatureRepo:
    return build(FeatureRepo, entities=[
        {"name": "user", "join_keys": [{"name": "user_id"}]},
        {"name": "shop", "join_keys": [{"name": "shop", "dtype": "string"}]}],
        feature_views=[
            {"name": "stats", "entities": ["user"], "source": {"type": "push"}, "ttl": ttl,
             "fields": [
                 {"name": "clicks", "dtype": "int64", "range": {"min": 0}},
                 {"name": "score", "dtype": "float64"},
                 {"name": "label", "dtype": "string", "allowed_values": ["a", "b"]},
                 {"name": "flag", "dtype": "bool"},
                 {"name": "blob", "dtype": "bytes"},
                 {"name": "emb", "dtype": "array", "items": "float64"},
                 {"name": "attrs", "dtype": "map", "items": "int64"}]},
            {"name": "pair", "entities": ["user", "shop"], "source": {"type": "push"},
             "fields": [{"name": "spend", "dtype": "float64"}]}])


def _rows(*rows: tuple[int, dt.datetime, int]) -> pa.Table:
    """Rows of ``stats`` with clicks set and the other fields derived from it."""
    return pa.table({
        "user_id": [r[0] for r in rows],
        "event_timestamp": pa.array([r[1] for r in rows], pa.timestamp("us", "UTC")),
        "clicks": [r[2] for r in rows],
        "score": [r[2] / 2 for r in rows],
        "label": ["a" if r[2] % 2 else "b" for r in rows],
        "flag": [r[2] > 3 for r in rows],
        "blob": [bytes([r[2]]) for r in rows],
        "emb": [[float(r[2]), 0.5] for r in rows],
        "attrs": pa.array([[("k", r[2])] for r in rows], pa.map_(pa.string(), pa.int64())),
    })


@pytest.fixture
def stats() -> BoundView:
    return _repo().bind("stats")


def test_round_trip_with_types_and_statuses(online: OnlineStore, stats: BoundView) -> None:
    assert online.write(stats, _rows((1, T0, 5), (2, T0, 2))) == 2
    read = online.read(stats, [2, 1, 3], now=T0)
    assert read.features == stats.view.feature_names
    assert read.rows()[1] == {"clicks": 5, "score": 2.5, "label": "a", "flag": True,
                              "blob": b"\x05", "emb": [5.0, 0.5], "attrs": {"k": 5}}
    assert read.values["clicks"] == [2, 5, None]
    assert read.status.tolist() == [[PRESENT] * 7, [PRESENT] * 7, [NOT_FOUND] * 7]
    assert read.event_ts[0] == np.datetime64("2026-03-01T12:00:00", "us")
    assert np.isnat(read.event_ts[2])


def test_features_come_in_the_order_asked(online: OnlineStore, stats: BoundView) -> None:
    online.write(stats, _rows((1, T0, 4)))
    read = online.read(stats, [1], ["flag", "clicks"], now=T0)
    assert read.features == ["flag", "clicks"] and read.rows() == [{"flag": True, "clicks": 4}]
    assert read.statuses("clicks") == [PRESENT]
    with pytest.raises(NotFound, match="has no feature 'nope'") as info:
        online.read(stats, [1], ["clicks", "nope"])
    assert info.value.field == "features[1]"


def test_writes_never_go_back_in_time(online: OnlineStore, stats: BoundView) -> None:
    later = T0 + dt.timedelta(minutes=5)
    assert online.write(stats, _rows((1, later, 7))) == 1
    assert online.write(stats, _rows((1, T0, 1))) == 0  # older: skipped
    assert online.read(stats, [1], ["clicks"], now=later).values["clicks"] == [7]
    assert online.write(stats, _rows((1, later, 8))) == 1  # equal time: the new write wins
    # within one batch the latest event wins, whatever the order
    assert online.write(stats, _rows((2, later, 3), (2, T0, 9), (1, T0, 9))) == 1
    read = online.read(stats, [1, 2], ["clicks"], now=later)
    assert read.values["clicks"] == [8, 3]


def test_concurrent_writers_keep_the_newest(online: OnlineStore, stats: BoundView) -> None:
    def writer(offsets: list[int]) -> None:
        for s in offsets:
            online.write(stats, _rows((1, T0 + dt.timedelta(seconds=s), s)))

    threads = [threading.Thread(target=writer, args=(list(range(i, 60, 3)),)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert online.read(stats, [1], ["clicks"], now=T0).values["clicks"] == [59]


def test_ttl_applies_at_read(online: OnlineStore, stats: BoundView) -> None:
    online.write(stats, _rows((1, T0, 5)))
    at_edge = online.read(stats, [1], ["clicks"], now=T0 + dt.timedelta(hours=1))
    assert at_edge.statuses("clicks") == [PRESENT]  # exactly ttl old: still served
    past = online.read(stats, [1, 2], ["clicks", "score"],
                       now=T0 + dt.timedelta(hours=1, microseconds=1))
    assert past.status.tolist() == [[OLD, OLD], [NOT_FOUND, NOT_FOUND]]
    assert past.values["clicks"] == [None, None]
    assert past.event_ts[0] == np.datetime64("2026-03-01T12:00:00", "us")


def test_fractional_ttl_edge_is_present(online: OnlineStore) -> None:
    """ttl 1.001 s: a row exactly that old is served (a float once made the TTL 1 µs short)."""
    view = _repo(ttl=1.001).bind("stats")
    online.write(view, _rows((1, T0, 5)))
    edge = T0 + dt.timedelta(seconds=1, milliseconds=1)
    assert online.read(view, [1], ["clicks"], now=edge).statuses("clicks") == [PRESENT]
    late = online.read(view, [1], ["clicks"], now=edge + dt.timedelta(microseconds=1))
    assert late.statuses("clicks") == [OLD]


def test_ttl_zero_never_expires(online: OnlineStore) -> None:
    forever = _repo(ttl=0).bind("stats")
    online.write(forever, _rows((1, T0, 5)))
    read = online.read(forever, [1], ["clicks"], now=T0 + dt.timedelta(days=3650))
    assert read.statuses("clicks") == [PRESENT]


def test_field_added_later_is_not_found(online: OnlineStore, stats: BoundView) -> None:
    old = build(FeatureRepo, entities=[{"name": "user", "join_keys": [{"name": "user_id"}]}],
                feature_views=[{"name": "stats", "entities": ["user"], "source": {"type": "push"},
                                "fields": [{"name": "clicks", "dtype": "int64"}]}]).bind("stats")
    online.write(old, {"user_id": [1], "event_timestamp": pa.array([T0]), "clicks": [3]})
    read = online.read(stats, [1], ["clicks", "score"], now=T0)
    assert read.status.tolist() == [[PRESENT, NOT_FOUND]]


def test_multi_part_keys_and_key_forms(online: OnlineStore) -> None:
    pair = _repo().bind("pair")
    online.write(pair, {"user_id": [1, 1], "shop": ["a", "b"],
                        "event_timestamp": pa.array([T0, T0]), "spend": [1.5, None]})
    read = online.read(pair, [(1, "b"), {"shop": "a", "user_id": 1}, [1, "c"]], now=T0)
    assert read.values["spend"] == [None, 1.5, None]
    assert read.status.tolist() == [[PRESENT], [PRESENT], [NOT_FOUND]]  # a stored null
    assert online.read(pair, [], now=T0).status.shape == (0, 1)


@pytest.mark.parametrize(("keys", "message"), [
    (["1"], r"entity_keys\[0\].user_id: expected int64, got str '1'"),
    ([1, True], r"entity_keys\[1\].user_id: expected int64, got bool"),
    ([1.0], "expected int64, got float"),
    ([(1, 2)], "keyed by"),
    ([2**64], "does not fit in int64"),
])
def test_wrong_key_types_are_refused(online: OnlineStore, stats: BoundView, keys: list[Any],
                                     message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        online.read(stats, keys)


def test_bad_batches_write_nothing(online: OnlineStore, stats: BoundView) -> None:
    bad_range = _rows((1, T0, 1), (2, T0, 2)).set_column(
        2, "clicks", pa.array([1, -1], pa.int64()))
    with pytest.raises(InvalidInput, match=r"clicks: must be >= 0.0 \(rows \[1\]\)"):
        online.write(stats, bad_range)
    bad_label = _rows((1, T0, 1)).set_column(4, "label", pa.array(["z"]))
    with pytest.raises(InvalidInput, match="must be one of"):
        online.write(stats, bad_label)
    naive = _rows((1, T0, 1)).set_column(1, "event_timestamp", pa.array([dt.datetime(2026, 1, 1)]))
    with pytest.raises(InvalidInput, match="no time zone"):
        online.write(stats, naive)
    with pytest.raises(InvalidInput, match="missing feature column 'attrs'"):
        online.write(stats, _rows((1, T0, 1)).drop_columns(["attrs"]))
    null_key = _rows((1, T0, 1)).set_column(0, "user_id", pa.array([None], pa.int64()))
    with pytest.raises(InvalidInput, match="join key 'user_id' has nulls"):
        online.write(stats, null_key)
    assert online.read(stats, [1, 2], now=T0).status.max() == NOT_FOUND


def test_many_entities_pipelined(online: OnlineStore, stats: BoundView) -> None:
    n = 2_500
    rows = _rows(*[(i, T0, i % 7) for i in range(n)])
    assert online.write(stats, rows) == n
    read = online.read(stats, list(range(n + 10)), ["clicks"], now=T0)
    assert read.values["clicks"][:n] == [i % 7 for i in range(n)]
    assert (read.status[n:] == NOT_FOUND).all() and (read.status[:n] == PRESENT).all()


def test_drop_view(online: OnlineStore, stats: BoundView) -> None:
    online.write(stats, _rows((1, T0, 1)))
    online.drop_view("stats")
    assert online.read(stats, [1], now=T0).statuses("clicks") == [NOT_FOUND]


def test_projects_never_share_rows(online: OnlineStore, stats: BoundView,
                                   redis_prefix: str) -> None:
    """Project b's store, on the same backend and prefix, sees none of project a's rows of a
    view of the same name, and dropping its view leaves a's rows."""
    other = open_online_store(online.url, project="other", redis_prefix=redis_prefix)
    try:
        online.write(stats, _rows((1, T0, 5)))
        assert other.read(stats, [1], now=T0).statuses("clicks") == [NOT_FOUND]
        other.write(stats, _rows((1, T0, 7)))
        other.drop_view("stats")
        assert online.read(stats, [1], now=T0).values["clicks"] == [5]
    finally:
        if isinstance(other, RedisOnlineStore):
            other.drop_all()
        other.close()
    assert online.space("stats") != other.space("stats")


def test_unknown_scheme_and_unreachable_redis() -> None:
    with pytest.raises(ConfigError, match="unknown online store scheme 'mysql'"):
        open_online_store("mysql://x", project="default")
    with pytest.raises(BackendUnavailable, match="Redis online store"):
        RedisOnlineStore("redis://127.0.0.1:1/0", project="default", timeout_s=0.5)


def test_rows_in_the_older_map_layout_and_expired_rows_mix(online: OnlineStore,
                                                           stats: BoundView) -> None:
    import msgpack

    online.write(stats, _rows((1, T0, 5), (3, T0 - dt.timedelta(hours=2), 4)))
    key = msgpack.packb([2])
    space = online.space("stats")
    online._put(space, [(key, 0, msgpack.packb({"clicks": 9, "score": 1.5}))])
    online._put(space, [(key, int(T0.timestamp() * 1e6), msgpack.packb({"clicks": 9}))])
    read = online.read(stats, [1, 2, 3, 4], ["score", "clicks"], now=T0)
    assert read.values["clicks"] == [5, 9, None, None]
    assert read.values["score"] == [2.5, None, None, None]
    assert read.status.tolist() == [[PRESENT, PRESENT], [NOT_FOUND, PRESENT],
                                    [OLD, OLD], [NOT_FOUND, NOT_FOUND]]
    assert np.isnat(read.event_ts).tolist() == [False, False, False, True]


def _numeric(*fields: tuple[str, str], ttl: str = "1h") -> BoundView:
    """A view of only fixed-width fields (stored in the fixed layout)."""
    return build(FeatureRepo, entities=[{"name": "user", "join_keys": [{"name": "user_id"}]}],
                 feature_views=[{"name": "nums", "entities": ["user"], "ttl": ttl,
                                 "source": {"type": "push"},
                                 "fields": [{"name": n, "dtype": d} for n, d in fields]}],
                 ).bind("nums")


def test_numeric_views_keep_nulls_nan_and_extremes(online: OnlineStore) -> None:
    nums = _numeric(("n", "int64"), ("x", "float64"), ("ok", "bool"))
    assert fixed_layout(nums) is not None
    online.write(nums, {"user_id": [1, 2, 3], "event_timestamp": pa.array([T0] * 3),
                        "n": [-(2**63), 2**63 - 1, None],
                        "x": [float("nan"), float("-inf"), None], "ok": [True, None, False]})
    read = online.read(nums, [3, 1, 9, 2], ["ok", "x", "n"], now=T0)
    assert read.values["n"] == [None, -(2**63), None, 2**63 - 1]
    assert read.values["ok"] == [False, True, None, None]
    assert np.isnan(read.values["x"][1]) and read.values["x"][0] is None
    assert read.values["x"][3] == float("-inf")
    assert read.status.tolist() == [[PRESENT] * 3, [PRESENT] * 3, [NOT_FOUND] * 3,
                                    [PRESENT] * 3]


def test_numeric_rows_under_other_layouts_are_read_by_name(online: OnlineStore) -> None:
    import msgpack

    before = _numeric(("a", "float64"), ("b", "int64"))
    now = _numeric(("a", "float64"), ("b", "int64"), ("c", "bool"))
    online.write(before, {"user_id": [1], "event_timestamp": pa.array([T0]),
                          "a": [1.5], "b": [7]})
    online.write(now, {"user_id": [2, 5], "event_timestamp": pa.array(
        [T0, T0 - dt.timedelta(hours=2)]), "a": [2.5, 9.0], "b": [8, 9], "c": [True, True]})
    at = int(T0.timestamp() * 1e6)
    online._put(online.space("nums"), [
        (msgpack.packb([3]), at, msgpack.packb([["b", "a"], [4, "x"]])),
        (msgpack.packb([4]), at, msgpack.packb({"c": False})),
        (msgpack.packb([7]), at, msgpack.packb({"a": 3, "b": float("nan"), "c": 1.5}))])
    read = online.read(now, [1, 2, 3, 4, 5, 6, 7], now=T0)
    assert read.values == {"a": [1.5, 2.5, None, None, None, None, 3.0],
                           "b": [7, 8, 4, None, None, None, None],
                           "c": [None, True, None, False, None, None, None]}
    assert read.status.tolist() == [
        [PRESENT, PRESENT, NOT_FOUND],  # written before c existed
        [PRESENT] * 3,
        [NOT_FOUND, PRESENT, NOT_FOUND],  # a string where a float belongs is not served
        [NOT_FOUND, NOT_FOUND, PRESENT],  # the older map layout
        [OLD] * 3, [NOT_FOUND] * 3,
        [PRESENT, NOT_FOUND, NOT_FOUND]]  # floats are not served as int or bool


def test_numeric_rows_of_other_lengths_adding_up_to_whole_rows(online: OnlineStore) -> None:
    """Values whose lengths sum to a multiple of the row size are still told apart."""
    import msgpack

    nums = _numeric(("a", "float64"))
    layout = fixed_layout(nums)
    assert layout is not None
    at = int(T0.timestamp() * 1e6)

    def padded(size: int) -> bytes:  # a map-layout payload of exactly ``size`` bytes
        for pad in range(size):
            payload = msgpack.packb({"a": 0.25, "z": "x" * pad})
            if len(payload) == size:
                return payload
        raise AssertionError(size)

    payload = layout.size - 8
    online._put(online.space("nums"), [(msgpack.packb([1]), at, padded(payload - 3)),
                                       (msgpack.packb([2]), at, padded(payload + 3))])
    online.write(nums, {"user_id": [3], "event_timestamp": pa.array([T0]), "a": [0.5]})
    read = online.read(nums, [1, 2, 3], now=T0)
    assert read.values["a"] == [0.25, 0.25, 0.5]
    assert read.status.tolist() == [[PRESENT]] * 3


def test_reads_larger_than_one_command(online: OnlineStore, monkeypatch: pytest.MonkeyPatch,
                                       ) -> None:
    import mlray.features.online_redis as online_redis

    monkeypatch.setattr(online_redis, "_READ_BATCH", 7)
    nums = _numeric(("a", "float64"))
    keys = [1, 10**3, 10**6, 10**12, 2, -5] * 4  # keys of several encoded lengths
    online.write(nums, {"user_id": keys[:6], "event_timestamp": pa.array([T0] * 6),
                        "a": [float(k) for k in keys[:6]]})
    read = online.read_many([(nums, keys, None), (nums, [10**6, 99], None)], now=T0)
    assert read[0].values["a"] == [float(k) for k in keys]
    assert read[1].values["a"] == [1e6, None]
