"""The ``breakers`` actor: a thin shell over :class:`mlray.serving.breaker_board.BreakerBoard`.

Every 5 s the board's derived values are exported as Ray gauges
(``ray_mlray_request_error_ratio``, ``ray_mlray_request_latency_quantile_seconds``):
the figures alert rules on errors and latency read. Its breaker states are alert
samples too, but their gauge is the ingress replicas' own.
"""

from __future__ import annotations

import ray

from actors._gauges import GaugeExportingActor

__all__ = ["BreakersActor"]


@ray.remote(max_concurrency=2)
class BreakersActor(GaugeExportingActor):
    """Cluster-wide circuit-breaker states and live outcome windows per model version."""

    NAME = "breakers"
    API = frozenset({"sync", "states", "stats", "forget", "breaker_states", "version_stats",
                     "values", "projects"})
    NOT_EXPORTED = frozenset({"mlray_breaker_state"})  # the ingress replicas export it
