"""Arm totals from the logs: each logged request of a version joined to its feedback.

The unit is a request (the prediction log's ``request_id``, its first row); its outcome
is the latest feedback label for that request id and row 0. Totals are recomputed from
the Parquet logs at each look (one Arrow scan and hash join per arm), so a restarted
service loses nothing and late feedback counts as soon as it lands.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mlray._private.safepath import safe_name
from mlray.abtest.experiment import ArmTotals
from mlray.storage.fsuri import project_uri

__all__ = ["arm_totals"]


def _dataset(path: str) -> ds.Dataset | None:
    try:
        return ds.dataset(path, format="parquet", partitioning="hive")
    except (FileNotFoundError, pa.ArrowInvalid):
        return None


def _labels(offline_uri: str, project: str) -> pa.Table | None:
    """The latest label per request id (row 0)."""
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


def _totals(predictions: pa.Table, labels: pa.Table | None) -> ArmTotals:
    totals = ArmTotals(requests=predictions.num_rows)
    if labels is None or not predictions.num_rows:
        return totals
    joined = predictions.join(labels, keys="request_id", join_type="inner")
    if not joined.num_rows:
        return totals
    y = joined["label"].to_numpy().astype(np.float64)
    totals.labelled = int(y.size)
    totals.total = float(y.sum())
    totals.total_sq = float(np.dot(y, y))
    scores = pc.cast(joined["prediction"], pa.float64(), safe=False).to_numpy(
        zero_copy_only=False)
    probable = np.isfinite(scores) & (scores >= 0) & (scores <= 1) & np.isin(y, (0.0, 1.0))
    totals.scored = int(probable.sum())
    totals.correct = int(((scores[probable] >= 0.5) == (y[probable] == 1.0)).sum())
    return totals


def arm_totals(offline_uri: str, project: str, model: str, versions: list[int],
               since: float) -> dict[int, ArmTotals]:
    """Per version, its requests logged since ``since`` (epoch seconds) and their
    outcomes (``project``'s own logs only)."""
    safe_name(model, field="model")
    start = pa.scalar(int(since * 1e6), pa.timestamp("us", "UTC"))
    labels = _labels(offline_uri, project)
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
        out[version] = _totals(predictions, labels)
    return out
