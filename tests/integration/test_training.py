"""Training and tuning on the shared Ray: real Ray Train workers, Ray Data, Ray Tune."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mlray
from mlray import ConfigError, InvalidInput, InvalidTransition, PlatformConfig, Stage
from mlray.auth.tokens import PLATFORM_USER
from mlray.datasets import (
    FRAUD_CATEGORICAL,
    FRAUD_NUMERIC,
    example_transactions,
    write_fraud,
)
from mlray.models import load
from mlray.tracking.jobs import JobStatus
from mlray.training.config import TrainConfig
from mlray.training.data import load_frame, split_frame
from mlray.training.evaluation import roc_auc
from mlray.training.orchestrator import run_training
from mlray.training.tuning import run_tuning
from tests.conftest import OwnRay, wait_for


@pytest.fixture
def backend() -> str:
    """Training tests run on the embedded backend only (the stores have their own suite)."""
    return "sqlite"


@pytest.fixture
def client(mlray_env: PlatformConfig) -> mlray.Client:
    return mlray.connect(config=mlray_env)


@pytest.fixture(scope="module")
def data_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(write_fraud(tmp_path_factory.mktemp("data") / "fraud.parquet", 6000, seed=5))


def make_config(data_path: str, **overrides: Any) -> TrainConfig:
    base: dict[str, Any] = {
        "name": "fraud",
        "data": {"path": data_path, "label": "is_fraud", "numeric": FRAUD_NUMERIC,
                 "categorical": FRAUD_CATEGORICAL},
        "model": {"type": "mlp_classifier", "hidden": [16]},
        "hyperparameters": {"lr": 0.01, "batch_size": 256, "epochs": 3, "pos_weight": 10},
        "scaling": {"num_workers": 2},
        "failure": {"max_failures": 2, "checkpoint_every": 1},
    }
    for key, value in overrides.items():
        base[key] = {**base[key], **value} if isinstance(value, dict) and key in base else value
    return TrainConfig.model_validate(base)


def test_train_registers_a_model_that_loads_and_predicts(client: mlray.Client,
                                                         data_path: str) -> None:
    config = make_config(data_path, gates=[{"kind": "threshold", "metric": "roc_auc",
                                            "min": 0.6}], promote="production")
    epochs_seen: list[int] = []
    outcome = run_training(client, config, progress=lambda e, m: epochs_seen.append(e))
    assert outcome.epochs == 3 and epochs_seen and epochs_seen[-1] == 2
    assert set(outcome.test_metrics) >= {"accuracy", "precision", "recall", "f1", "roc_auc",
                                         "log_loss"}
    assert outcome.test_metrics["roc_auc"] > 0.6
    run = client.experiments.get_run(outcome.run_id)
    assert run.status.value == "FINISHED" and run.params["num_workers"] == 2
    history = client.experiments.metric_history(outcome.run_id, "val_loss")
    assert [p.step for p in history] == [0, 1, 2]
    # The run and the version name the test split's metrics alike.
    assert run.metrics["roc_auc"].value == pytest.approx(outcome.test_metrics["roc_auc"])
    assert not any(k.startswith("test_") for k in run.metrics)
    assert run.artifacts[0].path == "model"
    version = outcome.version
    assert version is not None and version.stage is Stage.PRODUCTION
    assert version.lineage.run_id == outcome.run_id
    assert version.lineage.data_fingerprint and version.lineage.data_fingerprint.startswith("sha")
    assert [s.name for s in version.input_schema] == [*FRAUD_NUMERIC, *FRAUD_CATEGORICAL]
    assert version.output_schema[0].name == "probability"
    assert version.baseline is not None
    assert set(version.baseline["numeric"]) == set(FRAUD_NUMERIC)
    assert version.baseline["predictions"]["counts"]
    assert version.validation is not None and version.validation.passed
    job = client.jobs.get(outcome.job_id)
    assert job.status is JobStatus.COMPLETED and job.model_version == version.version

    predictor = load("models:/fraud/Production", client)
    scores = predictor.predict(example_transactions())
    assert scores.shape == (2,) and ((scores >= 0.0) & (scores <= 1.0)).all()
    # The model loaded from its URI is the one evaluated: its test-split AUC is the
    # registered figure.
    frame = load_frame(config.data)
    test = frame.iloc[split_frame(frame, config.data).test]
    auc = roc_auc(test["is_fraud"].to_numpy(), predictor.predict(test))
    assert auc == pytest.approx(version.metrics["roc_auc"], abs=1e-6)


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"data": {"numeric": ["amount", "no_such_column"]}}, InvalidInput,
         r"no column\(s\) \['no_such_column'\]"),
        ({"data": {"numeric": ["amount", "device"], "categorical": []}}, InvalidInput,
         "'device' has dtype"),
        ({"scaling": {"num_workers": 1, "use_gpu": True}}, ConfigError, "GPU"),
        ({"scaling": {"num_workers": 8}}, ConfigError, "leaving none for the Ray Data"),
        ({"data": {"label": "amount", "numeric": ["hour"], "categorical": []}}, InvalidInput,
         "must be 0/1"),
    ],
)
def test_preflight_errors_come_before_any_worker(client: mlray.Client, data_path: str,
                                                 overrides: dict[str, Any],
                                                 error: type[Exception], message: str) -> None:
    config = make_config(data_path, **overrides)
    with pytest.raises(error, match=message):
        run_training(client, config)
    assert client.experiments.search_runs().total == 0, "no run was started"
    [job] = client.jobs.list()
    assert (job.status is JobStatus.FAILED and message.split("'")[0][:10] in (job.error or "")) \
        or job.error


def test_gates_block_a_bad_promotion(client: mlray.Client, data_path: str) -> None:
    config = make_config(data_path, hyperparameters={"epochs": 1},
                         gates=[{"kind": "threshold", "metric": "roc_auc", "min": 0.999},
                                {"kind": "latency", "p99_ms": 10_000, "severity": "warning"}],
                         promote="production")
    outcome = run_training(client, config)
    assert outcome.gates is not None and not outcome.gates.passed
    # The registry actor computed it from the artifact and the job's test split.
    assert outcome.gates.computed_by == PLATFORM_USER and outcome.gates.data_sha256
    version = outcome.version
    assert version is not None and version.stage is Stage.NONE, "not promoted"
    with pytest.raises(InvalidTransition, match=r"roc_auc >= 0\.999"):
        client.registry.promote("fraud", version.version)
    assert client.registry.promote("fraud", version.version, force=True).stage is Stage.PRODUCTION


def _train_in_thread(client: mlray.Client, config: TrainConfig) -> dict[str, Any]:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["outcome"] = run_training(client, config)
        except BaseException as exc:
            box["error"] = exc

    box["thread"] = threading.Thread(target=target)
    box["thread"].start()
    return box


def _logged_epochs(client: mlray.Client) -> int:
    runs = client.experiments.search_runs().runs
    return len(client.experiments.metric_history(runs[0].run_id, "val_loss")) if runs else 0


def kill_a_train_worker(ray: OwnRay) -> None:
    """SIGKILL one alive Ray Train worker process."""
    workers = ray.list_actors(filters=[("class_name", "=", "RayTrainWorker"),
                                       ("state", "=", "ALIVE")], detail=True)
    assert workers, "no Ray Train worker to kill"
    os.kill(workers[-1].pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_worker_resumes_from_its_checkpoint_in_the_same_run(
        client: mlray.Client, data_path: str, ray_shared: OwnRay) -> None:
    config = make_config(data_path, hyperparameters={"epochs": 6, "batch_size": 64})
    box = _train_in_thread(client, config)
    wait_for(lambda: _logged_epochs(client) >= 2, timeout=240)
    kill_a_train_worker(ray_shared)
    box["thread"].join(timeout=400)
    assert "error" not in box, box.get("error")
    outcome = box["outcome"]
    assert outcome.epochs == 6
    page = client.experiments.search_runs(experiments=["fraud"])
    assert page.total == 1, "the retry continued the same run"
    steps = {p.step for p in client.experiments.metric_history(outcome.run_id, "val_loss")}
    assert steps == set(range(6))
    assert client.jobs.get(outcome.job_id).status is JobStatus.COMPLETED


@pytest.mark.slow
def test_stopping_a_job_cancels_it(client: mlray.Client, data_path: str) -> None:
    config = make_config(data_path, hyperparameters={"epochs": 50, "batch_size": 64})
    box = _train_in_thread(client, config)
    wait_for(lambda: _logged_epochs(client) >= 1, timeout=240)
    [job] = client.jobs.list()
    assert client.jobs.cancel(job.job_id).cancel_requested
    box["thread"].join(timeout=300)
    assert "error" in box
    job = client.jobs.get(job.job_id)
    assert job.status is JobStatus.CANCELLED
    run = client.experiments.get_run(job.run_id or "")
    assert run.status.value == "KILLED" and _logged_epochs(client) < 50


@pytest.mark.slow
def test_tune_sweeps_logs_each_trial_and_registers_the_best(client: mlray.Client,
                                                            data_path: str) -> None:
    config = make_config(data_path, hyperparameters={"epochs": 3}, tune={
        "search_space": {"lr": {"type": "grid", "values": [0.0005, 0.02]},
                         "hidden": {"type": "choice", "values": [[8]]}},
        "num_samples": 1, "max_concurrent_trials": 2, "grace_period": 1,
        "workers_per_trial": 1})
    outcome = run_tuning(client, config)
    runs = client.experiments.search_runs(filter=f"tags.sweep = '{outcome.sweep_id}'").runs
    assert len(runs) == 2 and {r.status.value for r in runs} <= {"FINISHED", "KILLED"}
    assert outcome.version is not None
    assert outcome.version.lineage.run_id == outcome.best_run_id
    best = client.experiments.get_run(outcome.best_run_id)
    assert best.tags["best_of"] == outcome.sweep_id and "roc_auc" in best.metrics
    assert client.jobs.get(outcome.job_id).status is JobStatus.COMPLETED
    assert np.isfinite(outcome.test_metrics["log_loss"])


def test_regression_with_the_built_in_regressor(client: mlray.Client, data_path: str) -> None:
    config = make_config(data_path, name="amount", model={"type": "mlp_regressor"},
                         data={"label": "amount_avg_7d", "numeric": ["amount", "hour"],
                               "categorical": ["merchant_category"]},
                         hyperparameters={"epochs": 2, "pos_weight": None},
                         scaling={"num_workers": 1},
                         gates=[{"kind": "threshold", "metric": "rmse", "max": 1e6}])
    outcome = run_training(client, config)
    assert set(outcome.test_metrics) == {"rmse", "mae", "r2"}
    version = outcome.version
    assert version is not None and version.output_schema[0].name == "prediction"
    values = load("models:/amount/1", client).predict(
        {"amount": 50.0, "hour": 12, "merchant_category": "fuel"})
    assert values.shape == (1,) and np.isfinite(values[0])


def _json(out: str) -> Any:
    """The JSON document in ``out`` (Ray's raylet may print warnings ahead of it)."""
    import json

    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line in ("{", "[") or
                 line.startswith(("{", "[")))
    return json.loads("\n".join(lines[start:]))


