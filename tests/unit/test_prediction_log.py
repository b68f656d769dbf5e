"""The prediction and feedback logs: sampled, batched, readable as one Parquet dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.dataset as ds
import pytest

from mlray.errors import InvalidInput
from mlray.monitoring.prediction_log import FeedbackLog, PredictionLog


def test_predictions_are_batched_per_version_and_read_back(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path), "default", clock=lambda: 1_780_000_000.0)
    cols = {"amount": np.array([1.0, 2.0]), "country": np.array(["DE", None], dtype=object)}
    assert log.add("r1", "fraud", 1, cols, np.array([0.1, 0.9], np.float32), 3.5)
    log.add("r2", "fraud", 2, {k: v[:1] for k, v in cols.items()}, np.array([0.5]), 1.0)
    assert log.pending() == 2
    paths = log.flush()
    assert len(paths) == 2 and log.pending() == 0 and log.logged == 2
    table = ds.dataset(str(tmp_path / "default" / "predictions"), partitioning="hive").to_table()
    rows = sorted(table.to_pylist(), key=lambda r: (r["request_id"], r["row"]))
    assert [(r["request_id"], r["row"], r["version"]) for r in rows] == [
        ("r1", 0, 1), ("r1", 1, 1), ("r2", 0, 2)]
    assert rows[1]["input_country"] is None and rows[1]["prediction"] == pytest.approx(0.9)
    assert rows[0]["model"] == "fraud"


def test_sampling_keeps_the_configured_share(tmp_path: Path) -> None:
    draws = iter([0.05, 0.5, 0.09, 0.95])
    log = PredictionLog(str(tmp_path), "default", sample=0.1, rng=lambda: next(draws))
    kept = [log.add(f"r{i}", "m", 1, {"x": np.ones(1)}, np.ones(1), 1.0) for i in range(4)]
    assert kept == [True, False, True, False]
    with pytest.raises(InvalidInput):
        PredictionLog(str(tmp_path), "default", sample=1.5)


def test_feedback_is_appended(tmp_path: Path) -> None:
    feedback = FeedbackLog(str(tmp_path), "default")
    feedback.write([("r1", 1.0, 0), ("r1", 0.0, 1)])
    table = ds.dataset(str(tmp_path / "default" / "feedback"), partitioning="hive").to_table()
    assert sorted(table.column("label").to_pylist()) == [0.0, 1.0]
    with pytest.raises(InvalidInput):
        feedback.write([])


def test_each_project_logs_under_its_own_directory(tmp_path: Path) -> None:
    """Two projects logging the same model and version, and feedback for the same request
    id, write apart: each reads back only its own rows."""
    for project, label in (("a", 1.0), ("b", 0.0)):
        log = PredictionLog(str(tmp_path), project, clock=lambda: 1_780_000_000.0)
        log.add("r1", "fraud", 1, {"x": np.array([1.0])}, np.array([label]), 1.0)
        log.flush()
        FeedbackLog(str(tmp_path), project).write([("r1", label, 0)])
    for project, label in (("a", 1.0), ("b", 0.0)):
        logged = ds.dataset(str(tmp_path / project / "predictions"), partitioning="hive")
        assert logged.to_table().column("prediction").to_pylist() == [label]
        labels = ds.dataset(str(tmp_path / project / "feedback"), partitioning="hive")
        assert labels.to_table().column("label").to_pylist() == [label]
    with pytest.raises(ValueError, match="project"):
        PredictionLog(str(tmp_path), "../a")


def test_a_model_name_with_a_path_is_refused_before_any_write(tmp_path: Path) -> None:
    log = PredictionLog(str(tmp_path / "logs"), "default")
    with pytest.raises(InvalidInput, match="model"):
        log.add("r1", "../../escaped", 1, {"x": np.array([1.0])}, np.array([0.5]), 1.0)
    assert log.pending() == 0
