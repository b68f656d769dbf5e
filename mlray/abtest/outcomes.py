"""Arm totals from the logs: each logged request of a version joined to its feedback.

The unit is a request (the prediction log's ``request_id``, its first row) with a
feedback label (the latest for that request id and row 0). Its outcome depends on the
experiment's metric (:data:`~mlray.abtest.experiment.MODEL_METRICS`):

* ``correct``: 1 when the prediction (a probability, read at 0.5) agrees with a 0/1
  label, else 0 - units are the labelled requests scored with a probability;
* ``caught``: of those, only the requests labelled 1; 1 when the score is >= 0.5 (the
  share of positives the model catches, say fraud caught);
* any other name (``conversion``, ``loss_amount``): the label itself.

Only the first two depend on which version answered. Totals are recomputed from the
Parquet logs at each look (one Arrow scan and hash join per arm), so a restarted service
loses nothing and late feedback counts as soon as it lands.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mlray._private.safepath import safe_name
from mlray.abtest.experiment import ArmTotals, ModelMetric
from mlray.storage.fsuri import project_uri

__all__ = ["arm_totals", "latest_labels", "metric_values", "outcomes"]


def _dataset(path: str) -> ds.Dataset | None:
    try:
        return ds.dataset(path, format="parquet", partitioning="hive")
    except (FileNotFoundError, pa.ArrowInvalid):
        return None


def latest_labels(offline_uri: str, project: str) -> pa.Table | None:
    """The latest label per request id (row 0): columns request_id, label."""
    feedback = _dataset(project_uri(offline_uri, project, "feedback"))
    if feedback is None:
        return None
    labels = feedback.to_table(columns=["request_id", "label", "ts"],
                               filter=ds.field("row") == 0)
    if not labels.num_rows:
        return None
    labels = labels.sort_by([("ts", "ascending")])
    last = {k: i for i, k in enumerate(labels["request_id"].to_pylist())}
    return labels.take(pa.array(sorted(last.values()), pa.int64())).select(
        ["request_id", "label"])


def metric_values(metric: str, score: np.ndarray, label: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(in_sample, outcome)`` per labelled request for ``metric``.

    ``correct``: requests with a probability and a 0/1 label; 1 when the score is on the
    label's side of 0.5. ``caught``: requests labelled 1 with a probability; 1 when the
    score is >= 0.5. Any other name: every request, the label itself.
    """
    probable = np.isfinite(score) & (score >= 0) & (score <= 1)
    if metric == ModelMetric.correct:
        mask = probable & np.isin(label, (0.0, 1.0))
        return mask, ((score >= 0.5) == (label == 1.0)).astype(np.float64)
    if metric == ModelMetric.caught:
        mask = probable & (label == 1.0)
        return mask, (score >= 0.5).astype(np.float64)
    return np.ones(label.shape, bool), label.astype(np.float64)


def outcomes(metric: str, labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each unit's outcome under ``metric``, from the labels and the predictions of the
    labelled requests (one each, same order); requests that are no unit of the metric
    are left out (see the module docstring)."""
    keep, values = metric_values(metric, scores, labels)
    return values[keep]


def _totals(predictions: pa.Table, labels: pa.Table | None, metric: str) -> ArmTotals:
    totals = ArmTotals(requests=predictions.num_rows)
    if labels is None or not predictions.num_rows:
        return totals
    joined = predictions.join(labels, keys="request_id", join_type="inner")
    if not joined.num_rows:
        return totals
    y = joined["label"].to_numpy().astype(np.float64)
    scores = pc.cast(joined["prediction"], pa.float64(), safe=False).to_numpy(
        zero_copy_only=False)
    outcome = outcomes(metric, y, scores)
    totals.labelled = int(outcome.size)
    totals.total = float(outcome.sum())
    totals.total_sq = float(np.dot(outcome, outcome))
    scored = outcomes(ModelMetric.correct, y, scores)
    totals.scored = int(scored.size)
    totals.correct = int(scored.sum())
    return totals


def arm_totals(offline_uri: str, project: str, model: str, versions: list[int],
               since: float, metric: str = "conversion") -> dict[int, ArmTotals]:
    """Per version, its requests logged since ``since`` (epoch seconds) and their
    outcomes under ``metric`` (``project``'s own logs only)."""
    safe_name(model, field="model")
    start = pa.scalar(int(since * 1e6), pa.timestamp("us", "UTC"))
    labels = latest_labels(offline_uri, project)
    out = {}
    for version in versions:
        logged = _dataset(project_uri(offline_uri, project, "predictions", f"model={model}",
                                      f"version={version}"))
        if logged is None:
            out[version] = ArmTotals()
            continue
        predictions = logged.to_table(
            columns=["request_id", "prediction"],
            filter=(ds.field("ts") >= start) & (ds.field("row") == 0))
        out[version] = _totals(predictions, labels, metric)
    return out
