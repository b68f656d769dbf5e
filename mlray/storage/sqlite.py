"""SQLite state store: the embedded default, one file under the platform home."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlray.errors import BackendUnavailable
from mlray.storage.audit_chain import GENESIS, link
from mlray.storage.base import (
    AuditEntry,
    Delete,
    Document,
    Op,
    StateStore,
    check_expected,
    encode,
    matches,
)

__all__ = ["SQLiteStateStore", "open_wal"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS docs (
    collection TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (collection, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    user TEXT NOT NULL,
    project TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    before TEXT,
    after TEXT,
    prev_hash TEXT NOT NULL DEFAULT '',
    hash TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_project ON audit (project, seq);
"""
_FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PUSHABLE = (str, int, float)
_MAX_KEY_CHAR = "\U0010ffff"
_OPEN_TIMEOUT_S = 30.0


def open_wal(path: Path, schema: str, *, synchronous: str = "FULL",
             timeout_s: float = _OPEN_TIMEOUT_S) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with ``schema`` created, retrying while another
    process holds the new file.

    Switching journal mode and WAL recovery can answer SQLITE_BUSY without calling the
    busy handler, so several processes opening one new file at once need their own retry.
    """
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    deadline, delay = time.monotonic() + timeout_s, 0.01
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            db.executescript(schema)
            return db
        except sqlite3.OperationalError as exc:
            if (("locked" not in str(exc) and "busy" not in str(exc))
                    or time.monotonic() >= deadline):
                db.close()
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


class SQLiteStateStore(StateStore):
    """Documents in one SQLite file (WAL, synchronous=FULL: a commit survives a crash)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(url.removeprefix("sqlite:///")).expanduser()
        if not self.path.is_absolute():
            self.path = self.path.absolute()
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = open_wal(self.path, _SCHEMA, synchronous="FULL")
            _add_chain_columns(self._db)
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(f"cannot open SQLite state at {self.path}: {exc}") from exc

    @contextmanager
    def _guard(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise BackendUnavailable(f"SQLite state at {self.path}: {exc}") from exc

    def get(self, collection: str, key: str) -> Document | None:
        with self._guard() as db:
            row = db.execute(
                "SELECT version, data, updated_at FROM docs WHERE collection=? AND key=?",
                (collection, key),
            ).fetchone()
        if row is None:
            return None
        return Document(collection=collection, key=key, version=row[0],
                        data=json.loads(row[1]), updated_at=row[2])

    def list(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        *,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> list[Document]:
        sql = ["SELECT key, version, data, updated_at FROM docs WHERE collection=?"]
        args: list[Any] = [collection]
        if prefix:
            sql.append("AND key >= ? AND key < ?")
            args += [prefix, prefix + _MAX_KEY_CHAR]
        for field, value in (where or {}).items():
            if _FIELD.match(field) and isinstance(value, _PUSHABLE) and not isinstance(value, bool):
                sql.append(f"AND json_extract(data, '$.{field}') = ?")
                args.append(value)
        sql.append("ORDER BY key")
        with self._guard() as db:
            rows = db.execute(" ".join(sql), args).fetchall()
        docs = []
        for key, version, data, updated_at in rows:
            payload = json.loads(data)
            if matches(payload, where):
                docs.append(Document(collection=collection, key=key, version=version,
                                     data=payload, updated_at=updated_at))
                if limit is not None and len(docs) >= limit:
                    break
        return docs

    def apply(self, ops: Sequence[Op], audit: AuditEntry | None = None) -> list[Document | None]:
        now = time.time()
        written: list[Document | None] = []
        with self._guard() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                for op in ops:
                    row = db.execute(
                        "SELECT version FROM docs WHERE collection=? AND key=?",
                        (op.collection, op.key),
                    ).fetchone()
                    current = row[0] if row else None
                    check_expected(op, current)
                    if isinstance(op, Delete):
                        db.execute("DELETE FROM docs WHERE collection=? AND key=?",
                                   (op.collection, op.key))
                        written.append(None)
                        continue
                    version = (current or 0) + 1
                    db.execute(
                        "INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?)",
                        (op.collection, op.key, version, encode(op.data), now),
                    )
                    written.append(Document(collection=op.collection, key=op.key,
                                            version=version, data=op.data, updated_at=now))
                if audit is not None:
                    last = db.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1"
                                      ).fetchone()
                    entry = link(audit, _counter(db) + 1, (last[0] if last else "") or GENESIS)
                    db.execute(
                        "INSERT INTO audit (seq, ts, user, project, action, target, before,"
                        " after, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (entry.seq, entry.ts, entry.user, entry.project, entry.action,
                         entry.target, _dump(entry.before), _dump(entry.after),
                         entry.prev_hash, entry.hash),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return written

    def audit_log(
        self, *, after_seq: int = 0, limit: int = 100, project: str | None = None
    ) -> list[AuditEntry]:
        sql = ("SELECT seq, ts, user, project, action, target, before, after, prev_hash, hash"
               " FROM audit"
               " WHERE seq > ?")
        args: list[Any] = [after_seq]
        if project is not None:
            sql += " AND project = ?"
            args.append(project)
        sql += " ORDER BY seq LIMIT ?"
        args.append(limit)
        with self._guard() as db:
            rows = db.execute(sql, args).fetchall()
        return [
            AuditEntry(seq=r[0], ts=r[1], user=r[2], project=r[3], action=r[4], target=r[5],
                       before=_load(r[6]), after=_load(r[7]), prev_hash=r[8], hash=r[9])
            for r in rows
        ]

    def audit_last_seq(self) -> int:
        with self._guard() as db:
            return _counter(db)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _dump(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value)


def _load(value: str | None) -> dict[str, Any] | None:
    return None if value is None else json.loads(value)


def _counter(db: sqlite3.Connection) -> int:
    """The last audit ``seq`` handed out (AUTOINCREMENT never reuses one)."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'audit'").fetchone()
    return int(row[0]) if row else 0


def _add_chain_columns(db: sqlite3.Connection) -> None:
    """Give an audit table made before the hash chain its two columns."""
    have = {r[1] for r in db.execute("PRAGMA table_info(audit)")}
    for column in ("prev_hash", "hash"):
        if column not in have:
            db.execute(f"ALTER TABLE audit ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
