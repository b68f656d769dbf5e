"""Ground truth: feedback joined to logged predictions, and the live model metrics.

Labels arrive by request id (and row), possibly hours after the prediction; both sides
are Parquet datasets under the offline store (:mod:`mlray.monitoring.prediction_log`).
The join is one hash join in Arrow; the metrics are the training issue's evaluation
metrics over the joined rows, beside the version's own evaluation metrics. Feedback for
request ids that were never logged (or not sampled) is counted and reported, not raised.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pydantic import BaseModel, Field

from mlray._private.safepath import safe_name
from mlray.errors import InvalidInput
from mlray.storage.fsuri import project_uri
from mlray.training.evaluation import classification_metrics, regression_metrics

__all__ = ["LIVE_METRICS", "PerformanceReport", "live_performance", "performance_source",
           "version_task"]

#: The live model metrics exported as ``mlray_model_<name>`` gauges (the catalogue's).
LIVE_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "rmse", "mae")


class PerformanceReport(BaseModel):
    """Live metrics of one model version over a window, and how much feedback joined."""

    model: str
    version: int
    window_s: float
    predictions: int = Field(description="Logged predicted rows in the window.")
    labelled: int = Field(description="Of those, rows with feedback.")
    unknown_feedback: int = Field(description="Feedback rows matching no logged prediction.")
    metrics: dict[str, float] = Field(default_factory=dict)
    evaluation: dict[str, float] = Field(default_factory=dict,
                                         description="The version's metrics at training.")


def _dataset(path: str) -> ds.Dataset | None:
    try:
        return ds.dataset(path, format="parquet", partitioning="hive")
    except (FileNotFoundError, pa.ArrowInvalid):
        return None


def live_performance(offline_uri: str, project: str, model: str, version: int, *, task: str,
                     window_s: float = 86_400.0, evaluation: dict[str, float] | None = None,
                     now: float | None = None) -> PerformanceReport:
    """Join the version's logged predictions of the last ``window_s`` with their feedback
    (both ``project``'s own: another project's logs are never read).

    Args:
        task: ``classification`` (predictions are probabilities, labels 0/1) or
            ``regression``.

    Raises:
        InvalidInput: an unknown task or a non-positive window.
    """
    if task not in ("classification", "regression"):
        raise InvalidInput(f"task must be classification or regression, not {task!r}",
                           field="task")
    if window_s <= 0:
        raise InvalidInput("window_s must be > 0", field="window_s")
    safe_name(model, field="model")
    since = pa.scalar(int(((now or time.time()) - window_s) * 1e6), pa.timestamp("us", "UTC"))
    report = PerformanceReport(model=model, version=version, window_s=window_s, predictions=0,
                               labelled=0, unknown_feedback=0, evaluation=evaluation or {})
    logged = _dataset(project_uri(offline_uri, project, "predictions", f"model={model}",
                                  f"version={version}"))
    feedback = _dataset(project_uri(offline_uri, project, "feedback"))
    if logged is None:
        return report
    predictions = logged.to_table(columns=["request_id", "row", "prediction"],
                                  filter=ds.field("ts") >= since)
    report.predictions = predictions.num_rows
    if feedback is None or not predictions.num_rows:
        return report
    labels = feedback.to_table(columns=["request_id", "row", "label", "ts"])
    labels = labels.sort_by([("ts", "ascending")])  # the latest label for a row wins
    keys = pc.binary_join_element_wise(labels["request_id"],
                                       pc.cast(labels["row"], pa.string()), "\x1f")
    last = {k: i for i, k in enumerate(keys.to_pylist())}
    labels = labels.take(pa.array(sorted(last.values()), pa.int64()))
    joined = predictions.join(labels.select(["request_id", "row", "label"]),
                              keys=["request_id", "row"], join_type="inner")
    report.labelled = joined.num_rows
    matched = labels.join(predictions.select(["request_id", "row"]),
                          keys=["request_id", "row"], join_type="left semi")
    report.unknown_feedback = labels.num_rows - matched.num_rows
    if joined.num_rows:
        y = joined["label"].to_numpy().astype(np.float64)
        scores = joined["prediction"].to_numpy().astype(np.float64)
        metrics = (classification_metrics(y, scores) if task == "classification"
                   else regression_metrics(y, scores))
        report.metrics = {k: float(v) for k, v in metrics.items() if np.isfinite(v)}
    return report


def version_task(version: Any) -> str:
    """``classification`` when the version outputs a probability, else ``regression``."""
    schema = version.output_schema
    return "classification" if schema and schema[0].name == "probability" else "regression"


def performance_source(offline_uri: str, registry: Any
                       ) -> Callable[[str, str, int, float, float], dict[str, float]]:
    """What the monitor asks for the live metrics of (project, model, version, window_s,
    now): :func:`live_performance` over the offline store, the task read from
    ``registry``."""
    from mlray.identity import Caller

    system = Caller.local_admin("monitor")

    def metrics(project: str, model: str, version: int, window_s: float, now: float
                ) -> dict[str, float]:
        mv = registry.get_version(system, project, model, version)
        report = live_performance(offline_uri, project, model, version, task=version_task(mv),
                                  window_s=window_s, now=now)
        return {k: v for k, v in report.metrics.items() if k in LIVE_METRICS}

    return metrics
