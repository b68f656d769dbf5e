"""The ``monitor`` actor: a thin shell over :class:`mlray.monitoring.monitor.Monitor`.

A background thread sets the monitor's values every 5 s — drift statistics per feature,
drift share, data-quality ratios, live model metrics once feedback joins — as Ray
gauges, so Prometheus scrapes them beside the data plane's metrics
(``ray_mlray_drift_psi``, ``ray_mlray_drift_share``...).
"""

from __future__ import annotations

import ray

from actors._gauges import GaugeExportingActor

__all__ = ["MonitorActor"]


@ray.remote(max_concurrency=2)
class MonitorActor(GaugeExportingActor):
    """Sliding windows of live sketches per model version; drift, quality, alert samples."""

    NAME = "monitor"
    API = frozenset({"ingest", "drift", "quality", "values", "projects"})
