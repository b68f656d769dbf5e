"""Writing refused calls to the audit log.

A service method that raises :class:`PermissionDenied` leaves an ``auth.denied`` entry in
its store's audit log (who, which project, which method, why), so admins see probing as
well as changes. Recording never hides the refusal: a store that cannot write logs a
warning and the caller still gets :class:`PermissionDenied`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mlray.errors import PermissionDenied

__all__ = ["DENIED", "record_denial"]

DENIED = "auth.denied"
_log = logging.getLogger(__name__)


def record_denial(service: object, method: str, arguments: Mapping[str, Any],
                  exc: PermissionDenied) -> None:
    """Append an ``auth.denied`` entry to ``service._store`` for a call that ``exc`` refused
    (nothing when the service has no state store or the call named no caller)."""
    from mlray.storage.base import AuditEntry, StateStore

    store = getattr(service, "_store", None)
    caller = arguments.get("caller")
    user = getattr(caller, "user", None)
    if not isinstance(store, StateStore) or not isinstance(user, str):
        return
    project = arguments.get("project")
    entry = AuditEntry(user=user, project=project if isinstance(project, str) else "*",
                       action=DENIED, target=f"{type(service).__name__}.{method}",
                       after={"reason": exc.message})
    try:
        store.apply([], entry)
    except Exception as err:  # the refusal must reach the caller whatever the store does
        _log.warning("could not audit a refused %s by %r: %s", method, user, err)
