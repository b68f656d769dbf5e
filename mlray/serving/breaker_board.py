"""The cluster-wide breaker board and live outcome windows (the ``breakers`` actor's logic).

Ingress replicas call :meth:`BreakerBoard.sync` in the background with their breaker
snapshots and the outcomes they tallied; the board keeps, per (model, version), the
snapshot that changed last (persisted before it answers, so a restarted actor hands the
same states back) and a time window of outcomes that rollouts judge canaries by.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlray._private.types import Name, Project
from mlray._private.validation import boundary
from mlray.identity import Caller, Role
from mlray.serving.breaker import BREAKER_LEVEL, BreakerSnapshot
from mlray.serving.model_names import breaker_key
from mlray.serving.router import VersionOutcomes
from mlray.storage.base import Put, StateStore

__all__ = ["BREAKERS", "BreakerBoard", "VersionStats"]

BREAKERS = "breakers"


class VersionStats(BaseModel):
    """Live figures of one version over a recent window."""

    model_config = ConfigDict(frozen=True)

    key: str
    window_s: float
    requests: int
    errors: int
    error_rate: float = Field(description="errors / requests (0 without requests)")
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


class BreakerBoard:
    """Breaker states and outcome windows for every served (model, version)."""

    #: Methods that take no caller and answer only the platform (admin of every project).
    PLATFORM = frozenset({"sync", "states", "stats", "forget", "projects"})

    def __init__(self, store: StateStore, horizon_s: float = 3600.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._horizon_s = horizon_s
        self._clock = clock
        self._states = {d.key: BreakerSnapshot.model_validate(d.data)
                        for d in store.list(BREAKERS)}
        self._outcomes: dict[str, deque[tuple[float, VersionOutcomes]]] = {}

    @boundary
    def sync(self, snapshots: dict[str, BreakerSnapshot],
             outcomes: list[VersionOutcomes]) -> dict[str, BreakerSnapshot]:
        """Merge a replica's breaker states and outcomes; returns the cluster's states."""
        changed = {}
        for key, snapshot in snapshots.items():
            known = self._states.get(key)
            if known is None or snapshot.changed_at > known.changed_at:
                changed[key] = snapshot
        if changed:
            self._store.apply([Put(collection=BREAKERS, key=k, data=s.model_dump(mode="json"))
                               for k, s in changed.items()])
            self._states.update(changed)
        now = self._clock()
        for outcome in outcomes:
            window = self._outcomes.setdefault(outcome.key, deque())
            window.append((now, outcome))
            while window and now - window[0][0] > self._horizon_s:
                window.popleft()
        return dict(self._states)

    def states(self) -> dict[str, BreakerSnapshot]:
        """Every known breaker state, by ``project/model/version``."""
        return dict(self._states)

    @boundary
    def stats(self, key: str, window_s: float = Field(60.0, gt=0, le=86_400)) -> VersionStats:
        """Requests, errors and latency percentiles of ``key`` over the last ``window_s``."""
        since = self._clock() - window_s
        recent = [o for t, o in self._outcomes.get(key, ()) if t >= since]
        requests = sum(o.requests for o in recent)
        errors = sum(o.errors for o in recent)
        latencies = np.fromiter((x for o in recent for x in o.latencies_ms), dtype=np.float64)
        p50, p95, p99 = (np.percentile(latencies, [50, 95, 99]).tolist() if latencies.size
                         else (None, None, None))
        return VersionStats(key=key, window_s=window_s, requests=requests, errors=errors,
                            error_rate=errors / requests if requests else 0.0,
                            p50_ms=p50, p95_ms=p95, p99_ms=p99)

    def projects(self) -> set[str]:
        """Projects with a breaker or outcomes here."""
        return {key.split("/", 1)[0] for key in (*self._states, *self._outcomes)}

    @boundary
    def values(self, caller: Caller, project: Project,
               window_s: float = Field(60.0, gt=0, le=86_400)
               ) -> list[tuple[str, dict[str, str], float, float]]:
        """The project's live serving figures as alert samples ``(metric, labels, value,
        ts)``: breaker state, and for versions with traffic in the window the error ratio
        and the latency quantiles (seconds)."""
        caller.require(project, Role.viewer)
        now, out = self._clock(), []
        for key in sorted({*self._states, *self._outcomes}):
            owner, model, version = key.split("/")
            if owner != project:
                continue
            labels = {"project": owner, "model": model, "version": version}
            state = self._states.get(key)
            if state is not None:
                out.append(("mlray_breaker_state", labels,
                            float(BREAKER_LEVEL[state.state.value]), now))
            stats = self.stats(key, window_s)
            if not stats.requests:
                continue
            out.append(("mlray_request_error_ratio", labels, stats.error_rate, now))
            for quantile, ms in (("0.5", stats.p50_ms), ("0.95", stats.p95_ms),
                                 ("0.99", stats.p99_ms)):
                if ms is not None:
                    out.append(("mlray_request_latency_quantile_seconds",
                                {**labels, "quantile": quantile}, ms / 1e3, now))
        return out

    def breaker_states(self, caller: Caller, project: Project) -> dict[str, BreakerSnapshot]:
        """The project's breakers, by ``model/version``."""
        caller.require(project, Role.viewer)
        prefix = f"{project}/"
        return {k[len(prefix):]: s for k, s in self._states.items() if k.startswith(prefix)}

    @boundary
    def version_stats(self, caller: Caller, project: Project, model: Name, version: int,
                      window_s: float = 60.0) -> VersionStats:
        """Live figures of one version over the last ``window_s`` seconds."""
        caller.require(project, Role.viewer)
        return self.stats(breaker_key(project, model, version), window_s)

    def forget(self, key: str) -> None:
        """Drop a deleted version's breaker and outcomes."""
        if key in self._states:
            self._store.delete(BREAKERS, key)
            del self._states[key]
        self._outcomes.pop(key, None)
