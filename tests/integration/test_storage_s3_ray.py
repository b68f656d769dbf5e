"""Training and serving on ``s3://`` (a real S3 API server, moto's): Ray Train keeps its
checkpoints in the bucket, the registered artifact lives there, and a model replica's
loading path, in a Ray worker process, fetches it from there."""

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
from mlray.training.runner import run_training
from tests.integration.test_training import make_config


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


def test_training_and_a_replica_load_on_s3(s3_config: PlatformConfig, tmp_path: Path) -> None:
    import ray

    client = mlray.connect(config=s3_config)
    data = str(write_fraud(tmp_path / "fraud.parquet", 1500, seed=3))
    outcome = run_training(client, make_config(data, hyperparameters={"epochs": 2},
                                               scaling={"num_workers": 1}))
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
