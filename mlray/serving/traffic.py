"""Traffic policies and the routing decision, as plain code.

A policy gives each version of a model a weight, optionally shadow versions that get
a copy of each request and never answer, and whether assignment is sticky. A sticky
request is placed by a stable hash of its routing key, so the same key lands on the
same version on every replica and across restarts; when that version is unhealthy
the key is placed among the healthy ones by the same hash. A pinned version wins.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mlray.errors import BackendUnavailable, NotFound

__all__ = ["NoHealthyVersion", "Route", "TrafficPolicy", "choose_version", "key_fraction"]


class NoHealthyVersion(BackendUnavailable):
    """Every version that could answer is unhealthy (breaker open or not ready)."""

    code = "no_healthy_version"


class TrafficPolicy(BaseModel):
    """How one model's requests are split between its versions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: dict[int, float] = Field(description="Version → share (need not sum to 100).")
    shadows: list[int] = Field(default_factory=list,
                               description="Versions that get a copy and never answer.")
    sticky: bool = Field(True, description="Place requests by a hash of their routing key.")

    @model_validator(mode="after")
    def _check(self) -> TrafficPolicy:
        if not self.weights:
            raise ValueError("weights must name at least one version")
        for version, weight in self.weights.items():
            if version < 1:
                raise ValueError(f"version {version} is not a version number")
            if weight < 0:
                raise ValueError(f"version {version} has a negative weight {weight}")
        if sum(self.weights.values()) <= 0:
            raise ValueError("at least one version needs a positive weight")
        both = sorted(set(self.shadows) & {v for v, w in self.weights.items() if w > 0})
        if both:
            raise ValueError(f"version(s) {both} cannot both answer and shadow")
        return self

    @property
    def serving(self) -> list[int]:
        """Versions with a positive weight, ascending."""
        return sorted(v for v, w in self.weights.items() if w > 0)


@dataclass(frozen=True)
class Route:
    """Where one request goes: the version that answers, and the shadows that get copies."""

    version: int
    shadows: tuple[int, ...]
    failed_over: bool = False


def key_fraction(key: str) -> float:
    """A stable number in [0, 1) for a routing key (same on every process and run)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def _pick(weights: list[tuple[int, float]], u: float) -> int:
    total = sum(w for _, w in weights)
    point = u * total
    for version, weight in weights:
        point -= weight
        if point < 0:
            return version
    return weights[-1][0]


def choose_version(policy: TrafficPolicy, *, routing_key: str | None = None,
                   pinned: int | None = None,
                   healthy: Callable[[int], bool] = lambda v: True,
                   rng: Callable[[], float] = random.random) -> Route:
    """Decide which version answers a request.

    Raises:
        NotFound: the pinned version is not in the policy.
        NoHealthyVersion: the pinned version, or every weighted version, is unhealthy.
    """
    shadows = tuple(v for v in policy.shadows if healthy(v))
    if pinned is not None:
        if pinned not in policy.weights and pinned not in policy.shadows:
            raise NotFound(f"version {pinned} is not served (served: {policy.serving})",
                           field="x-mlray-version")
        if not healthy(pinned):
            raise NoHealthyVersion(f"pinned version {pinned} is unhealthy")
        return Route(pinned, tuple(v for v in shadows if v != pinned))
    u = key_fraction(routing_key) if policy.sticky and routing_key else rng()
    weighted = [(v, policy.weights[v]) for v in policy.serving]
    first = _pick(weighted, u)
    if healthy(first):
        return Route(first, shadows)
    alive = [(v, w) for v, w in weighted if healthy(v)]
    if not alive:
        raise NoHealthyVersion(f"no healthy version among {policy.serving}")
    return Route(_pick(alive, u), shadows, failed_over=True)
