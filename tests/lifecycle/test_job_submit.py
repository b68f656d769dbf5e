"""`ray job submit --working-dir . -- python -m jobs.train` against an `mlray up` head.

The job is submitted WITHOUT the platform's MLRAY_HOME: it must take the platform's config
from the running actors (and say so), not create or use a store of its own.
"""

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


def test_train_job_through_ray_job_submit_uses_the_platforms_config(tmp_path: Path) -> None:
    ray_cli = str(Path(sys.executable).with_name("ray"))
    home = tmp_path / "home"
    env = {**os.environ, "RAY_AUTH_MODE": "token", "MLRAY_HOME": str(home),
           "MLRAY_RAY_HEAD_PORT": str(free_port()),
           "MLRAY_RAY_DASHBOARD_PORT": str(free_port())}
    env.pop("RAY_ADDRESS", None)
    data = write_fraud(tmp_path / "fraud.parquet", 3000, seed=2)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "name": "submitted",
        "data": {"path": str(data), "label": "is_fraud", "numeric": FRAUD_NUMERIC,
                 "categorical": FRAUD_CATEGORICAL},
        "model": {"type": "mlp_classifier", "hidden": [8]},
        "hyperparameters": {"epochs": 2, "lr": 0.01},
        "scaling": {"num_workers": 2}}))
    mlray_cli = [sys.executable, "-m", "mlray.cli"]
    up = subprocess.run([*mlray_cli, "up", "--no-serve", "--num-cpus", "4", "--json"],
                        env=env, capture_output=True, text=True, timeout=400, check=False)
    assert up.returncode == 0, up.stderr[-2000:]
    try:
        address = json.loads(up.stdout)["dashboard_url"]
        job_home = tmp_path / "job-home"  # what the job's own environment would point at
        runtime_env = json.dumps({"env_vars": {"MLRAY_HOME": str(job_home)}})
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
        assert f"mlray: state_url: the running platform uses sqlite:///{home}" in logs
    finally:
        down = subprocess.run([*mlray_cli, "down"], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert down.returncode == 0, down.stderr[-2000:]
    assert not (job_home / "state.db").exists()
    client = mlray.connect(config=load_config(env={"MLRAY_HOME": str(home)}), local=True)
    version = client.registry.get_version("submitted", 1)
    assert version.lineage.run_id and 0.0 <= version.metrics["roc_auc"] <= 1.0
    [job] = client.jobs.list()
    assert job.status.value == "COMPLETED" and job.run_id == version.lineage.run_id
