"""A platform-wide allow-list: one state-store document that only an admin of every
project changes, each change audited with the list before and after.

The model-architecture list and the offline-source prefixes are two of them; each policy
checks its own entries and keeps the list here.
"""

from __future__ import annotations

from collections.abc import Collection

from mlray.identity import ALL_PROJECTS, Caller, Role
from mlray.storage.base import AuditEntry, StateStore

__all__ = ["AllowList"]

_COLLECTION = "platform"


class AllowList:
    """The entries stored under ``platform/<key>``; changes are audited as ``action``."""

    def __init__(self, store: StateStore, key: str, action: str) -> None:
        self._store = store
        self._key = key
        self._action = action

    def entries(self) -> frozenset[str]:
        """What is allowed now."""
        doc = self._store.get(_COLLECTION, self._key)
        return frozenset(doc.data.get("allowed", [])) if doc else frozenset()

    def change(self, caller: Caller, add: Collection[str],
               remove: Collection[str]) -> list[str]:
        """Add ``add`` and drop ``remove`` (entries already checked by the policy); returns
        the new sorted list. A concurrent change makes this one fail with Conflict rather
        than be lost.

        Raises:
            PermissionDenied: the caller is not admin of every project.
        """
        caller.require(ALL_PROJECTS, Role.admin)
        doc = self._store.get(_COLLECTION, self._key)
        before = sorted(doc.data.get("allowed", [])) if doc else []
        after = sorted((set(before) | set(add)) - set(remove))
        self._store.put(_COLLECTION, self._key, {"allowed": after},
                        expected_version=doc.version if doc else 0,
                        audit=AuditEntry(user=caller.user, project=ALL_PROJECTS,
                                         action=self._action, target=self._key,
                                         before={"allowed": before}, after={"allowed": after}))
        return after
