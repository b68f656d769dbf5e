"""Values a control-plane actor derives, exported as Ray gauges for Prometheus.

A daemon thread sets every ``(metric, labels, value, ts)`` sample the actor's service
gives (``values(caller, project)`` for each of its ``projects()``) as a
:class:`ray.util.metrics.Gauge` every ``EXPORT_S``; Ray's metrics agent serves them
beside the data plane's metrics (``ray_<metric>``). A series that is no longer given
(a version without traffic in the window) is set to NaN once, rather than left at its
last value.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from ray.util.metrics import Gauge

from actors._shell import ServiceActor
from mlray.config import PlatformConfig
from mlray.identity import Caller

__all__ = ["GaugeExportingActor", "export_gauges"]

log = logging.getLogger("mlray.gauges")

Sample = tuple[str, Mapping[str, str], float, float]


def export_gauges(source: Callable[[], Iterable[Sample]], period_s: float, name: str
                  ) -> threading.Thread:
    """Start the thread that sets ``source()``'s samples as gauges every ``period_s``."""
    if not period_s > 0:
        raise ValueError(f"period_s must be > 0 (got {period_s})")
    gauges: dict[tuple[str, tuple[str, ...]], Gauge] = {}
    last: dict[tuple[str, tuple[tuple[str, str], ...]], Gauge] = {}

    def run() -> None:
        stop = threading.Event()
        while not stop.wait(period_s):
            try:
                current: dict[tuple[str, tuple[tuple[str, str], ...]], Gauge] = {}
                for metric, labels, value, _ in source():
                    keys = tuple(sorted(labels))
                    gauge = gauges.get((metric, keys))
                    if gauge is None:
                        gauge = gauges[(metric, keys)] = Gauge(
                            metric, f"mlray {name}: {metric}", tag_keys=keys)
                    gauge.set(value, dict(labels))
                    current[(metric, tuple(sorted(labels.items())))] = gauge
                for key in last.keys() - current.keys():  # series that ended: no value
                    last[key].set(float("nan"), dict(key[1]))
                last.clear()
                last.update(current)
            except Exception:  # keep exporting; the next round retries
                log.exception("exporting %s values failed", name)

    thread = threading.Thread(target=run, name=f"{name}-gauges", daemon=True)
    thread.start()
    return thread


class GaugeExportingActor(ServiceActor):
    """A service actor whose values are exported as gauges; calls take turns with the
    exporter (one lock)."""

    EXPORT_S: ClassVar[float] = 5.0
    #: Values kept for alert rules but exported as gauges elsewhere (by the data plane).
    NOT_EXPORTED: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, config: PlatformConfig) -> None:
        super().__init__(config)
        self._caller = Caller.local_admin(f"mlray-{self.NAME}")
        self._lock = threading.Lock()
        export_gauges(self._all_values, self.EXPORT_S, self.NAME)

    def invoke(self, method: str, credential: str | None = None, *args: Any,
               **kwargs: Any) -> Any:
        """As the base shell, one call at a time with the exporter."""
        with self._lock:
            return super().invoke(method, credential, *args, **kwargs)

    def _all_values(self) -> list[Sample]:
        with self._lock:
            return [s for project in self._service.projects()
                    for s in self._service.values(self._caller, project)
                    if s[0] not in self.NOT_EXPORTED]
