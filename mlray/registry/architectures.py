"""Which model architectures replicas may build: the built-in set plus an admin's list.

An artifact's ``architecture.json`` names its network by ``type``: a built-in (``mlp``) or a
``module:callable`` that loading imports and calls, i.e. code that runs in every replica.
Only built-ins and the callables a platform admin registered are accepted, both when a
version is registered and again when a replica loads it. The list is one state-store
document (``platform/architectures``); changes go through :class:`ArchitecturePolicy`,
are admin-only and audited.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from mlray.auth.allowlist import AllowList
from mlray.errors import InvalidInput, PermissionDenied
from mlray.identity import ALL_PROJECTS, Caller, Role
from mlray.storage.base import StateStore

__all__ = ["BUILTIN", "ArchitecturePolicy", "check_architecture"]

BUILTIN = frozenset({"mlp"})
CALLABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def check_architecture(kind: str, allowed: Collection[str]) -> None:
    """Raise :class:`PermissionDenied` (one line) unless ``kind`` is built in or allowed."""
    if kind in BUILTIN or kind in allowed:
        return
    raise PermissionDenied(
        f"model architecture {kind!r} is not allowed: built-in are {', '.join(sorted(BUILTIN))};"
        f" a platform admin can allow it (mlray models architectures --allow {kind})",
        field="architecture.type")


class ArchitecturePolicy:
    """The admin-registered ``module:callable`` list, kept in the state store."""

    def __init__(self, store: StateStore) -> None:
        self._list = AllowList(store, "architectures", "platform.architectures")

    def allowed(self) -> frozenset[str]:
        """The registered callables (built-ins not included)."""
        return self._list.entries()

    def change(self, caller: Caller, *, allow: Collection[str] = (),
               revoke: Collection[str] = ()) -> list[str]:
        """Add ``allow`` and remove ``revoke`` (platform admins only; audited); returns the
        new list.

        Raises:
            PermissionDenied: the caller is not admin of every project.
            InvalidInput: an entry is not ``module:callable``.
        """
        caller.require(ALL_PROJECTS, Role.admin)
        for kind in allow:
            if not CALLABLE.match(kind):
                raise InvalidInput(f"architecture {kind!r}: give module.path:callable",
                                   field="architecture")
        return self._list.change(caller, allow, revoke)
