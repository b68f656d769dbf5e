"""The ``monitor`` actor: a thin shell over :class:`mlray.monitoring.monitor.Monitor`.

A background thread sets the monitor's values every ``EXPORT_S`` — drift statistics per
feature, drift share, data-quality ratios — as Ray gauges, so Prometheus scrapes them
beside the data plane's metrics (``ray_mlray_drift_psi``, ``ray_mlray_drift_share``...).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import ray
from ray.util.metrics import Gauge

from actors._shell import ServiceActor
from mlray.identity import Caller

__all__ = ["MonitorActor"]

EXPORT_S = 5.0
log = logging.getLogger("mlray.monitor")


@ray.remote(max_concurrency=2)
class MonitorActor(ServiceActor):
    """Sliding windows of live sketches per model version; drift, quality, alert samples."""

    NAME = "monitor"
    API = frozenset({"ingest", "drift", "quality", "values"})

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        self._gauges: dict[tuple[str, tuple[str, ...]], Gauge] = {}
        self._caller = Caller.local_admin("mlray-monitor")
        self._lock = threading.Lock()
        threading.Thread(target=self._export_forever, name="monitor-export",
                         daemon=True).start()

    def invoke(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """As the base shell, one call at a time with the exporter."""
        with self._lock:
            return super().invoke(method, *args, **kwargs)

    def _export_forever(self) -> None:
        stop = threading.Event()
        while not stop.wait(EXPORT_S):
            try:
                with self._lock:
                    samples = [s for project in self._service.projects()
                               for s in self._service.values(self._caller, project)]
                for metric, labels, value, _ in samples:
                    keys = tuple(sorted(labels))
                    gauge = self._gauges.get((metric, keys))
                    if gauge is None:
                        gauge = self._gauges[(metric, keys)] = Gauge(
                            metric, f"mlray monitor: {metric}", tag_keys=keys)
                    gauge.set(value, dict(labels))
            except Exception:  # keep exporting; the next round retries
                log.exception("exporting monitor values failed")
