"""The ``monitor`` actor: a thin shell over :class:`mlray.monitoring.monitor.Monitor`."""

from __future__ import annotations

import ray

from actors._shell import ServiceActor

__all__ = ["MonitorActor"]


@ray.remote
class MonitorActor(ServiceActor):
    """Sliding windows of live sketches per model version; drift, quality, alert samples."""

    NAME = "monitor"
    API = frozenset({"ingest", "drift", "quality", "values"})
