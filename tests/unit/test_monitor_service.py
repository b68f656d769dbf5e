"""The monitor service over a real state store and registry: ingest, drift, restart, values."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlray.alerts.catalogue import METRIC_NAMES
from mlray.errors import NotFound, PermissionDenied
from mlray.identity import Caller, Role
from mlray.monitoring.baseline import profile_frame
from mlray.monitoring.monitor import MONITOR_WINDOWS, Monitor, SketchEnvelope
from mlray.monitoring.sketch import Sketcher
from mlray.registry.service import ModelRegistry
from mlray.registry.types import ModelSpec
from mlray.storage import ArtifactStore, StateStore
from tests.unit.helpers import artifact_spec

ADMIN = Caller.local_admin()
NOW = 1_000_000.0


def _frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame({"amount": rng.normal(100 + shift, 10, n),
                         "age": rng.normal(40, 5, n),
                         "country": rng.choice(["fr", "de", "us"], n)})


@pytest.fixture
def setup(store: StateStore, tmp_path: Path) -> tuple[ModelRegistry, Sketcher]:
    rng = np.random.default_rng(0)
    train = _frame(rng, 2000)
    baseline = profile_frame(train, ["amount", "age"], ["country"],
                             predictions=rng.uniform(0, 1, 2000))
    artifacts = ArtifactStore(str(tmp_path / "art"))
    registry = ModelRegistry(store, artifacts)
    registry.create_model(ADMIN, "default", ModelSpec(name="fraud"))
    registry.create_version(ADMIN, "default", "fraud",
                            artifact_spec(artifacts, tmp_path, baseline=baseline.model_dump()))
    registry.create_version(ADMIN, "default", "fraud",
                            artifact_spec(artifacts, tmp_path, b"no-baseline"))
    return registry, Sketcher(baseline, bucket_s=60)


def _monitor(store: StateStore, registry: ModelRegistry) -> Monitor:
    return Monitor.over_registry(store, registry, window_s=600, clock=lambda: NOW)


def _ship(sketcher: Sketcher, frame: pd.DataFrame, now: float, preds: np.ndarray,
          version: int = 1) -> dict:
    sketch = sketcher.sketch({c: frame[c].to_numpy() for c in frame}, preds, now=now)
    return SketchEnvelope(project="default", model="fraud", version=version,
                          sketch=sketch.to_dict()).model_dump()


def test_shifted_traffic_drifts_and_windows_survive_a_restart(
        store: StateStore, setup: tuple[ModelRegistry, Sketcher]) -> None:
    registry, sketcher = setup
    rng = np.random.default_rng(1)
    monitor = _monitor(store, registry)
    shipped = [_ship(sketcher, _frame(rng, 500, shift=30.0), NOW - 120 + 60 * i,
                     rng.uniform(0, 1, 500)) for i in range(2)]
    result = monitor.ingest(shipped)
    assert (result.accepted, result.late, result.rejected) == (2, 0, 0)

    report = monitor.drift(ADMIN, "default", "fraud", 1)
    assert report.rows == 1000
    assert report.drifted_features == ["amount"]
    by_name = {f.feature: f for f in report.features}
    assert by_name["amount"].statistic("psi") > 1 and not by_name["age"].drifted
    assert report.predictions is not None and not report.predictions.drifted
    # version None: the newest version with traffic
    assert monitor.drift(ADMIN, "default", "fraud").rows == 1000

    # A new monitor over the same store (a restarted actor) has the same windows.
    again = _monitor(store, registry)
    assert again.windows() == ["default/fraud/1"]
    assert again.drift(ADMIN, "default", "fraud", 1) == report
    assert len(store.list(MONITOR_WINDOWS)) == 1

    # A shorter window holds only the newest bucket (buckets start at 999840, 999900).
    assert again.drift(ADMIN, "default", "fraud", 1, window_s=120).rows == 500
    assert again.drift(ADMIN, "default", "fraud", 1, rows=400).rows == 500


def test_unshifted_traffic_does_not_drift(store: StateStore,
                                          setup: tuple[ModelRegistry, Sketcher]) -> None:
    registry, sketcher = setup
    rng = np.random.default_rng(2)
    monitor = _monitor(store, registry)
    monitor.ingest([_ship(sketcher, _frame(rng, 2000), NOW - 30, rng.uniform(0, 1, 2000))])
    report = monitor.drift(ADMIN, "default", "fraud", 1)
    assert report.drifted_features == [] and not report.dataset_drifted
    assert monitor.quality(ADMIN, "default", "fraud", 1).passed


def test_bad_sketches_are_counted_not_raised(store: StateStore,
                                             setup: tuple[ModelRegistry, Sketcher]) -> None:
    registry, sketcher = setup
    rng = np.random.default_rng(3)
    monitor = _monitor(store, registry)
    good = _ship(sketcher, _frame(rng, 200), NOW - 10, rng.uniform(0, 1, 200))
    old = _ship(sketcher, _frame(rng, 200), NOW - 30 * 86400, rng.uniform(0, 1, 200))
    result = monitor.ingest([good, {"project": "default"}, {**good, "sketch": {"format": 9}},
                             old])
    assert (result.accepted, result.late, result.rejected) == (1, 1, 2)
    assert result.errors


def test_values_name_only_catalogued_metrics(store: StateStore,
                                             setup: tuple[ModelRegistry, Sketcher]) -> None:
    registry, sketcher = setup
    rng = np.random.default_rng(4)
    monitor = _monitor(store, registry)
    frame = _frame(rng, 1000, shift=30.0)
    frame.loc[:49, "age"] = np.nan
    monitor.ingest([_ship(sketcher, frame, NOW - 10, rng.uniform(0, 1, 1000)),
                    # v2 has no baseline: its window is kept but gives no values
                    _ship(sketcher, frame, NOW - 10, rng.uniform(0, 1, 1000), version=2)])
    samples = monitor.values(ADMIN, "default")
    assert samples and {m for m, *_ in samples} <= METRIC_NAMES
    names = {m for m, *_ in samples}
    assert {"mlray_drift_psi", "mlray_drift_js", "mlray_drift_ks", "mlray_drift_share",
            "mlray_quality_missing_ratio"} <= names
    for _metric, labels, value, ts in samples:
        assert (labels["project"], labels["model"], labels["version"]) == ("default", "fraud", "1")
        assert ts == NOW
        assert isinstance(value, float)
    psi = {lab["feature"]: v for m, lab, v, _ in samples if m == "mlray_drift_psi"}
    assert set(psi) == {"amount", "age", "country", "__prediction__"} and psi["amount"] > 1
    share = [v for m, _, v, _ in samples if m == "mlray_drift_share"]
    assert share == [pytest.approx(1 / 3)]
    missing = {lab["feature"]: v for m, lab, v, _ in samples
               if m == "mlray_quality_missing_ratio"}
    assert missing["age"] == pytest.approx(0.05)
    with pytest.raises(NotFound):
        monitor.drift(ADMIN, "default", "fraud", 2)
    assert monitor.values(ADMIN, "other") == []


def test_callers_need_a_role_in_the_project(store: StateStore,
                                            setup: tuple[ModelRegistry, Sketcher]) -> None:
    registry, _ = setup
    monitor = _monitor(store, registry)
    outsider = Caller(user="eve", roles={"other": Role.admin})
    with pytest.raises(PermissionDenied):
        monitor.drift(outsider, "default", "fraud", 1)
    with pytest.raises(PermissionDenied):
        monitor.values(outsider, "default")
    with pytest.raises(NotFound):
        monitor.drift(ADMIN, "default", "nothing")


def test_live_model_metrics_join_feedback_and_are_cached(
        store: StateStore, setup: tuple[ModelRegistry, Sketcher], tmp_path: Path) -> None:
    from mlray.monitoring.prediction_log import FeedbackLog, PredictionLog

    registry, sketcher = setup
    rng = np.random.default_rng(5)
    clock = {"now": NOW}
    offline = str(tmp_path / "offline")
    monitor = Monitor.over_registry(store, registry, offline, window_s=600,
                                    performance_every_s=60, clock=lambda: clock["now"])
    monitor.ingest([_ship(sketcher, _frame(rng, 200), NOW - 10, rng.uniform(0, 1, 200))])

    def live() -> dict[str, float]:
        return {m: v for m, _, v, _ in monitor.values(ADMIN, "default")
                if m.startswith("mlray_model_")}

    assert live() == {}  # nothing logged yet (and that answer is cached for a minute)
    log = PredictionLog(offline, "default", clock=lambda: NOW - 30)
    log.add("r1", "fraud", 1, {"amount": np.array([1.0, 2.0])}, np.array([0.5, 1.5]), 3.0)
    log.flush()
    FeedbackLog(offline, "default", clock=lambda: NOW - 20).write([("r1", 1.0, 0), ("r1", 2.0, 1)])
    assert live() == {}
    clock["now"] += 61
    assert live() == {"mlray_model_rmse": pytest.approx(0.5),
                      "mlray_model_mae": pytest.approx(0.5)}
