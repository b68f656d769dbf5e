"""Operational metrics of the serving data plane, through Ray's metrics pipeline.

Recorded in the ingress and model replicas with :mod:`ray.util.metrics`; every Ray node's
metrics agent serves them in Prometheus text at ``http://<node>:<MetricsExportPort>/metrics``
(``ray start --metrics-export-port``), the target a Prometheus scraping a Ray cluster
already has, with a ``ray_`` prefix (``ray_mlray_requests_total``). The names are those
of the catalogue in :mod:`mlray.alerts.catalogue`, which alert rules and the Grafana
dashboard are checked against.
"""

from __future__ import annotations

from ray.util.metrics import Counter, Gauge, Histogram

from mlray.serving.breaker import BREAKER_LEVEL

__all__ = ["LATENCY_BOUNDARIES_S", "RECORDED", "ModelMetrics",
           "ServingMetrics"]

LATENCY_BOUNDARIES_S = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
_MV = ("project", "model", "version")
#: What the data plane records (names as in the catalogue, without Ray's prefix).
RECORDED = ("mlray_requests_total", "mlray_request_errors_total",
            "mlray_request_latency_seconds", "mlray_batch_size", "mlray_cache_hits_total",
            "mlray_cache_misses_total", "mlray_breaker_state", "mlray_rate_limited_total")


class ServingMetrics:
    """The ingress's metrics; every series carries the ingress's ``project``, so two
    projects' models of one name never share a series."""

    def __init__(self, project: str) -> None:
        self.project = project
        self.requests = Counter("mlray_requests_total", "Prediction requests.", tag_keys=_MV)
        self.errors = Counter("mlray_request_errors_total", "Requests answered with an error.",
                              tag_keys=(*_MV, "code"))
        self.latency = Histogram("mlray_request_latency_seconds",
                                 "Prediction latency in the ingress.",
                                 boundaries=LATENCY_BOUNDARIES_S, tag_keys=_MV)
        self.hits = Counter("mlray_cache_hits_total", "Answers from the prediction cache.",
                            tag_keys=_MV)
        self.misses = Counter("mlray_cache_misses_total", "Cache lookups that went on.",
                              tag_keys=_MV)
        self.breaker = Gauge("mlray_breaker_state", "0 closed, 1 half-open, 2 open.",
                             tag_keys=_MV)
        self.limited = Counter("mlray_rate_limited_total", "Requests refused with 429.",
                               tag_keys=("project", "model"))

    def request(self, model: str, version: int | None, error: str | None,
                seconds: float) -> None:
        """One answered request (``error``: its error code, None when it succeeded)."""
        tags = {"project": self.project, "model": model, "version": str(version or "none")}
        self.requests.inc(1, tags)
        if error is None:
            self.latency.observe(seconds, tags)
        else:
            self.errors.inc(1, {**tags, "code": error})

    def cache_lookup(self, model: str, version: int, hit: bool) -> None:
        """One prediction-cache lookup."""
        (self.hits if hit else self.misses).inc(1, self._tags(model, version))

    def breaker_state(self, model: str, version: int, state: str) -> None:
        """The breaker state a replica sees."""
        self.breaker.set(BREAKER_LEVEL[state], self._tags(model, version))

    def rate_limited(self) -> None:
        """One request refused with 429 (before its model is read)."""
        self.limited.inc(1, {"project": self.project, "model": "all"})

    def _tags(self, model: str, version: int) -> dict[str, str]:
        return {"project": self.project, "model": model, "version": str(version)}


class ModelMetrics:
    """A model replica's metrics (labelled with its project, model and version)."""

    def __init__(self, project: str, model: str, version: int) -> None:
        self.tags = {"project": project, "model": model, "version": str(version)}
        self.batch = Histogram("mlray_batch_size", "Requests per model batch.",
                               boundaries=BATCH_BOUNDARIES, tag_keys=_MV)

    def batch_size(self, size: int) -> None:
        """One batch of ``size`` requests."""
        self.batch.observe(size, self.tags)
