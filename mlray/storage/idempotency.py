"""Idempotent writes: a key the client sends with a create, stored with its answer.

A write whose answer was lost (the actor died after persisting it, a connection broke)
leaves the caller unsure whether it happened. The client sends the same idempotency key
with every retry of one logical write; the service stores ``key -> (request digest,
answer)`` in the same atomic :meth:`StateStore.apply` as the write itself (a ``Put`` that
must not exist yet), so:

- a retry after the write was applied finds the record and gets the first answer back;
- two attempts racing with one key cannot both apply: the second's record ``Put``
  conflicts, and its compare-and-set retry then finds the first's record;
- a key sent again with a different request is refused (a client bug, not a retry).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, Field

from mlray.errors import InvalidInput
from mlray.storage.base import Put, StateStore

__all__ = ["IDEMPOTENCY", "IdempotencyKey", "KeyedWrite", "new_key"]

#: Collection of the records: ``<project>/<operation>/<key>``.
IDEMPOTENCY = "idempotency"

#: What a client may send: 16-128 letters, digits, '-' or '_' (a uuid4 hex by default).
IdempotencyKey = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{16,128}$")]

M = TypeVar("M", bound=BaseModel)


def new_key() -> str:
    """A fresh idempotency key for one logical write."""
    return uuid.uuid4().hex


def _digest(request: Any) -> str:
    """A stable hash of a request's arguments (pydantic models as their JSON)."""

    def plain(value: Any) -> Any:
        if isinstance(value, BaseModel):
            return value.model_dump(mode="json")
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    text = json.dumps(plain(request), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class KeyedWrite:
    """One write's idempotency record: look for an earlier answer, or record this one.

    With ``key`` None (a caller that sends none) it finds nothing and records nothing, so
    the write behaves as before.

    Args:
        store: the store the write goes to (the record goes in the same ``apply``).
        project: the project written to.
        operation: names the write, e.g. ``registry.create_version``.
        key: the client's idempotency key, or None.
        request: the arguments that define the write (hashed; a key reused with other
            arguments is refused).
    """

    def __init__(self, store: StateStore, project: str, operation: str, key: str | None,
                 request: Any) -> None:
        self._store = store
        self.key = key
        self.operation = operation
        self.record_key = f"{project}/{operation}/{key}"
        self.digest = _digest(request) if key is not None else ""

    def previous(self, model: type[M]) -> M | None:
        """The answer of an earlier attempt with this key, or None when there was none.

        Raises:
            InvalidInput: the key was used before for a different request.
        """
        if self.key is None:
            return None
        doc = self._store.get(IDEMPOTENCY, self.record_key)
        if doc is None:
            return None
        if doc.data["request"] != self.digest:
            raise InvalidInput(
                f"idempotency key {self.key!r} was already used for a different "
                f"{self.operation} request; send a new key for a new write",
                field="idempotency_key")
        return model.model_validate(doc.data["result"])

    def record(self, result: BaseModel) -> list[Put]:
        """The ``Put`` to apply together with the write (none without a key)."""
        if self.key is None:
            return []
        data = {"operation": self.operation, "request": self.digest,
                "result": result.model_dump(mode="json"), "at": time.time()}
        return [Put(collection=IDEMPOTENCY, key=self.record_key, data=data,
                    expected_version=0)]
