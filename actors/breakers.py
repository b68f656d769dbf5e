"""The ``breakers`` actor: a thin shell over :class:`mlray.serving.board.BreakerBoard`."""

from __future__ import annotations

import ray

from actors._shell import ServiceActor

__all__ = ["BreakersActor"]


@ray.remote
class BreakersActor(ServiceActor):
    """Cluster-wide circuit-breaker states and live outcome windows per model version."""

    NAME = "breakers"
    API = frozenset({"sync", "states", "stats", "forget", "breaker_states", "version_stats"})
