"""SQLite online store: the embedded default, one table keyed by (view, entity key).

A write is one transaction of upserts whose ``WHERE excluded.event_us >= event_us``
keeps newer rows, so a late, older write never replaces them.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mlray.errors import BackendUnavailable
from mlray.features.online import OnlineStore
from mlray.features.rowcodec import header
from mlray.identity import check_project_name
from mlray.storage.sqlite import open_wal

__all__ = ["SQLiteOnlineStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS online_features (
    view TEXT NOT NULL,
    key BLOB NOT NULL,
    event_us INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (view, key)
) WITHOUT ROWID;
"""
_UPSERT = (
    "INSERT INTO online_features (view, key, event_us, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (view, key) DO UPDATE SET event_us = excluded.event_us, "
    "value = excluded.value WHERE excluded.event_us >= online_features.event_us"
)
_CHUNK = 500


class SQLiteOnlineStore(OnlineStore):
    """Latest feature rows in one SQLite file (WAL)."""

    def __init__(self, url: str, *, project: str) -> None:
        self.url = url
        self.project = check_project_name(project)
        self.path = Path(url.removeprefix("sqlite:///")).expanduser().absolute()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = open_wal(self.path, _SCHEMA, synchronous="NORMAL")
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(f"cannot open SQLite online store at {self.path}: {exc}",
                                     ) from exc

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"SQLite online store at {self.path}: {exc}") from exc

    def _put(self, view: str, items: Sequence[tuple[bytes, int, bytes]]) -> int:
        with self._guard() as db:
            before = db.total_changes
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(_UPSERT, ((view, k, ts, v) for k, ts, v in items))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            return db.total_changes - before

    def _get(self, view: str, keys: Sequence[bytes]) -> list[bytes | None]:
        found: dict[bytes, bytes] = {}
        unique = list(dict.fromkeys(keys))
        with self._guard() as db:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start:start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT key, event_us, value FROM online_features "
                    f"WHERE view = ? AND key IN ({marks})", (view, *chunk)).fetchall()
                found.update({bytes(k): header(ts) + bytes(v) for k, ts, v in rows})
        return [found.get(k) for k in keys]

    def _drop(self, space: str) -> None:
        with self._guard() as db:
            db.execute("DELETE FROM online_features WHERE view = ?", (space,))

    def close(self) -> None:
        with self._lock:
            self._db.close()
