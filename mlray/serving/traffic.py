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

from mlray.errors import BackendUnavailable, NotFound
from mlray.registry.types import TrafficPolicy  # stored by the registry; routed by here

__all__ = ["NoHealthyVersion", "Route", "TrafficPolicy", "choose_version", "key_fraction"]


class NoHealthyVersion(BackendUnavailable):
    """Every version that could answer is unhealthy (breaker open or not ready)."""

    code = "no_healthy_version"


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
