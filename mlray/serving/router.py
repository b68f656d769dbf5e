"""What one ingress replica knows and decides, without Ray.

The replica keeps a local copy of the served models (policies, versions, schemas), which
model apps are up, and a circuit breaker per (model, version). A request is routed on
that copy alone; outcomes are buffered and shipped to the ``breakers`` actor in the
background, and the cluster's breaker states are merged back.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from mlray.errors import NotFound
from mlray.registry.types import ModelVersion, ServedModel
from mlray.serving.breaker import BreakerConfig, BreakerSnapshot, CircuitBreaker
from mlray.serving.model_names import app_name, breaker_key, project_apps
from mlray.serving.traffic import NoHealthyVersion, Route, choose_version

__all__ = ["Router", "VersionOutcomes"]

_LATENCY_SAMPLES = 2048


class VersionOutcomes(BaseModel):
    """What one replica saw of one version since its last sync."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="project/model/version")
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = Field(default_factory=list,
                                      description="A uniform sample of the latencies.")


class _Tally:
    __slots__ = ("errors", "latencies", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latencies: list[float] = []

    def add(self, ok: bool, latency_ms: float, rng: Callable[[], float]) -> None:
        self.requests += 1
        if not ok:
            self.errors += 1
        if len(self.latencies) < _LATENCY_SAMPLES:
            self.latencies.append(latency_ms)
        else:  # reservoir sampling keeps the sample uniform over the interval
            slot = int(rng() * self.requests)
            if slot < _LATENCY_SAMPLES:
                self.latencies[slot] = latency_ms


class Router:
    """Routing state of one ingress replica for one project."""

    def __init__(self, project: str, breaker: BreakerConfig | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random) -> None:
        self.project = project
        self.breaker_config = breaker or BreakerConfig()
        self._clock, self._wall, self._rng = clock, wall, rng
        self.models: dict[str, ServedModel] = {}
        self.ready_apps: frozenset[str] = frozenset()
        self._breakers: dict[str, CircuitBreaker] = {}
        self._tallies: dict[str, _Tally] = {}

    # -- the local copy ---------------------------------------------------------------------

    def update(self, models: dict[str, ServedModel], ready_apps: frozenset[str]) -> None:
        """Replace the copy of served models and running apps (from the background refresh).

        Only this project's model apps are kept: another project's app is never routed to."""
        self.models, self.ready_apps = models, project_apps(ready_apps, self.project)

    def served(self, model: str) -> ServedModel:
        """The model's policy and versions; NotFound when it is not served."""
        served = self.models.get(model)
        if served is None:
            raise NotFound(f"model {model!r} is not served (served: {sorted(self.models)})",
                           field="model")
        return served

    def version(self, model: str, version: int) -> ModelVersion:
        """A version the model's policy names; NotFound otherwise."""
        served = self.served(model)
        found = served.versions.get(version)
        if found is None:
            raise NotFound(f"model {model!r} does not serve version {version} (it serves "
                           f"{sorted(served.versions)})", field="version")
        return found

    def is_ready(self, model: str, version: int) -> bool:
        """Is the version's model app running?"""
        return app_name(self.project, model, version) in self.ready_apps

    # -- routing and breakers --------------------------------------------------------------

    def breaker(self, model: str, version: int) -> CircuitBreaker:
        """The local breaker of (model, version), created closed."""
        key = breaker_key(self.project, model, version)
        found = self._breakers.get(key)
        if found is None:
            found = self._breakers[key] = CircuitBreaker(self.breaker_config, self._clock,
                                                         self._wall)
        return found

    def healthy(self, model: str, version: int) -> bool:
        """Running and its breaker admits calls."""
        return self.is_ready(model, version) and self.breaker(model, version).available()

    def route(self, model: str, *, routing_key: str | None = None,
              pinned: int | None = None) -> Route:
        """Pick the answering version (and shadows) and claim a breaker slot for it.

        Raises:
            NotFound: unknown model, or a pinned version the policy does not name.
            NoHealthyVersion: nothing healthy can answer (503 with Retry-After).
        """
        policy = self.served(model).policy
        route = choose_version(policy, routing_key=routing_key, pinned=pinned,
                               healthy=lambda v: self.healthy(model, v), rng=self._rng)
        if not self.breaker(model, route.version).allow():  # lost a half-open trial slot
            raise NoHealthyVersion(f"{model} v{route.version} is being probed; retry shortly")
        return route

    def retry_after(self, model: str) -> float:
        """Seconds until some version of ``model`` may answer again (at least 1)."""
        served = self.models.get(model)
        waits = [self.breaker(model, v).retry_after() for v in (served.policy.serving
                                                                  if served else [])]
        return max(1.0, min(waits, default=1.0))

    def record(self, model: str, version: int, ok: bool, latency_ms: float) -> None:
        """Count one call's outcome in the version's breaker and tally."""
        breaker = self.breaker(model, version)
        if ok:
            breaker.record_success()
        else:
            breaker.record_failure()
        key = breaker_key(self.project, model, version)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = _Tally()
        tally.add(ok, latency_ms, self._rng)

    # -- sync with the breakers actor ------------------------------------------------------

    def snapshots(self) -> dict[str, BreakerSnapshot]:
        """Every local breaker's state."""
        return {key: b.snapshot() for key, b in self._breakers.items()}

    def merge(self, remote: dict[str, BreakerSnapshot]) -> list[str]:
        """Adopt newer cluster states; returns the keys that changed here."""
        changed = []
        for key, snapshot in remote.items():
            breaker = self._breakers.get(key)
            if breaker is None:
                breaker = self._breakers[key] = CircuitBreaker(self.breaker_config,
                                                               self._clock, self._wall)
                breaker.changed_at = 0.0  # never changed here: any cluster state is newer
            if breaker.merge(snapshot):
                changed.append(key)
        return changed

    def drain_outcomes(self) -> list[VersionOutcomes]:
        """The tallies since the last drain (and start new ones)."""
        tallies, self._tallies = self._tallies, {}
        return [VersionOutcomes(key=k, requests=t.requests, errors=t.errors,
                                latencies_ms=t.latencies) for k, t in tallies.items()]