def test_cli_train_and_jobs(client: mlray.Client, mlray_env: PlatformConfig, data_path: str,
                            tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from mlray.cli.main import main

    config = make_config(data_path, hyperparameters={"epochs": 1}, gates=[])
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    for key, value in (("MLRAY_HOME", str(mlray_env.home)),
                       ("MLRAY_STATE_URL", mlray_env.resolved_state_url),
                       ("MLRAY_NAMESPACE", mlray_env.namespace)):
        monkeypatch.setenv(key, value)
    assert main(["train", "--config", str(path), "--json"]) == 0
    trained = _json(capsys.readouterr().out)
    assert trained["version"]["version"] == 1 and trained["epochs"] == 1
    assert main(["jobs", "list", "--json"]) == 0
    [job] = _json(capsys.readouterr().out)
    assert job["status"] == "COMPLETED" and job["run_id"] == trained["run_id"]
    assert main(["jobs", "show", job["job_id"], "--json"]) == 0
    assert _json(capsys.readouterr().out)["model_version"] == 1
    assert main(["jobs", "stop", job["job_id"]]) == 2
    assert "already ended as COMPLETED" in capsys.readouterr().err
    path.write_text(yaml.safe_dump({**config.model_dump(mode="json", exclude_none=True),
                                    "bogus": 1}))
    assert main(["train", "--config", str(path)]) == 2
    assert "bogus: Extra inputs are not permitted" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_tune_json_prints_only_json(mlray_env: PlatformConfig, ray_shared: OwnRay,
                                        data_path: str, tmp_path: Path) -> None:
    """A real `mlray tune --json` process: Tune's box and raylet warnings stay off stdout."""
    import json
    import subprocess
    import sys

    import yaml

    config = make_config(data_path, hyperparameters={"epochs": 1}, gates=[],
                         scaling={"num_workers": 1}, tune={
                             "search_space": {"lr": {"type": "grid", "values": [0.01, 0.02]}},
                             "num_samples": 1, "max_concurrent_trials": 1, "grace_period": 1,
                             "workers_per_trial": 1})
    path = tmp_path / "tune.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    env = {**os.environ, "MLRAY_HOME": str(mlray_env.home),
           "MLRAY_STATE_URL": mlray_env.resolved_state_url,
           "MLRAY_NAMESPACE": mlray_env.namespace, "RAY_ADDRESS": ray_shared.gcs_address}
    done = subprocess.run([sys.executable, "-m", "mlray.cli", "tune", "--config", str(path),
                           "--json"], env=env, capture_output=True, text=True, timeout=900,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    tuned = json.loads(done.stdout)
    assert tuned["version"]["version"] == 1 and len(tuned["trials"]) == 2
