"""`ray job submit --working-dir . -- python -m jobs.train` against a `ray start` cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import mlray
from mlray.config import load_config
from mlray.datasets import FRAUD_CATEGORICAL, FRAUD_NUMERIC, write_fraud
from tests.conftest import free_port

pytestmark = pytest.mark.lifecycle
ROOT = Path(__file__).resolve().parents[2]


def test_train_job_through_ray_job_submit(tmp_path: Path) -> None:
    ray_cli = str(Path(sys.executable).with_name("ray"))
    port, dashboard = free_port(), free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    data = write_fraud(tmp_path / "fraud.parquet", 3000, seed=2)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "name": "submitted",
        "data": {"path": str(data), "label": "is_fraud", "numeric": FRAUD_NUMERIC,
                 "categorical": FRAUD_CATEGORICAL},
        "model": {"type": "mlp_classifier", "hidden": [8]},
        "hyperparameters": {"epochs": 2, "lr": 0.01},
        "scaling": {"num_workers": 2}}))
    home = tmp_path / "home"
    subprocess.run([ray_cli, "start", "--head", f"--port={port}", f"--dashboard-port={dashboard}",
                    "--dashboard-host=127.0.0.1", "--num-cpus=4", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=180)
    try:
        address = f"http://127.0.0.1:{dashboard}"
        runtime_env = json.dumps({"env_vars": {"MLRAY_HOME": str(home)}})
        submitted = subprocess.run(
            [ray_cli, "job", "submit", "--address", address, "--no-wait",
             "--submission-id", "mlray-train-test", "--working-dir", str(ROOT),
             "--runtime-env-json", runtime_env, "--",
             sys.executable, "-m", "jobs.train", "--config", str(config)],
            env=env, capture_output=True, text=True, timeout=180, check=False)
        assert submitted.returncode == 0, submitted.stderr[-2000:]
        from ray.job_submission import JobStatus as RayJobStatus
        from ray.job_submission import JobSubmissionClient

        jobs = JobSubmissionClient(address)
        deadline = time.monotonic() + 480
        status = jobs.get_job_status("mlray-train-test")
        while status not in (RayJobStatus.SUCCEEDED, RayJobStatus.FAILED,
                             RayJobStatus.STOPPED) and time.monotonic() < deadline:
            time.sleep(2)
            status = jobs.get_job_status("mlray-train-test")
        logs = jobs.get_job_logs("mlray-train-test")
        assert status == RayJobStatus.SUCCEEDED, logs[-3000:]
        assert "COMPLETED" in logs and "registered models:/submitted/1" in logs
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, check=False,
                       timeout=120)
    client = mlray.connect(config=load_config(env={"MLRAY_HOME": str(home)}), local=True)
    version = client.registry.get_version("submitted", 1)
    assert version.lineage.run_id and 0.0 <= version.metrics["roc_auc"] <= 1.0
    [job] = client.jobs.list()
    assert job.status.value == "COMPLETED" and job.run_id == version.lineage.run_id
