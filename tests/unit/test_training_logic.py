"""Metrics, baselines, gates, early stopping, the predictor and job records, without Ray."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mlray._private.ray_session import local_cpus
from mlray.errors import (
    ConfigError,
    IntegrityError,
    InvalidInput,
    InvalidTransition,
)
from mlray.identity import Caller
from mlray.models import Predictor, save_model
from mlray.monitoring import profile_frame
from mlray.registry.gates import GateSpec, evaluate_gates
from mlray.storage import StateStore
from mlray.tracking.jobs import JobBook, JobStatus
from mlray.training.config import ScalingSettings, TrainConfig, load_train_config
from mlray.training.data import Preprocessor
from mlray.training.evaluation import classification_metrics, regression_metrics, roc_auc
from mlray.training.loop import EarlyStopper
from mlray.training.models import ModelArchitecture, build_model
from mlray.training.prepare import check_resources

ADMIN = Caller.local_admin("alice")


def test_roc_auc_matches_pair_counting() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + y
    pairs = [(a > b) + 0.5 * (a == b) for a in s[y == 1] for b in s[y == 0]]
    assert roc_auc(y, s) == pytest.approx(np.mean(pairs))
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert np.isnan(roc_auc([1, 1], [0.2, 0.3]))


def test_classification_and_regression_metrics() -> None:
    m = classification_metrics(np.array([1, 1, 0, 0, 1]), np.array([.9, .4, .6, .1, .8]))
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["precision"] == pytest.approx(2 / 3) and m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["log_loss"] > 0
    r = regression_metrics(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 4.0]))
    assert r["mae"] == pytest.approx(1 / 3) and r["rmse"] == pytest.approx(np.sqrt(1 / 3))
    assert r["r2"] == pytest.approx(1 - 1 / 2)


def test_baseline_profiles() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, None, 4.0] * 25, "c": ["a", "b", "a", None] * 25})
    base = profile_frame(frame, ["x"], ["c"], np.linspace(0, 1, 100), bins=4)
    x = base.numeric["x"]
    assert sum(x.counts) == 75 and x.null_rate == 0.25 and x.min == 1.0 and x.max == 4.0
    assert x.edges == sorted(x.edges) and len(x.counts) == len(x.edges) - 1
    assert base.categorical["c"].frequencies == {"a": pytest.approx(2 / 3),
                                                 "b": pytest.approx(1 / 3)}
    assert base.predictions is not None and sum(base.predictions.counts) == 100
    assert base.rows == 100


def test_gates() -> None:
    gates = [GateSpec(kind="threshold", metric="auc", min=0.8),
             GateSpec(kind="no_regression", metric="auc", max_regression_pct=2),
             GateSpec(kind="no_regression", metric="log_loss", max_regression_pct=10,
                      higher_is_better=False),
             GateSpec(kind="latency", p99_ms=5, severity="warning")]
    ok = evaluate_gates(gates, {"auc": 0.9, "log_loss": 0.2}, {"auc": 0.91, "log_loss": 0.19},
                        latency_p99_ms=9.0)
    assert ok.passed and [r.passed for r in ok.results] == [True, True, True, False]
    bad = evaluate_gates(gates, {"auc": 0.85, "log_loss": 0.3}, {"auc": 0.9, "log_loss": 0.2},
                         latency_p99_ms=1.0)
    assert not bad.passed
    assert bad.failed_critical == ["auc regresses <= 2% vs Production",
                                   "log_loss regresses <= 10% vs Production"]
    first = evaluate_gates(gates[:2], {"auc": 0.81})
    assert first.passed and "no Production" in first.results[1].message
    missing = evaluate_gates(gates[:1], {})
    assert not missing.passed and "not reported" in missing.results[0].message


def test_early_stopper() -> None:
    stopper = EarlyStopper(mode="min", patience=2, min_delta=0.01)
    assert [stopper.update(v) for v in (1.0, 0.9, 0.895, 0.9)] == [False, False, False, True]
    up = EarlyStopper(mode="max", patience=1)
    assert [up.update(v) for v in (0.5, 0.6, 0.55)] == [False, False, True]


def test_predictor_round_trip_and_refuses_bad_weights(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": np.arange(10.0), "c": list("xyxyxyxyxy")})
    pre = Preprocessor.fit(frame, ["a"], ["c"])
    arch = ModelArchitecture(type="mlp", task="classification", in_features=pre.width,
                             hidden=[4])
    module = build_model(arch)
    path = save_model(tmp_path / "m", module, arch, pre)
    loaded = Predictor.from_directory(path)
    expected = torch.sigmoid(module.eval()(torch.from_numpy(pre.transform(frame)))).detach()
    assert np.allclose(loaded.predict(frame), expected.numpy(), atol=1e-6)
    assert loaded.predict({"a": 1.0, "c": "x"}).shape == (1,)
    assert loaded.predict([{"a": 1.0, "c": "z"}, {"a": 2.0, "c": "y"}]).shape == (2,)
    with pytest.raises(InvalidInput, match="lack feature"):
        loaded.predict([{"a": 1.0}])
    with pytest.raises(InvalidInput, match="shape"):
        loaded.predict_matrix(np.zeros((2, 3), dtype=np.float32))
    other = ModelArchitecture(type="mlp", task="classification", in_features=pre.width,
                              hidden=[8])
    torch.save(build_model(other).state_dict(), path / "weights.pt")
    with pytest.raises(IntegrityError, match="cannot be loaded"):
        Predictor.from_directory(path)
    assert loaded.latency_p99_ms(pre.transform(frame), repeats=5) > 0


def test_job_lifecycle(store: StateStore) -> None:
    book = JobBook(store)
    job = book.create_job(ADMIN, "default", "train", "fraud")
    assert job.status is JobStatus.PENDING
    running = book.update_job(ADMIN, "default", job.job_id, status=JobStatus.RUNNING,
                              run_id="r1")
    assert running.started_at and running.run_id == "r1"
    with pytest.raises(InvalidTransition, match="cannot become PENDING"):
        book.update_job(ADMIN, "default", job.job_id, status=JobStatus.PENDING)
    assert book.cancel_job(ADMIN, "default", job.job_id).cancel_requested
    done = book.update_job(ADMIN, "default", job.job_id, status=JobStatus.CANCELLED)
    assert done.ended_at and book.get_job(ADMIN, "default", job.job_id).status.value == "CANCELLED"
    with pytest.raises(InvalidTransition, match="already ended"):
        book.cancel_job(ADMIN, "default", job.job_id)
    pending = book.create_job(ADMIN, "default", "tune", "fraud")
    assert book.cancel_job(ADMIN, "default", pending.job_id).status is JobStatus.CANCELLED
    assert [j.job_id for j in book.list_jobs(ADMIN, "default")] == [pending.job_id, job.job_id]
    with pytest.raises(InvalidInput, match="kind"):
        book.create_job(ADMIN, "default", "serve", "x")


def test_a_job_whose_driver_died_does_not_stay_running(store: StateStore) -> None:
    book = JobBook(store, stale_after_s=-1)
    job = book.create_job(ADMIN, "default", "train", "fraud")
    book.update_job(ADMIN, "default", job.job_id, status=JobStatus.RUNNING)
    lost = book.get_job(ADMIN, "default", job.job_id)
    assert lost.status is JobStatus.FAILED and "no heartbeat" in (lost.error or "")
    assert book.list_jobs(ADMIN, "default", status=JobStatus.RUNNING) == []


def test_user_models_from_module_callable() -> None:
    arch = ModelArchitecture(type="tests.unit.custom_model:build", task="regression",
                             in_features=5)
    model = build_model(arch)
    assert model(torch.zeros(3, 5)).shape == (3,)
    from mlray.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot import"):
        build_model(arch.model_copy(update={"type": "tests.unit.nowhere:build"}))
    with pytest.raises(ConfigError, match=r"not a torch\.nn\.Module"):
        build_model(arch.model_copy(update={"type": "tests.unit.custom_model:not_a_module"}))


def _fraud_config(**overrides: object) -> TrainConfig:
    base = load_train_config(Path(__file__).resolve().parents[2] / "configs" / "train"
                             / "fraud.yaml")
    return base.model_copy(update=overrides)


def test_the_example_config_fits_the_head_mlray_up_starts_on_two_cores() -> None:
    config = _fraud_config()
    head = {"CPU": float(local_cpus())}  # `mlray up` without --num-cpus
    assert local_cpus() >= 4
    check_resources(config, head)
    check_resources(config, head, tune=True)


def test_a_sweep_that_does_not_fit_names_its_own_limit() -> None:
    config = _fraud_config(scaling=ScalingSettings(num_workers=1))
    assert config.tune is not None
    config = config.model_copy(update={"tune": config.tune.model_copy(
        update={"max_concurrent_trials": 3, "workers_per_trial": 1})})
    check_resources(config, {"CPU": 2.0})  # one training worker fits
    with pytest.raises(ConfigError) as caught:
        check_resources(config, {"CPU": 2.0}, tune=True)
    assert caught.value.field == "tune.max_concurrent_trials"
    assert ("tune.max_concurrent_trials * tune.workers_per_trial = 3 * 1 = 3 worker(s) take 3 "
            "of the cluster's 2 CPUs") in caught.value.message
    assert "scaling.num_workers" not in caught.value.message


def test_a_training_job_that_does_not_fit_names_scaling_num_workers() -> None:
    with pytest.raises(ConfigError) as caught:
        check_resources(_fraud_config(), {"CPU": 2.0})
    assert caught.value.field == "scaling.num_workers"
    assert "scaling.num_workers = 2 worker(s) take 2 of the cluster's 2 CPUs" in \
        caught.value.message and "mlray up --num-cpus" in caught.value.message
