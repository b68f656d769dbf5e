"""The platform's own evaluation of a model version: the numbers its validation gates see.

The registry calls :func:`evaluate_artifact` in its own process with the version's
artifact (fetched and sha256-checked from the artifact store) and a labelled Parquet
file (also read from the artifact store), so the metrics and the latency in the report
come from the model itself, never from what a caller typed in.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import pandas as pd

from mlray.errors import InvalidInput
from mlray.models.predictor import Predictor
from mlray.registry.gates import GateReport, GateSpec, evaluate_gates
from mlray.training.evaluation import classification_metrics, regression_metrics

__all__ = ["MAX_DATA_BYTES", "evaluate_artifact"]

#: The largest evaluation data the platform reads into its own memory.
MAX_DATA_BYTES = 512 * 1024 * 1024


def evaluate_artifact(model_dir: Path, data: Path, label: str, gates: list[GateSpec],
                      production_metrics: dict[str, float] | None,
                      allowed: Collection[str] = ()) -> GateReport:
    """Load the model in ``model_dir``, score it on the Parquet file ``data`` (the
    ``label`` column is the truth), time a warm batch, and evaluate ``gates``.

    Raises:
        PermissionDenied: the model's architecture is not allowed (nothing was imported).
        InvalidInput: the data lacks ``label`` or a feature, has no rows, or is over
            :data:`MAX_DATA_BYTES`.
    """
    size = (sum(f.stat().st_size for f in data.rglob("*") if f.is_file()) if data.is_dir()
            else data.stat().st_size)
    if size > MAX_DATA_BYTES:
        raise InvalidInput(f"evaluation data is {size:,} bytes; the platform evaluates at most "
                           f"{MAX_DATA_BYTES:,} (sample it)", field="data")
    predictor = Predictor.from_directory(model_dir, allowed)
    frame = pd.read_parquet(data)
    if label not in frame.columns:
        raise InvalidInput(f"evaluation data has no label column {label!r}", field="label")
    if frame.empty:
        raise InvalidInput("evaluation data has no rows", field="data")
    missing = [c for c in predictor.features if c not in frame.columns]
    if missing:
        raise InvalidInput(f"evaluation data lacks feature(s) {missing}", field="data")
    x = predictor.preprocessor.transform(frame)
    scores = predictor.predict_matrix(x)
    truth = frame[label].to_numpy()
    metrics = (classification_metrics(truth, scores) if predictor.task == "classification"
               else regression_metrics(truth, scores))
    metrics = {k: v for k, v in metrics.items() if np.isfinite(v)}
    latency = None
    if any(g.kind == "latency" for g in gates):
        batch = max(g.batch_size for g in gates if g.kind == "latency")
        latency = predictor.latency_p99_ms(np.resize(x, (batch, x.shape[1])).astype(np.float32))
    report = evaluate_gates(gates, metrics, production_metrics, latency)
    return report.model_copy(update={"metrics": metrics})
