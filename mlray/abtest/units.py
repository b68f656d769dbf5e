"""Per-request and per-unit outcomes from the logs, for secondary metrics and CUPED.

:mod:`mlray.abtest.outcomes` keeps running totals per arm; this module keeps the rows:
every logged request of the model in a time window (row 0), joined to its latest
feedback label, with its version and its unit. The unit is the request's routing key
(the sticky key the caller sent, logged by the ingress), or the request itself when it
had none. A metric turns a request's prediction and label into its outcome
(:func:`~mlray.abtest.outcomes.metric_values`); :func:`unit_means` averages the outcomes
per unit, which is how CUPED pairs a unit's experiment-period outcome with its pre-period one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from mlray._private.safepath import safe_name
from mlray.abtest.outcomes import latest_labels
from mlray.storage.fsuri import project_uri

__all__ = ["LabelledRequests", "labelled_requests", "unit_means"]


@dataclass(frozen=True)
class LabelledRequests:
    """Labelled requests, one entry per request, as parallel arrays."""

    version: np.ndarray  # int64: the version that answered
    unit: np.ndarray  # object (str): routing key, or "request:<id>" without one
    score: np.ndarray  # float64: the prediction (NaN when not a number)
    label: np.ndarray  # float64: the latest feedback label

    @classmethod
    def empty(cls) -> LabelledRequests:
        """No requests."""
        return cls(np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0), np.zeros(0))

    def of(self, version: int) -> LabelledRequests:
        """The requests ``version`` answered."""
        keep = self.version == version
        return LabelledRequests(self.version[keep], self.unit[keep], self.score[keep],
                                self.label[keep])


def unit_means(units: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Unit -> the mean of its values."""
    if not units.size:
        return {}
    names, inverse = np.unique(units.astype(str), return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=names.size)
    counts = np.bincount(inverse, minlength=names.size)
    return {str(n): float(s / c) for n, s, c in zip(names, sums, counts, strict=True)}


def _dataset(path: str) -> ds.Dataset | None:
    """The Parquet files under ``path`` (hive partitions), with a ``routing_key`` column
    even where older files have none (read as null)."""
    try:
        found = ds.dataset(path, format="parquet", partitioning="hive")
        if "routing_key" not in found.schema.names:
            found = ds.dataset(path, format="parquet", partitioning="hive",
                               schema=found.schema.append(pa.field("routing_key",
                                                                   pa.string())))
        return found
    except (FileNotFoundError, pa.ArrowInvalid):
        return None


def _micros(seconds: float) -> pa.Scalar:
    return pa.scalar(int(seconds * 1e6), pa.timestamp("us", "UTC"))


def labelled_requests(offline_uri: str, project: str, model: str, since: float,
                      until: float | None = None, versions: list[int] | None = None
                      ) -> LabelledRequests:
    """The labelled requests of ``model`` logged in ``[since, until)`` (epoch seconds; no
    end when ``until`` is None), answered by ``versions`` (every version when None),
    from ``project``'s own logs."""
    safe_name(model, field="model")
    labels = latest_labels(offline_uri, project)
    logged = _dataset(project_uri(offline_uri, project, "predictions", f"model={model}"))
    if labels is None or logged is None or "version" not in logged.schema.names:
        return LabelledRequests.empty()
    where = (ds.field("ts") >= _micros(since)) & (ds.field("row") == 0)
    if until is not None:
        where &= ds.field("ts") < _micros(until)
    if versions is not None:
        where &= ds.field("version").isin(list(versions))
    rows = logged.to_table(columns=["request_id", "version", "routing_key", "prediction"],
                           filter=where)
    joined = rows.join(labels, keys="request_id", join_type="inner")
    if not joined.num_rows:
        return LabelledRequests.empty()
    keys = pc.fill_null(joined["routing_key"], "")
    own = pc.binary_join_element_wise("request:", pc.cast(joined["request_id"], pa.string()),
                                      "")
    unit = pc.if_else(pc.equal(keys, ""), own, keys)
    return LabelledRequests(
        version=joined["version"].to_numpy().astype(np.int64),
        unit=np.asarray(unit.to_pylist(), dtype=object),
        score=pc.cast(joined["prediction"], pa.float64(), safe=False).to_numpy(
            zero_copy_only=False),
        label=joined["label"].to_numpy().astype(np.float64))
