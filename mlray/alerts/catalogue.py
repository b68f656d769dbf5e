"""The catalogue of metrics mlray monitoring exports: the names alert rules and dashboards use.

Every series carries ``project``, ``model`` and ``version`` unless noted (two projects'
models of one name are two series). Counters end in ``_total``;
histograms are exported as ``<name>_bucket``/``_sum``/``_count`` and, where alert rules
need a plain number, the breakers actor also exports a derived gauge (the latency quantiles,
the error ratio). Names here are without the exporter's prefix: through Ray's metrics
pipeline Prometheus sees ``ray_<name>`` (see :mod:`mlray.monitoring.grafana`).

This list is the contract between the code that records metrics, the alert rules
(:func:`mlray.alerts.rules.load_rules` refuses other names) and the Grafana dashboard
(whose test checks every query against it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["METRICS", "METRIC_NAMES", "MetricInfo", "metric_info"]

MetricKind = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricInfo:
    """One exported metric: its name, kind, labels beyond project/model/version, and meaning."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()


_MV = ("project", "model", "version")

METRICS: tuple[MetricInfo, ...] = (
    # Operational, from the ingress and model apps.
    MetricInfo("mlray_requests_total", "counter",
               "Prediction requests received by a model version.", _MV),
    MetricInfo("mlray_request_errors_total", "counter",
               "Requests answered with an error, by error code (e.g. timeout, "
               "prediction_failed, invalid_input).", (*_MV, "code")),
    MetricInfo("mlray_request_error_ratio", "gauge",
               "Derived by the breakers actor: errors / requests over the last minute "
               "(0..1).", _MV),
    MetricInfo("mlray_request_latency_seconds", "histogram",
               "End-to-end request latency at the ingress, in seconds.", _MV),
    MetricInfo("mlray_request_latency_quantile_seconds", "gauge",
               "Derived by the breakers actor: latency quantiles over the last minute; label "
               "quantile is 0.5, 0.95 or 0.99.", (*_MV, "quantile")),
    MetricInfo("mlray_batch_size", "histogram",
               "Rows per batch handed to the model by Serve's batching.", _MV),
    MetricInfo("mlray_cache_hits_total", "counter",
               "Predictions answered from the ingress prediction cache.", _MV),
    MetricInfo("mlray_cache_misses_total", "counter",
               "Cache lookups that went on to the model.", _MV),
    MetricInfo("mlray_breaker_state", "gauge",
               "Circuit breaker of the version: 0 closed, 1 half-open, 2 open.", _MV),
    MetricInfo("mlray_rate_limited_total", "counter",
               "Requests refused with 429 by the ingress rate limiter (no version label).",
               ("model",)),
    # Drift, per feature (feature="__prediction__" for the model's output).
    MetricInfo("mlray_drift_psi", "gauge",
               "Population stability index of a feature against the training baseline.",
               (*_MV, "feature", "window")),
    MetricInfo("mlray_drift_kl", "gauge",
               "Kullback-Leibler divergence (current || baseline) of a feature.",
               (*_MV, "feature", "window")),
    MetricInfo("mlray_drift_js", "gauge",
               "Jensen-Shannon distance of a feature against the baseline (0..1).",
               (*_MV, "feature", "window")),
    MetricInfo("mlray_drift_ks", "gauge",
               "Kolmogorov-Smirnov statistic of a numeric feature (binned CDFs).",
               (*_MV, "feature", "window")),
    MetricInfo("mlray_drift_ks_pvalue", "gauge",
               "p-value of the Kolmogorov-Smirnov test of a numeric feature.",
               (*_MV, "feature", "window")),
    MetricInfo("mlray_drift_chi2_pvalue", "gauge",
               "p-value of the chi-square test of a categorical feature.",
               (*_MV, "feature", "window")),
    MetricInfo("mlray_drift_share", "gauge",
               "Share of features whose drift tests exceed their thresholds (0..1).",
               (*_MV, "window")),
    # Data quality of live inputs, per feature.
    MetricInfo("mlray_quality_missing_ratio", "gauge",
               "Share of live rows with the feature missing.", (*_MV, "feature")),
    MetricInfo("mlray_quality_out_of_range_ratio", "gauge",
               "Share of live values outside the baseline's [min, max].", (*_MV, "feature")),
    MetricInfo("mlray_quality_type_mismatch_ratio", "gauge",
               "Share of live values of the wrong type.", (*_MV, "feature")),
    MetricInfo("mlray_quality_unseen_category_ratio", "gauge",
               "Share of live categorical values absent from the baseline.", (*_MV, "feature")),
    # Ground truth (once feedback arrives).
    MetricInfo("mlray_model_accuracy", "gauge", "Accuracy over the window.", (*_MV, "window")),
    MetricInfo("mlray_model_precision", "gauge", "Precision over the window.",
               (*_MV, "window")),
    MetricInfo("mlray_model_recall", "gauge", "Recall over the window.", (*_MV, "window")),
    MetricInfo("mlray_model_f1", "gauge", "F1 score over the window.", (*_MV, "window")),
    MetricInfo("mlray_model_roc_auc", "gauge", "ROC AUC over the window.", (*_MV, "window")),
    MetricInfo("mlray_model_rmse", "gauge", "RMSE over the window (regression).",
               (*_MV, "window")),
    MetricInfo("mlray_model_mae", "gauge", "MAE over the window (regression).",
               (*_MV, "window")),
    MetricInfo("mlray_feedback_total", "counter", "Labels joined to logged predictions.", _MV),
    MetricInfo("mlray_feedback_unknown_total", "counter",
               "Feedback for request ids with no logged prediction (no labels).", ()),
)

#: The exported metric names (without the exporter's prefix).
METRIC_NAMES: frozenset[str] = frozenset(m.name for m in METRICS)

_BY_NAME = {m.name: m for m in METRICS}


def metric_info(name: str) -> MetricInfo | None:
    """The catalogue entry of ``name``, or None when mlray does not export it."""
    return _BY_NAME.get(name)
