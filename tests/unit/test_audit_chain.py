"""The audit log is a hash chain: a removed or altered entry is found and named."""

from __future__ import annotations

import itertools
import json
import sqlite3
from pathlib import Path

from mlray.storage import AuditEntry, StateStore
from mlray.storage.audit_chain import GENESIS
from mlray.storage.redis import RedisStateStore
from mlray.storage.sqlite import SQLiteStateStore


def _write(store: StateStore, n: int) -> None:
    for i in range(n):
        store.put("things", f"k{i}", {"i": i}, audit=AuditEntry(
            user="ann", project="p", action="thing.put", target=f"k{i}", after={"i": i / 3}))


def _tamper(store: StateStore, seq: int, *, remove: bool) -> None:
    """Change or drop entry ``seq`` behind the store's back, as someone with disk access."""
    if isinstance(store, SQLiteStateStore):
        with sqlite3.connect(store.path) as db:
            if remove:
                db.execute("DELETE FROM audit WHERE seq = ?", (seq,))
            else:
                db.execute("UPDATE audit SET user = 'mallory' WHERE seq = ?", (seq,))
        return
    assert isinstance(store, RedisStateStore)
    stream = f"{store.prefix}:audit"
    entries = store._redis.xrange(stream)
    store._redis.delete(stream)
    for entry_id, fields in entries:
        if entry_id == f"{seq}-0".encode():
            if remove:
                continue
            fields = {b"e": json.dumps({**json.loads(fields[b"e"]), "user": "mallory"})}
        store._redis.xadd(stream, fields, id=entry_id)


def test_entries_are_chained_and_verify(store: StateStore) -> None:
    _write(store, 4)
    entries = store.audit_log()
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
    report = store.verify_audit()
    assert report.ok and report.checked == 4 and report.head == entries[-1].hash


def test_an_altered_entry_is_named(store: StateStore) -> None:
    _write(store, 4)
    _tamper(store, 2, remove=False)
    report = store.verify_audit()
    assert not report.ok and report.bad_seq == 2 and "altered" in str(report.problem)


def test_a_removed_entry_is_named(store: StateStore) -> None:
    _write(store, 4)
    _tamper(store, 3, remove=True)
    report = store.verify_audit()
    assert not report.ok and report.bad_seq == 3


def test_removing_the_newest_entry_is_found(store: StateStore) -> None:
    _write(store, 3)
    _tamper(store, 3, remove=True)
    report = store.verify_audit()
    assert not report.ok and report.bad_seq == 3 and "end" in str(report.problem)


def test_concurrent_writers_keep_one_chain(store: StateStore, state_url: str,
                                           redis_prefix: str) -> None:
    """Two connections appending at once (Redis retries when the head moved under it)."""
    from concurrent.futures import ThreadPoolExecutor

    from mlray.storage import open_state_store

    other = open_state_store(state_url, redis_prefix=redis_prefix)
    try:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda s: _write(s, 25), [store, other]))
    finally:
        other.close()
    report = store.verify_audit()
    assert report.ok and report.checked == 50


def test_a_log_written_before_chaining_is_chained_from_then_on(tmp_path: Path) -> None:
    """An SQLite store from before the chain: its old entries are counted as unchained, new
    ones chain from GENESIS, and blanking a chained entry's hash is still caught."""
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT"
                     " NULL, user TEXT NOT NULL, project TEXT NOT NULL, action TEXT NOT NULL,"
                     " target TEXT NOT NULL, before TEXT, after TEXT)")
        conn.executemany("INSERT INTO audit (ts, user, project, action, target) VALUES"
                         " (1.0, 'old', 'p', 'legacy', ?)", [("a",), ("b",)])
    store = SQLiteStateStore(f"sqlite:///{db}")
    try:
        _write(store, 2)
        report = store.verify_audit()
        assert report.ok and (report.checked, report.unchained) == (4, 2)
        assert store.audit_log()[2].prev_hash == GENESIS
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE audit SET hash = '' WHERE seq = 3")
        assert store.verify_audit().bad_seq == 3
    finally:
        store.close()
