"""The state-store contract every backend fulfils.

State is a set of JSON documents addressed by ``(collection, key)``. Each document has
a version that starts at 1 and grows by one on every write, so callers can
compare-and-set. :meth:`StateStore.apply` is the one primitive that writes: it checks
every expected version, applies all operations and appends the audit entry, atomically,
or does nothing. Everything else that writes is built on it.
"""

from __future__ import annotations

import abc
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from mlray.errors import Conflict, InvalidInput
from mlray.storage.audit_chain import ChainReport, verify

__all__ = ["AuditEntry", "Delete", "Document", "Op", "Put", "StateStore", "encode", "matches"]

#: Expected version meaning "the document must not exist yet".
ABSENT = 0


class Document(BaseModel):
    """A stored document and its version."""

    model_config = ConfigDict(frozen=True)

    collection: str
    key: str
    version: int = Field(ge=1)
    data: dict[str, Any]
    updated_at: float


class Put(BaseModel):
    """Write ``data`` at ``(collection, key)``; with ``expected_version`` only if it matches.

    ``expected_version=0`` means the document must not exist; None means unconditional.
    """

    model_config = ConfigDict(frozen=True)

    collection: str = Field(min_length=1, max_length=128)
    key: str = Field(min_length=1, max_length=512)
    data: dict[str, Any]
    expected_version: int | None = Field(None, ge=0)


class Delete(BaseModel):
    """Remove ``(collection, key)``; with ``expected_version`` only if it matches."""

    model_config = ConfigDict(frozen=True)

    collection: str = Field(min_length=1, max_length=128)
    key: str = Field(min_length=1, max_length=512)
    expected_version: int | None = Field(None, ge=1)


Op = Put | Delete


class AuditEntry(BaseModel):
    """One line of the append-only audit log: who did what to which object, and when."""

    model_config = ConfigDict(frozen=True)

    seq: int = 0
    ts: float = Field(default_factory=time.time)
    user: str
    project: str
    action: str
    target: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    prev_hash: str = Field("", description="Hash of the entry before (set by the store).")
    hash: str = Field("", description="sha256 of this entry's canonical JSON (set by the store).")


def encode(data: Any) -> str:
    """JSON for storage; NaN and infinity are refused (they are not JSON)."""
    try:
        return json.dumps(data, allow_nan=False)
    except ValueError:
        raise InvalidInput("a value is NaN or infinite; store finite numbers or null",
                           field="data") from None
    except TypeError as exc:
        raise InvalidInput(f"a value cannot be stored as JSON: {exc}", field="data") from None


def matches(data: Mapping[str, Any], where: Mapping[str, Any] | None) -> bool:
    """True when every ``where`` field equals the document's top-level field."""
    return not where or all(data.get(k) == v for k, v in where.items())


def check_expected(op: Op, current: int | None) -> None:
    """Raise :class:`Conflict` when ``op``'s expected version differs from ``current``."""
    if op.expected_version is None:
        return
    have = current or ABSENT
    if have != op.expected_version:
        state = "does not exist" if have == ABSENT else f"is at version {have}"
        raise Conflict(
            f"{op.collection}/{op.key} {state}, expected version {op.expected_version}",
            field=f"{op.collection}/{op.key}",
        )


class StateStore(abc.ABC):
    """Durable documents with compare-and-set, plus an append-only audit log."""

    url: str

    @abc.abstractmethod
    def get(self, collection: str, key: str) -> Document | None:
        """The document at ``(collection, key)``, or None."""

    def get_many(self, items: Sequence[tuple[str, str]]) -> list[Document | None]:
        """Several documents by ``(collection, key)``, in order; backends may batch this."""
        return [self.get(collection, key) for collection, key in items]

    @abc.abstractmethod
    def list(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        *,
        prefix: str | None = None,
        limit: int | None = None,
    ) -> list[Document]:
        """Documents of ``collection`` in key order, filtered by equality on top-level
        fields (``where``) and by key prefix, at most ``limit`` of them."""

    @abc.abstractmethod
    def apply(self, ops: Sequence[Op], audit: AuditEntry | None = None) -> list[Document | None]:
        """Apply ``ops`` and append ``audit`` atomically.

        Returns:
            For each op, the document as written (Put) or None (Delete).

        Raises:
            Conflict: an expected version did not match; nothing was written.
        """

    @abc.abstractmethod
    def audit_log(
        self, *, after_seq: int = 0, limit: int = 100, project: str | None = None
    ) -> list[AuditEntry]:
        """Audit entries with ``seq > after_seq``, oldest first, optionally for one project."""

    @abc.abstractmethod
    def audit_last_seq(self) -> int:
        """The ``seq`` the newest audit entry was given (0 before the first)."""

    def audit_entries(self, *, after_seq: int = 0, page: int = 1000) -> Iterator[AuditEntry]:
        """Every audit entry after ``after_seq``, oldest first, read ``page`` at a time."""
        while chunk := self.audit_log(after_seq=after_seq, limit=page):
            yield from chunk
            after_seq = chunk[-1].seq

    def verify_audit(self) -> ChainReport:
        """Check the whole audit hash chain (see :mod:`mlray.storage.audit_chain`)."""
        last = self.audit_last_seq()
        return verify(self.audit_entries(), last_seq=last)

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; the store is unusable afterwards."""

    # Conveniences built on the primitives.

    def put(
        self,
        collection: str,
        key: str,
        data: dict[str, Any],
        expected_version: int | None = None,
        audit: AuditEntry | None = None,
    ) -> Document:
        """Write one document (see :class:`Put`)."""
        doc = self.apply([Put(collection=collection, key=key, data=data,
                              expected_version=expected_version)], audit)[0]
        assert doc is not None
        return doc

    def delete(
        self,
        collection: str,
        key: str,
        expected_version: int | None = None,
        audit: AuditEntry | None = None,
    ) -> None:
        """Remove one document (a missing one is not an error without ``expected_version``)."""
        self.apply([Delete(collection=collection, key=key, expected_version=expected_version)],
                   audit)

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
