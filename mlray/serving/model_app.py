"""The Serve application of one model version, ``<model>--v<N>``: a thin shell.

A replica fetches the version's artifact (checked by sha256), loads and warms it up in
``__init__`` (so it is ready only once it can answer), batches requests with
``@serve.batch``, and fails ``check_health`` when the model stops predicting. Batch size
and wait are its ``user_config``: changing them reconfigures live replicas.
"""

from __future__ import annotations

import collections
import gc
import tempfile
from typing import Any

import numpy as np
import torch
from ray import serve
from ray.serve import Application

from mlray.config import PlatformConfig
from mlray.models.predictor import Predictor
from mlray.registry.types import ModelVersion
from mlray.serving.metrics import ModelMetrics
from mlray.serving.model_names import app_name
from mlray.serving.runner import Columns, VersionRunner, concat_columns, split_rows
from mlray.serving.settings import BatchTuning, ModelServing
from mlray.storage import ArtifactStore

__all__ = ["ModelServer", "app_name", "model_app"]


@serve.deployment(name="ModelServer", health_check_period_s=5, health_check_timeout_s=30)
class ModelServer:
    """One replica of a model version."""

    def __init__(self, config: PlatformConfig, version: ModelVersion,
                 serving: ModelServing) -> None:
        artifacts = ArtifactStore(config.resolved_artifact_uri)
        local = artifacts.fetch(version.artifact_uri, version.artifact_sha256,
                                tempfile.mkdtemp(prefix="mlray-serve-"))
        self.model, self.version = version.model, version.version
        device = "cuda" if serving.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        self.runner = VersionRunner(Predictor.from_directory(local), version.input_schema,
                                    quantize=serving.quantize, device=device)
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self.rows = 0
        self.metrics = ModelMetrics(version.model, version.version)
        gc.freeze()  # the loaded model leaves the collector's scans (tail latency)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply new batch tuning to this live replica."""
        tuning = BatchTuning.model_validate(user_config)
        self.predict.set_max_batch_size(tuning.max_batch_size)
        self.predict.set_batch_wait_timeout_s(tuning.batch_wait_timeout_s)

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def predict(self, requests: list[Columns]) -> list[np.ndarray]:
        """Answer a batch of column requests with one forward pass."""
        self.batch_sizes[len(requests)] += 1
        self.metrics.batch_size(len(requests))
        lengths = [len(next(iter(r.values()))) for r in requests]
        self.rows += sum(lengths)
        return split_rows(self.runner.predict(concat_columns(requests)), lengths)

    async def smoke(self) -> list[float]:
        """Predict the probe rows through the batching path (a rollout's smoke test)."""
        probe = {k: v[:4] for k, v in self.runner.probe.items()}
        return (await self.predict(probe)).tolist()

    def check_health(self) -> None:
        """Raise (Serve restarts the replica) when the model cannot predict."""
        self.runner.check()

    def stats(self) -> dict[str, Any]:
        """This replica's own batching figures."""
        return {"model": self.model, "version": self.version, "rows": self.rows,
                "batch_sizes": dict(self.batch_sizes), "quantized": self.runner.quantized}


def model_app(config: PlatformConfig, version: ModelVersion, serving: ModelServing
              ) -> Application:
    """The Serve application for ``version`` with ``serving``'s replicas and batching."""
    options: dict[str, Any] = {
        "max_ongoing_requests": serving.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": serving.num_cpus, "num_gpus": serving.num_gpus},
        "user_config": serving.tuning.model_dump(),
    }
    if serving.autoscaling is not None:
        options["autoscaling_config"] = {
            "min_replicas": serving.autoscaling.min_replicas,
            "max_replicas": serving.autoscaling.max_replicas,
            "target_ongoing_requests": serving.autoscaling.target_ongoing_requests,
        }
    else:
        options["num_replicas"] = serving.num_replicas
    return ModelServer.options(**options).bind(config, version, serving)
