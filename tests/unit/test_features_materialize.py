"""Materialization offline → online (the plain engine), on SQLite and on a real Redis."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlray._private.validation import build
from mlray.errors import InvalidInput, NotFound
from mlray.features import (
    FeatureRepo,
    FeatureStatus,
    OfflineStore,
    OnlineStore,
    open_online_store,
)
from mlray.features.materialize import latest_rows, materialize, materialize_view
from mlray.features.online_redis import RedisOnlineStore
from mlray.features.service import Materialization

T0 = dt.datetime(2026, 3, 1, 23, 0, tzinfo=dt.UTC)  # windows straddle date partitions
NOW = T0 + dt.timedelta(days=30)
TS = pa.timestamp("us", "UTC")


def _at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def _repo(parquet_dir: Path) -> FeatureRepo:
    return build(FeatureRepo, entities=[
        {"name": "user", "join_keys": [{"name": "user_id"}]},
        {"name": "shop", "join_keys": [{"name": "shop", "dtype": "string"}]}],
        feature_views=[
            {"name": "stats", "entities": ["user"],
             "source": {"type": "push", "created_timestamp_field": "created"},
             "fields": [{"name": "clicks", "dtype": "int64"},
                        {"name": "tag", "dtype": "string"}]},
            {"name": "pair", "entities": ["user", "shop"], "source": {"type": "push"},
             "fields": [{"name": "spend", "dtype": "float64"}]},
            {"name": "files", "entities": ["user"],
             "source": {"type": "parquet", "path": str(parquet_dir)},
             "fields": [{"name": "score", "dtype": "float64"}]},
            {"name": "cold", "entities": ["user"], "source": {"type": "push"}, "online": False,
             "fields": [{"name": "x", "dtype": "int64"}]}])


@pytest.fixture
def online(state_url: str, redis_prefix: str) -> Iterator[OnlineStore]:
    """An empty online store on each backend; Redis keys are removed afterwards."""
    store = open_online_store(state_url.replace("state.db", "online.db"), project="default",
                              redis_prefix=redis_prefix)
    yield store
    if isinstance(store, RedisOnlineStore):
        store.drop_all()
    store.close()


@pytest.fixture
def repo(tmp_path: Path) -> FeatureRepo:
    return _repo(tmp_path / "files")


@pytest.fixture
def offline(tmp_path: Path, repo: FeatureRepo) -> OfflineStore:
    return OfflineStore(str(tmp_path / "offline"), repo, project="default")


def _stats(*rows: tuple[int, float, int, float | None]) -> pa.Table:
    """Rows of ``stats``: (user, event hour, clicks, created hour or None = T0)."""
    return pa.table({
        "user_id": [r[0] for r in rows],
        "event_timestamp": pa.array([_at(r[1]) for r in rows], TS),
        "created": pa.array([_at(r[3] if r[3] is not None else 0) for r in rows], TS),
        "clicks": [r[2] for r in rows],
        "tag": [f"t{r[2]}" for r in rows],
    })


def _clicks(online: OnlineStore, repo: FeatureRepo, *users: int) -> list[Any]:
    return online.read(repo.bind("stats"), list(users), ["clicks"], now=NOW).values["clicks"]


def test_latest_row_per_entity_in_the_window(offline: OfflineStore, online: OnlineStore,
                                             repo: FeatureRepo) -> None:
    offline.write("stats", _stats(
        (1, 1, 10, None), (1, 3, 30, None), (1, 2, 20, None),   # latest: hour 3
        (2, 5, 50, 1), (2, 5, 51, 2), (2, 5, 52, 0),            # tie: greatest created wins
        (3, 4, 40, None), (3, 9, 90, None),                     # hour 9 is outside [0, 6)
        (4, 8, 80, None)))                                      # only outside: untouched
    rows = materialize_view(offline, online, repo.bind("stats"), _at(0), _at(6))
    assert rows == 3
    assert _clicks(online, repo, 1, 2, 3, 4) == [30, 51, 40, None]
    read = online.read(repo.bind("stats"), [1, 4], ["clicks", "tag"], now=NOW)
    assert read.rows()[0] == {"clicks": 30, "tag": "t30"}
    assert read.status[1].tolist() == [FeatureStatus.NOT_FOUND] * 2
    assert read.event_ts[0] == np.datetime64("2026-03-02T02:00:00", "us")


def test_window_is_start_inclusive_end_exclusive(offline: OfflineStore, online: OnlineStore,
                                                 repo: FeatureRepo) -> None:
    offline.write("stats", _stats((1, 0, 1, None), (2, 6, 2, None), (3, 5.999, 3, None)))
    assert materialize_view(offline, online, repo.bind("stats"), _at(0), _at(6)) == 2
    assert _clicks(online, repo, 1, 2, 3) == [1, None, 3]
    # start None: from the first row.
    assert materialize_view(offline, online, repo.bind("stats"), None, _at(7)) == 3
    assert _clicks(online, repo, 2) == [2]


def test_rerun_is_idempotent_and_never_goes_back_in_time(
        offline: OfflineStore, online: OnlineStore, repo: FeatureRepo) -> None:
    bound = repo.bind("stats")
    offline.write("stats", _stats((1, 1, 10, None), (2, 2, 20, None)))
    assert materialize_view(offline, online, bound, _at(0), _at(24)) == 2
    before = online.read(bound, [1, 2], now=NOW)
    assert materialize_view(offline, online, bound, _at(0), _at(24)) == 2
    after = online.read(bound, [1, 2], now=NOW)
    assert after.rows() == before.rows() and (after.event_ts == before.event_ts).all()
    # A newer row pushed online is not replaced by an older window.
    online.write(bound, _stats((1, 30, 300, None)))
    materialize_view(offline, online, bound, _at(0), _at(24))
    assert _clicks(online, repo, 1, 2) == [300, 20]


def test_batches_and_progress(offline: OfflineStore, online: OnlineStore,
                              repo: FeatureRepo) -> None:
    offline.write("stats", _stats(*[(u, 1, u, None) for u in range(25)]))
    seen: list[tuple[str, int]] = []
    rows = materialize_view(offline, online, repo.bind("stats"), _at(0), _at(2), batch_rows=10,
                            progress=lambda view, n: seen.append((view, n)))
    assert rows == 25 and seen == [("stats", 10), ("stats", 10), ("stats", 5)]
    assert _clicks(online, repo, 0, 24) == [0, 24]
    with pytest.raises(InvalidInput, match="batch_rows"):
        materialize_view(offline, online, repo.bind("stats"), _at(0), _at(2), batch_rows=0)


def test_compound_keys_and_parquet_sources(offline: OfflineStore, online: OnlineStore,
                                           repo: FeatureRepo, tmp_path: Path) -> None:
    offline.write("pair", pa.table({
        "user_id": [1, 1, 1], "shop": ["a", "b", "a"],
        "event_timestamp": pa.array([_at(1), _at(1), _at(2)], TS), "spend": [1.0, 2.0, 3.0]}))
    assert materialize_view(offline, online, repo.bind("pair"), _at(0), _at(5)) == 2
    read = online.read(repo.bind("pair"), [(1, "a"), (1, "b"), (2, "a")], now=NOW)
    assert read.values["spend"] == [3.0, 2.0, None]
    # A view whose source is a user's Parquet file directory (not partitioned).
    (tmp_path / "files").mkdir()
    pq.write_table(pa.table({
        "user_id": [7, 7, 8], "event_timestamp": pa.array([_at(1), _at(2), _at(1)],
                                                          pa.timestamp("ms", "UTC")),
        "score": [0.1, 0.2, 0.8]}), tmp_path / "files" / "part-0.parquet")
    assert materialize_view(offline, online, repo.bind("files"), _at(0), _at(5)) == 2
    assert online.read(repo.bind("files"), [7, 8], now=NOW).values["score"] == [0.2, 0.8]


def test_materialize_records_runs_and_resumes_incrementally(
        offline: OfflineStore, online: OnlineStore, repo: FeatureRepo) -> None:
    records: dict[str, Materialization] = {}

    def record(run: Materialization) -> None:
        records[run.view] = run

    offline.write("stats", _stats((1, 1, 10, None), (2, 2, 20, None), (1, 30, 11, None)))
    runs = materialize(repo, offline, online, record=record, views=["stats"],
                       start=_at(0), end=_at(24))
    assert [(r.view, r.start, r.end, r.rows) for r in runs] == [("stats", _at(0), _at(24), 2)]
    assert records["stats"] == runs[0]
    # Incremental: starts where the last run ended; the hour-30 row is new.
    runs = materialize(repo, offline, online, record=record, previous=dict(records),
                       views=["stats"], end=_at(48), incremental=True)
    assert (runs[0].start, runs[0].end, runs[0].rows) == (_at(24), _at(48), 1)
    assert _clicks(online, repo, 1, 2) == [11, 20]
    # Nothing left to do: skipped, not recorded.
    before = dict(records)
    runs = materialize(repo, offline, online, record=record, previous=dict(records),
                       views=["stats"], end=_at(48), incremental=True)
    assert runs[0].rows == 0 and runs[0].start == runs[0].end == _at(48)
    assert records == before


def test_a_run_that_died_half_way_is_redone(offline: OfflineStore, online: OnlineStore,
                                            repo: FeatureRepo) -> None:
    offline.write("stats", _stats(*[(u, 1, u, None) for u in range(30)]))
    records: dict[str, Materialization] = {}

    def dies(view: str, rows: int) -> None:
        raise RuntimeError("worker lost")

    with pytest.raises(RuntimeError, match="worker lost"):
        materialize(repo, offline, online, record=lambda r: records.update({r.view: r}),
                    views=["stats"], start=_at(0), end=_at(2), batch_rows=10, progress=dies)
    assert records == {}  # nothing recorded: an incremental run starts over
    assert _clicks(online, repo, 0, 29) == [0, None]
    runs = materialize(repo, offline, online, record=lambda r: records.update({r.view: r}),
                       previous=records, views=["stats"], start=_at(0), end=_at(2),
                       incremental=True)
    assert runs[0].rows == 30 and records["stats"].end == _at(2)
    assert _clicks(online, repo, 0, 29) == [0, 29]


def test_default_views_are_those_served_online(offline: OfflineStore, online: OnlineStore,
                                               repo: FeatureRepo) -> None:
    offline.write("stats", _stats((1, 1, 10, None)))
    Path(offline.location("files")).mkdir()
    runs = materialize(repo, offline, online, start=_at(0), end=_at(2))
    assert [r.view for r in runs] == ["stats", "pair", "files"]
    # Nothing pushed to pair yet, and an empty directory: no rows, no error.
    assert [r.rows for r in runs] == [1, 0, 0]


@pytest.mark.parametrize("engine", ["local", "auto"])
def test_a_missing_parquet_source_is_an_error_not_zero_rows(
        offline: OfflineStore, online: OnlineStore, repo: FeatureRepo, engine: str) -> None:
    """A Parquet source that is not there (a wrong path, or a relative path read from
    another directory) once materialized 0 rows with exit 0."""
    with pytest.raises(NotFound, match=r"view 'files': its source .*files does not exist"):
        materialize(repo, offline, online, views=["files"], engine=engine, start=_at(0),
                    end=_at(2))
    with pytest.raises(NotFound, match="files does not exist"):
        offline.read("files")


def test_bad_input(offline: OfflineStore, online: OnlineStore, repo: FeatureRepo) -> None:
    with pytest.raises(InvalidInput, match="time zone") as info:
        materialize(repo, offline, online, start=dt.datetime(2026, 3, 1), end=_at(1))
    assert info.value.field == "start"
    with pytest.raises(InvalidInput, match="time zone"):
        materialize(repo, offline, online, start=_at(0), end=dt.datetime(2026, 3, 2))
    with pytest.raises(InvalidInput, match="after end"):
        materialize(repo, offline, online, start=_at(2), end=_at(1))
    with pytest.raises(NotFound, match="nope"):
        materialize(repo, offline, online, views=["nope"], start=_at(0), end=_at(1))
    with pytest.raises(InvalidInput, match="not served online"):
        materialize(repo, offline, online, views=["cold"], start=_at(0), end=_at(1))
    with pytest.raises(InvalidInput, match="engine"):
        materialize(repo, offline, online, engine="spark", start=_at(0), end=_at(1))


def test_latest_rows_drops_null_keys_and_keeps_table_order_on_full_ties(
        repo: FeatureRepo) -> None:
    bound = repo.bind("pair")
    table = pa.table({
        "user_id": pa.array([1, None, 1, 1], pa.int64()), "shop": ["a", "a", "a", "a"],
        "event_timestamp": pa.array([_at(1)] * 4, pa.timestamp("ns", "UTC")),
        "spend": [1.0, 2.0, 3.0, 4.0]})
    assert latest_rows(table, bound)["spend"].to_pylist() == [4.0]
    assert latest_rows(table.slice(0, 0), bound).num_rows == 0


def test_partition_of_a_key_does_not_depend_on_nulls_beside_it(tmp_path: Path) -> None:
    from mlray.features.materialize import _hash_part

    bound = _repo(tmp_path).bind("stats")
    ints = pa.table({"user_id": pa.array([1, 2], pa.int64())})
    with_null = pa.table({"user_id": pa.array([1, None], pa.int64())})
    assert _hash_part(ints, bound, 16)[0] == _hash_part(with_null, bound, 16)[0]
    pair = _repo(tmp_path).bind("pair")
    keys = pa.table({"user_id": [3, 3], "shop": pa.array(["a", None], pa.string())})
    alone = pa.table({"user_id": [3], "shop": ["a"]})
    assert _hash_part(keys, pair, 16)[0] == _hash_part(alone, pair, 16)[0]
