"""The ``quotas`` service: sets and shows quotas, reports usage, and hands ingress replicas
their slices of each project's request rate (see :mod:`mlray.quotas.rate`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from mlray._private.types import Project
from mlray._private.validation import boundary, build
from mlray.identity import ALL_PROJECTS, Caller, Role
from mlray.quotas.guard import read_limits, storage_in_use
from mlray.quotas.rate import RateLedger
from mlray.quotas.types import QUOTAS, Grant, QuotaLimits, UsageReport
from mlray.quotas.usage import UsageMeter
from mlray.storage.base import AuditEntry, Put, StateStore

__all__ = ["Exchange", "QuotaService"]

#: How long the service answers the rate quotas from memory before reading them again.
LIMITS_TTL_S = 1.0


class Exchange(BaseModel):
    """The answer to an ingress replica's periodic exchange."""

    limits: dict[str, float | None] = Field(
        description="Each asked project's request rate quota (None: unlimited).")
    grants: dict[str, Grant] = Field(default_factory=dict)


class QuotaService:
    """Quotas and usage per project over a :class:`StateStore`.

    ``exchange`` is the ingress replicas' data-plane feed: it takes no caller and answers
    only the platform itself (see :func:`mlray._private.transport.service_arguments`).
    """

    PLATFORM = frozenset({"exchange"})

    def __init__(self, store: StateStore, clock: Callable[[], float] = time.time) -> None:
        self._store, self._clock = store, clock
        self.meter = UsageMeter(store, clock)
        self._ledger = RateLedger()
        self._limits: dict[str, tuple[float, QuotaLimits]] = {}

    # -- quotas ------------------------------------------------------------------------------

    @boundary
    def set_quotas(self, caller: Caller, project: Project, limits: dict[str, Any], *,
                   replace: bool = False) -> QuotaLimits:
        """Set some of ``project``'s quotas ({quota: limit or None for unlimited}); the
        others stay as they are unless ``replace``. Admins of every project only (a
        project's own admin must not lift its limits); audited."""
        caller.require(ALL_PROJECTS, Role.admin)
        doc = self._store.get(QUOTAS, project)
        before = QuotaLimits() if doc is None or replace else QuotaLimits.model_validate(
            doc.data)
        updated = build(QuotaLimits, "limits", **{**before.model_dump(), **limits})
        self._store.apply(
            [Put(collection=QUOTAS, key=project, data=updated.model_dump(mode="json"),
                 expected_version=doc.version if doc else 0)],
            AuditEntry(user=caller.user, project=project, action="quotas.set", target=project,
                       before=None if doc is None else doc.data,
                       after=updated.model_dump(mode="json")))
        self._limits.pop(project, None)
        return updated

    @boundary
    def get_quotas(self, caller: Caller, project: Project) -> QuotaLimits:
        """``project``'s quotas (None fields are unlimited)."""
        caller.require(project, Role.viewer)
        return read_limits(self._store, project)

    # -- usage -------------------------------------------------------------------------------

    @boundary
    def usage(self, caller: Caller, project: Project, since: float | None = None
              ) -> UsageReport:
        """What ``project`` used since ``since`` (Unix time; default: ever), with its
        quotas. Requests and replica-seconds count from the hour holding ``since``."""
        caller.require(project, Role.viewer)
        from mlray.registry._documents import MODELS, VERSIONS
        from mlray.registry.served import planned_versions, served_pairs
        from mlray.tracking.jobs import JOBS

        jobs = [d.data for d in self._store.list(JOBS, where={"project": project})]
        storage = storage_in_use(self._store, project)
        report = self.meter.report(project, since or 0.0, jobs, storage)
        in_use = {"models": len(self._store.list(MODELS, prefix=f"{project}/")),
                  "versions": len(self._store.list(VERSIONS, prefix=f"{project}/")),
                  **self.meter.deployed(project), "storage_bytes": storage,
                  "deployments": len(served_pairs(planned_versions(self._store, project)))}
        return report.model_copy(update={"limits": read_limits(self._store, project),
                                         "in_use": in_use})

    # -- the request rate, for ingress replicas ------------------------------------------------

    def _rate(self, project: str) -> float | None:
        now = self._clock()
        cached = self._limits.get(project)
        if cached is None or now - cached[0] > LIMITS_TTL_S:
            cached = self._limits[project] = (now, read_limits(self._store, project))
        return cached[1].requests_per_s

    @boundary
    def exchange(self, projects: list[Project], wants: dict[Project, int] | None = None,
                 admitted: dict[Project, int] | None = None,
                 refused: dict[Project, int] | None = None) -> Exchange:
        """An ingress replica's periodic call: record its request counts (durably, before
        answering), lease the tokens it ``wants`` and tell it each project's rate quota."""
        asked = set(projects) | set(wants or {}) | set(admitted or {}) | set(refused or {})
        counts: dict[str, dict[str, float]] = {}
        for name, per_project in (("requests", admitted), ("requests_refused", refused)):
            for project, n in (per_project or {}).items():
                counts.setdefault(project, {})[name] = n
        self.meter.add(counts)
        limits = {p: self._rate(p) for p in sorted(asked)}
        grants = {}
        for project, want in (wants or {}).items():
            rps = limits.get(project)
            if rps is not None and want > 0:
                grants[project] = self._ledger.lease(project, want, rps)
        return Exchange(limits=limits, grants=grants)
