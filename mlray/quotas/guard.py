"""The count quotas, checked where objects are created.

A service that creates something asks :meth:`QuotaGuard.admit` before its write and adds
the ops it returns to that same :meth:`~mlray.storage.base.StateStore.apply`. The guard
reads the quota's guard document *before* counting and writes it back with that version
expected, so of two creates racing for the last slot one write conflicts; its retry counts
again and is refused. Without a limit the guard adds nothing (no extra write).
"""

from __future__ import annotations

from collections.abc import Callable

from mlray._private.types import now
from mlray.errors import QuotaExceeded
from mlray.quotas.types import GUARDS, QUOTAS, Counted, QuotaLimits
from mlray.storage.base import ABSENT, Op, Put, StateStore

__all__ = ["QuotaGuard", "read_limits", "storage_in_use"]

_UNITS = {"storage_bytes": " bytes"}


def read_limits(store: StateStore, project: str) -> QuotaLimits:
    """The project's stored quotas (all unlimited when none are stored)."""
    doc = store.get(QUOTAS, project)
    return QuotaLimits() if doc is None else QuotaLimits.model_validate(doc.data)


def storage_in_use(store: StateStore, project: str) -> int:
    """Bytes of the artifacts the project's versions and runs point at (each URI once)."""
    from mlray.registry._documents import VERSIONS
    from mlray.tracking.service import RUNS

    sizes: dict[str, int] = {}
    for doc in store.list(VERSIONS, prefix=f"{project}/"):
        sizes[doc.data["artifact_uri"]] = int(doc.data.get("artifact_size") or 0)
    for doc in store.list(RUNS, where={"project": project}):
        for artifact in doc.data.get("artifacts", []):
            sizes[artifact["uri"]] = int(artifact["size"])
    return sum(sizes.values())


class QuotaGuard:
    """Checks a project's count quotas over a :class:`StateStore`."""

    def __init__(self, store: StateStore) -> None:
        self._store = store

    def admit(self, project: str, quota: Counted, count: Callable[[], float],
              adding: float = 1) -> list[Op]:
        """The ops to apply with a create that adds ``adding`` to ``quota``.

        Args:
            count: what the project uses now (called after the guard is read).
            adding: how much the create adds; nothing is checked when it adds nothing.

        Returns:
            Ops for the create's own ``apply`` (none when the quota is unlimited); a
            :class:`~mlray.errors.Conflict` from that apply means another create got in
            first: read, count and admit again.

        Raises:
            QuotaExceeded: the create would take the project past the limit (names the
                quota, its limit and the use).
        """
        if adding <= 0:
            return []

        def measure() -> tuple[float, float]:
            used = count()
            return used, used + adding

        return self.admit_change(project, quota, measure)

    def admit_change(self, project: str, quota: Counted,
                     measure: Callable[[], tuple[float, float]]) -> list[Op]:
        """As :meth:`admit`, for a change whose effect is measured together with the use:
        ``measure`` answers (use now, use after the change), called after the guard is
        read; nothing is checked when the change adds nothing."""
        limit = read_limits(self._store, project).limit(quota)
        if limit is None:
            return []
        key = f"{project}/{quota}"
        guard = self._store.get(GUARDS, key)  # before measuring: see the module docstring
        used, after = measure()
        if after <= used:
            return []
        if after > limit:
            unit = _UNITS.get(quota, "")
            raise QuotaExceeded(
                f"quota {quota} of project {project!r} exceeded: limit {limit:g}{unit}, in use "
                f"{used:g}{unit}, this would add {after - used:g}{unit} (an admin can raise "
                f"it: `mlray quotas set --project {project} --{quota.replace('_', '-')} N`)",
                field=quota)
        return [Put(collection=GUARDS, key=key,
                    data={"used": after, "limit": limit, "at": now()},
                    expected_version=guard.version if guard else ABSENT)]
