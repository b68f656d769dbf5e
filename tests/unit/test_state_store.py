"""The StateStore contract; every test runs on SQLite and on a real Redis."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

from mlray.errors import BackendUnavailable, ConfigError, Conflict
from mlray.storage import StateStore, open_state_store
from mlray.storage.base import AuditEntry, Delete, Put
from mlray.storage.sqlite import SQLiteStateStore


def _audit(action: str, project: str = "p") -> AuditEntry:
    return AuditEntry(user="alice", project=project, action=action, target="c/k",
                      before={"x": 1}, after={"x": 2})


def test_put_get_bumps_version(store: StateStore) -> None:
    assert store.get("c", "k") is None
    first = store.put("c", "k", {"a": 1, "nested": {"b": [1, 2]}, "empty": []})
    assert first.version == 1
    second = store.put("c", "k", {"a": 2})
    assert second.version == 2
    got = store.get("c", "k")
    assert got is not None and got.version == 2 and got.data == {"a": 2}


def test_data_round_trips_exactly(store: StateStore) -> None:
    data = {"i": 2**53, "f": 0.1, "s": "ü✓", "b": True, "n": None, "l": [], "d": {}}
    store.put("c", "k", data)
    got = store.get("c", "k")
    assert got is not None and got.data == data


def test_compare_and_set(store: StateStore) -> None:
    store.put("c", "k", {"a": 1}, expected_version=0)
    with pytest.raises(Conflict, match="is at version 1, expected version 0"):
        store.put("c", "k", {"a": 2}, expected_version=0)
    with pytest.raises(Conflict, match="expected version 5"):
        store.put("c", "k", {"a": 2}, expected_version=5)
    assert store.put("c", "k", {"a": 3}, expected_version=1).version == 2
    with pytest.raises(Conflict, match="does not exist"):
        store.put("c", "other", {"a": 1}, expected_version=1)


def test_apply_is_all_or_nothing(store: StateStore) -> None:
    store.put("c", "a", {"v": 1})
    with pytest.raises(Conflict):
        store.apply([Put(collection="c", key="b", data={"v": 1}),
                     Put(collection="c", key="a", data={"v": 2}, expected_version=7)],
                    _audit("batch"))
    assert store.get("c", "b") is None
    a = store.get("c", "a")
    assert a is not None and a.data == {"v": 1}
    assert store.audit_log() == []


def test_apply_sees_its_own_earlier_ops(store: StateStore) -> None:
    docs = store.apply([Put(collection="c", key="a", data={"v": 1}, expected_version=0),
                        Put(collection="c", key="a", data={"v": 2}, expected_version=1)])
    assert [d.version for d in docs if d] == [1, 2]


def test_delete(store: StateStore) -> None:
    store.put("c", "k", {"a": 1})
    with pytest.raises(Conflict):
        store.delete("c", "k", expected_version=3)
    store.delete("c", "k", expected_version=1)
    assert store.get("c", "k") is None
    store.delete("c", "k")  # deleting a missing doc without a version is fine
    assert store.put("c", "k", {"a": 1}).version == 1


def test_list_filters_by_field_prefix_and_limit(store: StateStore) -> None:
    for i in range(6):
        store.put("runs", f"p/{i:02d}", {"i": i, "stage": "A" if i % 2 else "B", "f": i / 2,
                                         "ok": i < 3})
    store.put("runs", "q/00", {"i": 99, "stage": "A"})
    store.put("other", "p/00", {"i": 0})
    assert [d.key for d in store.list("runs")] == [
        "p/00", "p/01", "p/02", "p/03", "p/04", "p/05", "q/00"]
    assert [d.data["i"] for d in store.list("runs", {"stage": "A"}, prefix="p/")] == [1, 3, 5]
    assert [d.data["i"] for d in store.list("runs", {"f": 1.5})] == [3]
    assert [d.data["i"] for d in store.list("runs", {"ok": True})] == [0, 1, 2]
    assert [d.data["i"] for d in store.list("runs", {"stage": "A"}, limit=2)] == [1, 3]
    assert store.list("runs", {"missing": "x"}) == []
    assert store.list("empty") == []


def test_audit_log_is_ordered_and_filterable(store: StateStore) -> None:
    store.put("c", "k", {"a": 1}, audit=_audit("one", "p"))
    store.put("c", "k", {"a": 2}, audit=_audit("two", "q"))
    store.apply([], _audit("three", "p"))
    entries = store.audit_log()
    assert [e.action for e in entries] == ["one", "two", "three"]
    assert [e.seq for e in entries] == sorted(e.seq for e in entries)
    assert entries[0].user == "alice" and entries[0].before == {"x": 1}
    assert [e.action for e in store.audit_log(project="p")] == ["one", "three"]
    assert [e.action for e in store.audit_log(after_seq=entries[0].seq)] == ["two", "three"]
    assert [e.action for e in store.audit_log(limit=1)] == ["one"]


def test_concurrent_compare_and_set_has_one_winner_per_version(store: StateStore) -> None:
    store.put("c", "counter", {"n": 0})
    wins: list[int] = []
    lock = threading.Lock()

    def bump() -> None:
        for _ in range(200):
            doc = store.get("c", "counter")
            assert doc is not None
            try:
                store.put("c", "counter", {"n": doc.data["n"] + 1}, expected_version=doc.version)
            except Conflict:
                continue
            with lock:
                wins.append(doc.data["n"] + 1)
            return

    threads = [threading.Thread(target=bump) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == list(range(1, 21))


def test_state_survives_reopening(store: StateStore, state_url: str, redis_prefix: str) -> None:
    store.put("c", "k", {"a": 1}, audit=_audit("one"))
    again = open_state_store(state_url, redis_prefix=redis_prefix)
    doc = again.get("c", "k")
    assert doc is not None and doc.data == {"a": 1}
    assert [e.action for e in again.audit_log()] == ["one"]
    again.close()


def test_delete_op_in_batch(store: StateStore) -> None:
    store.put("c", "a", {"v": 1})
    store.apply([Delete(collection="c", key="a", expected_version=1),
                 Put(collection="c", key="b", data={"v": 2})])
    assert store.get("c", "a") is None and store.get("c", "b") is not None


def test_unknown_scheme_names_the_ones_that_exist() -> None:
    with pytest.raises(ConfigError, match=r"sqlite://, redis://, rediss://"):
        open_state_store("mongodb://localhost")


def test_unreachable_redis_is_backend_unavailable() -> None:
    with pytest.raises(BackendUnavailable, match="Redis"):
        open_state_store("redis://127.0.0.1:1/0")


def _open_and_write(path: str, name: str, start: float) -> str:
    while time.time() < start:
        time.sleep(0.001)
    store = SQLiteStateStore(f"sqlite:///{path}")
    store.put("opened", name, {"by": name})
    return name


def test_many_processes_open_one_new_sqlite_file_at_once(tmp_path: Path) -> None:
    """Actors starting together must all open a fresh state file (WAL switch races)."""
    path = str(tmp_path / "state.db")
    start = time.time() + 4.0
    names = [f"p{i}" for i in range(8)]
    with ProcessPoolExecutor(max_workers=8, mp_context=mp.get_context("spawn")) as pool:
        done = list(pool.map(_open_and_write, [path] * 8, names, [start] * 8))
    assert done == names
    store = SQLiteStateStore(f"sqlite:///{path}")
    assert sorted(doc.key for doc in store.list("opened")) == names
