"""Drift, data quality and live performance through the client."""

from __future__ import annotations

from typing import Any

from mlray.client.facade import Who, _Facade
from mlray.client.registry_client import RegistryClient
from mlray.config import PlatformConfig
from mlray.monitoring.drift import DriftReport
from mlray.monitoring.monitor import IngestResult
from mlray.monitoring.performance import PerformanceReport
from mlray.monitoring.quality import QualityReport

__all__ = ["MonitoringClient"]


class MonitoringClient(_Facade):
    """Live drift and data quality of served versions (``monitor`` actor), and live model
    metrics from feedback (read straight from the prediction and feedback logs)."""

    def __init__(self, transport: Any, who: Who, project: str,
                 config: PlatformConfig | None = None,
                 registry: RegistryClient | None = None) -> None:
        super().__init__("monitor", transport, who, project)
        self._config, self._registry = config, registry

    def performance(self, model: str, version: int, *, window_s: float = 86_400.0
                    ) -> PerformanceReport:
        """Accuracy, F1, ROC AUC (or RMSE/MAE) of ``model`` v``version`` on the feedback
        received for its logged predictions of the last ``window_s``, beside its
        evaluation metrics; feedback for unknown request ids is counted."""
        from mlray.monitoring.performance import live_performance, version_task

        assert self._config is not None and self._registry is not None
        mv = self._registry.get_version(model, version)
        return live_performance(self._config.offline_uri or "", self.project, model, version,
                                task=version_task(mv), window_s=window_s,
                                evaluation=dict(mv.metrics))

    def ingest(self, sketches: list[dict[str, Any]]) -> IngestResult:
        """Ship sketch envelopes (what ingress replicas do in the background)."""
        return self._transport.call("monitor", "ingest", self._who, sketches)

    def drift(self, model: str, version: int | None = None, *, window_s: float | None = None,
              rows: int | None = None) -> DriftReport:
        """Drift of live traffic against the version's training baseline.

        ``version`` None: the newest version with monitored traffic; ``window_s`` None:
        the monitor's default window; ``rows``: the newest buckets holding that many rows.
        """
        return self._call("drift", model, version, window_s=window_s, rows=rows, read=True)

    def quality(self, model: str, version: int | None = None, *,
                window_s: float | None = None, rows: int | None = None) -> QualityReport:
        """Data-quality checks of live inputs over the same windows as :meth:`drift`."""
        return self._call("quality", model, version, window_s=window_s, rows=rows, read=True)

    def values(self, window_s: float | None = None
               ) -> list[tuple[str, dict[str, str], float, float]]:
        """The project's monitored values as alert-engine samples."""
        return self._call("values", window_s=window_s, read=True)
