"""Where a Parquet-source feature view may read: below its project's storage root
(``<offline_uri>/<project>``), or below a prefix a platform admin allowed.

A view's source is read by whoever materializes or joins it, platform jobs included, with
the platform's storage credentials; an unconfined path would let an editor of one project
read another project's rows, or any file those processes can open. ``apply`` checks every
Parquet source. The allow-list is one state-store document (``platform/offline_sources``),
changed through :class:`SourcePolicy` by admins of every project only, audited, as
:mod:`mlray.registry.architectures` does for model code.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Collection
from pathlib import Path

from mlray._private.redact import redact
from mlray.auth.allowlist import AllowList
from mlray.errors import InvalidInput, PermissionDenied
from mlray.identity import ALL_PROJECTS, Caller, Role
from mlray.storage.base import StateStore
from mlray.storage.fsuri import is_uri, join_uri

__all__ = ["SourcePolicy", "check_confined", "project_root"]



def project_root(offline_uri: str, project: str) -> str:
    """The project's storage root for offline data: ``<offline_uri>/<project>``."""
    return join_uri(offline_uri, project)


def _normal(location: str) -> str:
    """A comparable form: a local path made absolute with links and ``..`` resolved, a URI
    with its query dropped and its path normalised (no ``..`` left to climb with)."""
    if not is_uri(location):
        return os.path.realpath(Path(location).expanduser())
    scheme, _, rest = location.partition("?")[0].partition("://")
    return f"{scheme.lower()}://{posixpath.normpath('/' + rest).lstrip('/')}"


def _below(path: str, prefix: str) -> bool:
    path, prefix = _normal(path), _normal(prefix).rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def check_confined(view: str, path: str, roots: Collection[str],
                   allowed: Collection[str]) -> None:
    """Raise :class:`PermissionDenied` (one line naming the path) unless ``path`` lies below
    one of the project's ``roots`` or an admin-``allowed`` prefix."""
    if any(_below(path, p) for p in [*roots, *allowed]):
        return
    raise PermissionDenied(
        f"view {view!r}: source {redact(path)} is outside the project's storage; a platform "
        "admin can allow it (mlray features sources --allow PREFIX)",
        field=f"feature_views.{view}.source.path")


class SourcePolicy:
    """The admin-allowed source prefixes, kept in the state store."""

    def __init__(self, store: StateStore) -> None:
        self._list = AllowList(store, "offline_sources", "platform.offline_sources")

    def allowed(self) -> frozenset[str]:
        """The allowed prefixes (local paths or URIs)."""
        return self._list.entries()

    def change(self, caller: Caller, *, allow: Collection[str] = (),
               revoke: Collection[str] = ()) -> list[str]:
        """Add ``allow`` and remove ``revoke`` (admins of every project only; audited);
        returns the new list. Local prefixes are stored absolute and resolved, URIs
        without their query.

        Raises:
            PermissionDenied: the caller is not admin of every project.
            InvalidInput: a prefix is relative or the filesystem root.
        """
        caller.require(ALL_PROJECTS, Role.admin)
        added = []
        for prefix in allow:
            if not is_uri(prefix) and not Path(prefix).expanduser().is_absolute():
                raise InvalidInput(f"source prefix {prefix!r} is relative; give an absolute "
                                   "path or a URI", field="allow")
            # A URI's query configures a filesystem (and may hold its keys): not stored.
            normal = (_normal(prefix) if not is_uri(prefix)
                      else prefix.partition("?")[0].rstrip("/"))
            if normal in ("/", "") or normal.endswith("://"):
                raise InvalidInput(f"source prefix {prefix!r} would allow everything",
                                   field="allow")
            added.append(normal)
        gone = ({p.partition("?")[0].rstrip("/") for p in revoke}
                | {_normal(p) for p in revoke if not is_uri(p)})
        return self._list.change(caller, added, gone)
