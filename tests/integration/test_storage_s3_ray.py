"""Training and serving on ``s3://`` (a real S3 API server, moto's): Ray Train keeps its
checkpoints in the bucket and a run whose worker is killed resumes from there, the
registered artifact lives there, and a model replica's loading path, in a Ray worker
process, fetches it from there."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

import mlray
from mlray.config import PlatformConfig, load_config
from mlray.datasets import example_transactions, write_fraud
from mlray.serving.batched import load_runner
from mlray.serving.settings import ModelServing
from mlray.storage.fsuri import open_uri
from mlray.training.loop import STATE_FILE
from tests.conftest import OwnRay, wait_for
from tests.integration.test_training import (
    _logged_epochs,
    _train_in_thread,
    kill_a_train_worker,
    make_config,
)


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def s3_config(mlray_env: PlatformConfig, s3_uri: str) -> PlatformConfig:
    base = s3_uri.partition("?")
    return load_config(env={
        **{f"MLRAY_{k.upper()}": str(v) for k, v in mlray_env.model_dump().items()
           if k in ("home", "state_url", "redis_prefix", "namespace")},
        "MLRAY_ARTIFACT_URI": f"{base[0]}/artifacts?{base[2]}",
        "MLRAY_STORAGE_URI": f"{base[0]}/ray-train?{base[2]}"})


@pytest.mark.slow
def test_training_resumes_from_s3_and_a_replica_loads_from_it(
        s3_config: PlatformConfig, tmp_path: Path, ray_shared: OwnRay) -> None:
    import ray

    client = mlray.connect(config=s3_config)
    data = str(write_fraud(tmp_path / "fraud.parquet", 4000, seed=3))
    epochs = 5
    box = _train_in_thread(client, make_config(
        data, hyperparameters={"epochs": epochs, "batch_size": 32}, scaling={"num_workers": 1}))
    wait_for(lambda: _logged_epochs(client) >= 2, timeout=240)
    kill_a_train_worker(ray_shared)
    box["thread"].join(timeout=400)
    assert "error" not in box, box.get("error")
    outcome = box["outcome"]
    # One run, each epoch logged once: the restarted worker began after the checkpoint it
    # read back from the bucket, not from epoch 0.
    history = client.experiments.metric_history(outcome.run_id, "val_loss")
    assert sorted(p.step for p in history) == list(range(epochs))
    version = outcome.version
    assert version is not None and version.artifact_uri.startswith("s3://")

    fs, root = open_uri(str(s3_config.storage_uri))
    saved = [i.path for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
             if i.path.endswith(f"/{STATE_FILE}")]
    assert any("/checkpoint_" in path for path in saved), saved

    @ray.remote(num_cpus=0)
    def replica_load(config: PlatformConfig) -> list[float]:
        runner = load_runner(config, version, ModelServing())
        return runner.predictor.predict(example_transactions()).tolist()

    scores = np.array(ray.get(replica_load.remote(s3_config), timeout=120))
    assert scores.shape == (2,) and ((scores >= 0) & (scores <= 1)).all()
