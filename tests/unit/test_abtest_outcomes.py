"""A/B outcomes that depend on the model's answer (``correct``, ``caught``) against the
label-as-outcome ones (``conversion``), from real Parquet prediction and feedback logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from mlray.abtest.experiment import ExperimentSpec
from mlray.abtest.outcomes import arm_totals
from mlray.abtest.service import AbTestService
from mlray.monitoring.prediction_log import FeedbackLog, PredictionLog
from mlray.registry import ModelRegistry, ModelSpec, Stage
from mlray.storage import ArtifactStore, StateStore, open_state_store
from tests.unit.helpers import artifact_spec
from tests.unit.test_abtest_service import ADMIN, T0, P

#: (label, score) -> requests: both arms see the same 60 positives in 300 requests.
WEAK = {(1, 0.9): 30, (1, 0.2): 30, (0, 0.1): 180, (0, 0.8): 60}    # 210 right, 30 caught
STRONG = {(1, 0.9): 54, (1, 0.2): 6, (0, 0.1): 228, (0, 0.8): 12}   # 282 right, 54 caught


def log_arm(root: Path, version: int, cells: dict[tuple[float, float], int],
            at: float = T0 + 1) -> None:
    """Log ``n`` requests answered by ``version`` with ``score`` per (label, score) cell,
    then post each one's label as feedback."""
    log = PredictionLog(str(root), P, clock=lambda: at)
    feedback = []
    for (label, score), n in cells.items():
        for i in range(n):
            rid = f"v{version}-{label}-{score}-{i}"
            log.add(rid, "fraud", version, {"x": np.array([0.5])}, np.array([score]), 2.0)
            feedback.append((rid, float(label), 0))
    log.flush()
    FeedbackLog(str(root), P, clock=lambda: at + 1).write(feedback)


def test_same_labels_different_answers_give_different_outcomes(tmp_path: Path) -> None:
    root = tmp_path / "offline"
    log_arm(root, 1, WEAK)
    log_arm(root, 2, STRONG)
    uri = str(root)

    conversion = arm_totals(uri, P, "fraud", [1, 2], T0, "conversion")
    assert [(t.labelled, t.total) for t in conversion.values()] == [(300, 60), (300, 60)]

    correct = arm_totals(uri, P, "fraud", [1, 2], T0, "correct")
    assert (correct[1].requests, correct[1].labelled, correct[1].total) == (300, 300, 210)
    assert (correct[2].labelled, correct[2].total, correct[2].total_sq) == (300, 282, 282)

    caught = arm_totals(uri, P, "fraud", [1, 2], T0, "caught")
    assert (caught[1].requests, caught[1].labelled, caught[1].total) == (300, 60, 30)
    assert (caught[2].labelled, caught[2].total) == (60, 54)
    # the live-accuracy figures do not depend on the metric
    assert (caught[2].scored, caught[2].correct) == (300, 282)


def test_only_probabilities_against_0_1_labels_are_units(tmp_path: Path) -> None:
    root = tmp_path / "offline"
    log_arm(root, 1, {(1, 0.7): 4, (1, 3.5): 2, (0, 0.3): 3, (0, np.nan): 1, (2, 0.9): 5})
    correct = arm_totals(str(root), P, "fraud", [1], T0, "correct")[1]
    assert (correct.requests, correct.labelled, correct.total) == (15, 7, 7)
    caught = arm_totals(str(root), P, "fraud", [1], T0, "caught")[1]
    assert (caught.labelled, caught.total) == (4, 4)
    amount = arm_totals(str(root), P, "fraud", [1], T0, "loss_amount")[1]
    assert (amount.labelled, amount.total) == (15, 4 + 2 + 10)


def test_model_metrics_are_binary() -> None:
    with pytest.raises(ValidationError, match="metric 'caught' is binary"):
        ExperimentSpec(model="fraud", arms={1: 50, 2: 50}, min_effect=0.1, metric="caught",
                       kind="continuous", sd=1.0)
    spec = ExperimentSpec(model="fraud", arms={1: 50, 2: 50}, min_effect=0.1,
                          metric="correct")
    assert spec.kind == "binary"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    store = open_state_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def registry(store: StateStore, tmp_path: Path) -> ModelRegistry:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    registry = ModelRegistry(store, artifacts)
    registry.create_model(ADMIN, P, ModelSpec(name="fraud"))
    for i in range(2):
        registry.create_version(ADMIN, P, "fraud",
                                artifact_spec(artifacts, tmp_path, f"w{i}".encode()))
    registry.transition_stage(ADMIN, P, "fraud", 1, Stage.PRODUCTION)
    return registry


@pytest.mark.parametrize("metric", ["correct", "caught"])
def test_the_model_that_answers_better_is_promoted(metric: str, store: StateStore,
                                                   registry: ModelRegistry,
                                                   tmp_path: Path) -> None:
    """The label (is it fraud?) is the same in both arms: only a metric of the answer
    tells the versions apart, and the sequential test promotes the better one."""
    service = AbTestService(store, registry, str(tmp_path / "offline"), clock=lambda: T0)
    service.start(ADMIN, P, ExperimentSpec(model="fraud", arms={1: 50, 2: 50},
                                           metric=metric, min_effect=0.1, sequential=True,
                                           max_samples=1000))
    log_arm(tmp_path / "offline", 1, {cell: 2 * n for cell, n in WEAK.items()})
    log_arm(tmp_path / "offline", 2, {cell: 2 * n for cell, n in STRONG.items()})
    exp = service.status(ADMIN, P, "fraud")
    assert exp.status == "promoted" and exp.winner == 2, exp.last
    assert registry.get_version(ADMIN, P, "fraud", 2).stage is Stage.PRODUCTION


def test_the_label_as_outcome_cannot_tell_them_apart(store: StateStore,
                                                     registry: ModelRegistry,
                                                     tmp_path: Path) -> None:
    service = AbTestService(store, registry, str(tmp_path / "offline"), clock=lambda: T0)
    service.start(ADMIN, P, ExperimentSpec(model="fraud", arms={1: 50, 2: 50},
                                           metric="conversion", min_effect=0.1,
                                           sequential=True, max_samples=1000))
    log_arm(tmp_path / "offline", 1, WEAK)
    log_arm(tmp_path / "offline", 2, STRONG)
    exp = service.status(ADMIN, P, "fraud")
    assert exp.status == "running"
    assert exp.last is not None and exp.last.result is not None
    assert exp.last.result.diff == 0
