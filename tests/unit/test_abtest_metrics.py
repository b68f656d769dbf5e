"""Secondary metrics, their multiplicity correction and CUPED inside the ``abtests``
service, without Ray: real SQLite state, a real registry, real Parquet prediction and
feedback logs written by the platform's own log writers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from statsmodels.stats.multitest import multipletests

from mlray.abtest.arms import BinaryArm, ContinuousArm
from mlray.abtest.experiment import ExperimentSpec
from mlray.abtest.service import AbTestService
from mlray.abtest.stats import two_proportion_test, welch_test
from mlray.abtest.units import labelled_requests
from mlray.errors import InvalidInput
from mlray.monitoring.prediction_log import FeedbackLog, PredictionLog
from mlray.registry import ModelRegistry, ModelSpec, Stage
from mlray.storage import ArtifactStore, StateStore, open_state_store
from tests.unit.helpers import artifact_spec
from tests.unit.test_abtest_service import ADMIN, T0, Clock, P

#: (request id, routing key or None, prediction, label)
Row = tuple[str, str | None, float, float]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    found = open_state_store(f"sqlite:///{tmp_path / 'state.db'}")
    yield found
    found.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: StateStore, tmp_path: Path, clock: Clock) -> AbTestService:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    registry = ModelRegistry(store, artifacts)
    registry.create_model(ADMIN, P, ModelSpec(name="fraud"))
    for i in range(2):
        registry.create_version(ADMIN, P, "fraud",
                                artifact_spec(artifacts, tmp_path, f"w{i}".encode()))
    registry.transition_stage(ADMIN, P, "fraud", 1, Stage.PRODUCTION)
    return AbTestService(store, registry, str(tmp_path / "offline"), clock=clock)


def log(root: Path, version: int, rows: list[Row], at: float) -> None:
    """Log each request as answered by ``version`` at ``at`` and post its label."""
    predictions = PredictionLog(str(root), P, clock=lambda: at)
    for rid, key, score, _ in rows:
        predictions.add(rid, "fraud", version, {"x": np.array([0.5])}, np.array([score]), 2.0,
                        routing_key=key)
    predictions.flush()
    FeedbackLog(str(root), P, clock=lambda: at + 1).write(
        [(rid, label, 0) for rid, _, _, label in rows])


def spec(**fields: object) -> ExperimentSpec:
    base: dict[str, object] = {"model": "fraud", "arms": {1: 50, 2: 50}, "min_effect": 0.1,
                               "baseline": 0.1}
    return ExperimentSpec(**{**base, **fields})  # type: ignore[arg-type]


def arm_rows(version: int, labels: list[float], scores: list[float]) -> list[Row]:
    return [(f"v{version}-{i}", None, s, y)
            for i, (y, s) in enumerate(zip(labels, scores, strict=True))]


def by_metric(exp: object) -> dict[str, object]:
    return {m.metric: m for m in exp.last.metrics}  # type: ignore[attr-defined]


def two_arms(tmp_path: Path) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """v1 and v2 with 300 labelled requests each: labels (conversion 10% vs 25%) and
    scores (v2 answers worse: right on 60% of requests against 90%)."""
    rng = np.random.default_rng(7)
    data = {}
    for version, rate, right in ((1, 0.10, 0.9), (2, 0.25, 0.6)):
        labels = (rng.random(300) < rate).astype(float)
        agree = rng.random(300) < right
        scores = np.where(agree == (labels == 1.0), 0.8, 0.2)
        log(tmp_path / "offline", version, arm_rows(version, list(labels), list(scores)),
            T0 + 1)
        data[version] = (labels, scores)
    return data


@pytest.mark.parametrize(("correction", "method"), [("holm", "holm"), ("bh", "fdr_bh")])
def test_secondary_metrics_get_adjusted_p_values_equal_to_statsmodels(
        service: AbTestService, tmp_path: Path, clock: Clock, correction: str,
        method: str) -> None:
    service.start(ADMIN, P, spec(secondary="correct,caught", correction=correction))
    data = two_arms(tmp_path)
    clock.now = T0 + 60
    exp = service.status(ADMIN, P, "fraud")
    metrics = by_metric(exp)
    assert list(metrics) == ["conversion", "correct", "caught"]
    assert metrics["conversion"].primary and not metrics["correct"].primary  # type: ignore[attr-defined]
    (l1, s1), (l2, s2) = data[1], data[2]
    right = [((s >= 0.5) == (y == 1.0)).astype(float) for y, s in ((l1, s1), (l2, s2))]
    caught = [(s[y == 1.0] >= 0.5).astype(float) for y, s in ((l1, s1), (l2, s2))]
    expected = {
        "conversion": two_proportion_test(BinaryArm.from_values(l1), BinaryArm.from_values(l2)),
        "correct": two_proportion_test(BinaryArm.from_values(right[0]),
                                       BinaryArm.from_values(right[1])),
        "caught": two_proportion_test(BinaryArm.from_values(caught[0]),
                                      BinaryArm.from_values(caught[1]))}
    raw = [expected[m].p_value for m in metrics]
    assert [metrics[m].result.p_value for m in metrics] == pytest.approx(raw)  # type: ignore[attr-defined]
    assert [metrics[m].result.diff for m in metrics] == pytest.approx(  # type: ignore[attr-defined]
        [expected[m].diff for m in metrics])
    theirs = multipletests(raw, alpha=0.05, method=method)[1]
    assert [metrics[m].adjusted_p for m in metrics] == pytest.approx(list(theirs))  # type: ignore[attr-defined]
    assert exp.last.decision is not None  # type: ignore[union-attr]
    assert exp.last.decision.adjusted == pytest.approx(  # type: ignore[union-attr]
        dict(zip(metrics, theirs, strict=True)))
    assert exp.last.decision.p_value == pytest.approx(theirs[0])  # type: ignore[union-attr]


def test_a_significantly_worse_secondary_is_a_warning_not_the_verdict(
        service: AbTestService, store: StateStore, tmp_path: Path, clock: Clock) -> None:
    service.start(ADMIN, P, spec(secondary=["correct"]))
    two_arms(tmp_path)
    clock.now = T0 + 60
    exp = service.status(ADMIN, P, "fraud")
    metrics = by_metric(exp)
    assert metrics["correct"].worse and metrics["correct"].significant  # type: ignore[attr-defined]
    assert not metrics["conversion"].worse  # type: ignore[attr-defined]
    assert len(exp.last.warnings) == 1  # type: ignore[union-attr]
    assert "secondary metric correct is significantly worse" in exp.last.warnings[0]  # type: ignore[union-attr]
    # the primary (conversion up from 10% to 25%) decides: v2 wins despite the warning
    assert exp.last.decision.outcome == "winner"  # type: ignore[union-attr]
    assert exp.status == "promoted" and exp.winner == 2
    [entry] = [e for e in store.audit_log(limit=100) if e.action == "abtest.promote"]
    assert [m["metric"] for m in entry.after["metrics"]] == ["conversion", "correct"]
    assert entry.after["warnings"] == exp.last.warnings  # type: ignore[union-attr]


def test_cuped_narrows_the_interval_with_a_correlated_pre_period(
        service: AbTestService, tmp_path: Path, clock: Clock) -> None:
    rng = np.random.default_rng(11)
    n = 200
    base = rng.normal(10.0, 3.0, size=2 * n)  # each user's own level, in both periods
    keys = [f"user-{i}" for i in range(2 * n)]
    pre = base + rng.normal(0.0, 1.0, size=2 * n)
    during = base + rng.normal(0.0, 1.0, size=2 * n) + np.r_[np.zeros(n), np.full(n, 0.3)]
    root = tmp_path / "offline"
    # the pre-period: every user answered by the control, 30 s before the start
    log(root, 1, [(f"pre-{k}", k, 0.5, float(x)) for k, x in zip(keys, pre, strict=True)],
        T0 - 30)
    service.start(ADMIN, P, spec(kind="continuous", sd=3.0, min_effect=1.0, baseline=10.0,
                                 metric="loss_amount", cuped=True))
    for version, part in ((1, slice(0, n)), (2, slice(n, 2 * n))):
        log(root, version, [(f"exp-{k}", k, 0.5, float(y))
                            for k, y in zip(keys[part], during[part], strict=True)], T0 + 1)
    clock.now = T0 + 60
    last = service.status(ADMIN, P, "fraud").last
    assert last is not None and last.cuped is not None and last.result is not None
    plain = welch_test(ContinuousArm.from_values(during[:n]),
                       ContinuousArm.from_values(during[n:]))
    assert last.cuped.unadjusted.diff_ci is not None and plain.diff_ci is not None
    assert (last.cuped.unadjusted.diff_ci.low, last.cuped.unadjusted.diff_ci.high) == \
        pytest.approx((plain.diff_ci.low, plain.diff_ci.high))
    assert (last.cuped.units, last.cuped.with_pre) == (2 * n, 2 * n)
    assert last.result.method == "Welch t-test (CUPED)"
    assert last.result.diff_ci is not None
    width = last.result.diff_ci.high - last.result.diff_ci.low
    assert width < 0.5 * (plain.diff_ci.high - plain.diff_ci.low)
    assert last.cuped.variance_ratio < 0.25 and last.cuped.reduction > 0.75
    assert last.metrics[0].metric == "loss_amount" and last.metrics[0].result == last.result


def test_spec_refuses_inconsistent_analysis_options(service: AbTestService) -> None:
    with pytest.raises(InvalidInput, match="fixed horizon only"):
        service.start(ADMIN, P, {"model": "fraud", "arms": {1: 50, 2: 50},  # type: ignore[arg-type]
                                 "min_effect": 0.1, "sequential": True, "cuped": True})
    with pytest.raises(InvalidInput, match="is the primary metric"):
        service.start(ADMIN, P, {"model": "fraud", "arms": {1: 50, 2: 50},  # type: ignore[arg-type]
                                 "min_effect": 0.1, "secondary": "conversion"})
    with pytest.raises(InvalidInput, match="named twice"):
        service.start(ADMIN, P, {"model": "fraud", "arms": {1: 50, 2: 50},  # type: ignore[arg-type]
                                 "min_effect": 0.1, "secondary": "correct,correct"})
    with pytest.raises(InvalidInput, match="suffix is :lower"):
        service.start(ADMIN, P, {"model": "fraud", "arms": {1: 50, 2: 50},  # type: ignore[arg-type]
                                 "min_effect": 0.1, "secondary": "loss:less"})
    with pytest.raises(InvalidInput, match="correction"):
        service.start(ADMIN, P, {"model": "fraud", "arms": {1: 50, 2: 50},  # type: ignore[arg-type]
                                 "min_effect": 0.1, "correction": "bonferroni"})
    exp = service.start(ADMIN, P, spec(secondary="correct,loss_amount:lower"))
    assert [str(m) for m in exp.spec.secondary] == ["correct", "loss_amount:lower"]


def test_units_are_routing_keys_and_older_logs_without_them_still_read(
        tmp_path: Path) -> None:
    root = tmp_path / "offline"
    log(root, 1, [("a", "user-1", 0.9, 1.0), ("b", None, 0.1, 0.0)], T0)
    # a file written before the log had routing keys
    old = tmp_path / "offline" / P / "predictions" / "model=fraud" / "version=2" / "date=x"
    old.mkdir(parents=True)
    pq.write_table(pa.table({"request_id": ["c"], "row": pa.array([0], pa.int64()),
                             "ts": pa.array([int(T0 * 1e6)], pa.timestamp("us", tz="UTC")),
                             "latency_ms": [1.0], "prediction": [0.7]}),
                   old / "part-0.parquet")
    FeedbackLog(str(root), P, clock=lambda: T0 + 1).write([("c", 1.0, 0)])
    rows = labelled_requests(str(root), P, "fraud", T0 - 1)
    got = sorted(zip(rows.version.tolist(), rows.unit.tolist(), rows.label.tolist(),
                     strict=True))
    assert got == [(1, "request:b", 0.0), (1, "user-1", 1.0), (2, "request:c", 1.0)]
    assert labelled_requests(str(root), P, "fraud", T0 - 1, versions=[2]).unit.tolist() == [
        "request:c"]
    assert labelled_requests(str(root), P, "fraud", T0 - 10, until=T0).unit.size == 0
