"""Feedback joined to logged predictions: live metrics, late labels, unknown request ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mlray.errors import InvalidInput
from mlray.monitoring.performance import live_performance
from mlray.monitoring.prediction_log import FeedbackLog, PredictionLog
from mlray.training.evaluation import classification_metrics


def test_feedback_joins_predictions_and_counts_unknown_ids(tmp_path: Path) -> None:
    now = 1_790_000_000.0
    log = PredictionLog(str(tmp_path), "default", clock=lambda: now - 3600)
    rng = np.random.default_rng(0)
    probs = rng.random(40).astype(np.float32)
    for i in range(20):
        log.add(f"r{i}", "fraud", 2, {"amount": np.array([1.0, 2.0])}, probs[2 * i:2 * i + 2],
                1.0)
    log.add("old", "fraud", 2, {"amount": np.array([1.0])}, np.array([0.9]), 1.0)
    log.flush()
    labels = (probs > 0.5).astype(float)
    labels[:6] = 1 - labels[:6]  # some wrong answers
    feedback = FeedbackLog(str(tmp_path), "default", clock=lambda: now)
    feedback.write([(f"r{i // 2}", float(labels[i]), i % 2) for i in range(30)])
    feedback.write([("never-logged", 1.0, 0), ("r0", float(labels[0]), 5)])

    report = live_performance(str(tmp_path), "default", "fraud", 2, task="classification",
                              window_s=7200, evaluation={"roc_auc": 0.9}, now=now)
    assert (report.predictions, report.labelled, report.unknown_feedback) == (41, 30, 2)
    expected = classification_metrics(labels[:30], probs[:30].astype(np.float64))
    assert report.metrics["accuracy"] == pytest.approx(expected["accuracy"])
    assert report.metrics["roc_auc"] == pytest.approx(expected["roc_auc"])
    assert report.evaluation == {"roc_auc": 0.9}

    later = live_performance(str(tmp_path), "default", "fraud", 2, task="classification",
                             window_s=60, now=now)
    assert later.predictions == 0 and later.metrics == {}
    empty = live_performance(str(tmp_path / "none"), "default", "fraud", 1, task="regression")
    assert empty.predictions == 0
    with pytest.raises(InvalidInput):
        live_performance(str(tmp_path), "default", "fraud", 2, task="ranking")


def test_a_model_name_with_a_path_is_refused(tmp_path: Path) -> None:
    """``model=../..`` would read another directory's parquet files."""
    with pytest.raises(InvalidInput, match="model"):
        live_performance(str(tmp_path), "default", "x/../../elsewhere", 1, task="classification")
