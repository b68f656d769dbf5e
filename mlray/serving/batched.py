"""A loaded model version behind a dynamic batcher: what a model app replica runs, and
what an ingress replica runs for a colocated version.

Requests are column batches; ``serve.batch`` gathers concurrent ones (up to the tuning's
``max_batch_size``, waiting at most ``batch_wait_timeout_s``) into one forward pass.
"""

from __future__ import annotations

import collections
import tempfile
from typing import Any

import numpy as np
import ray
import torch
from ray import serve

from mlray.config import PlatformConfig
from mlray.models.predictor import Predictor
from mlray.registry.architectures import ArchitecturePolicy
from mlray.registry.types import ModelVersion
from mlray.serving.loaded_model import Columns, VersionRunner, concat_columns, split_rows
from mlray.serving.settings import BatchTuning, ModelServing
from mlray.serving.telemetry import ModelMetrics
from mlray.storage import ArtifactStore, open_state_store

__all__ = ["BatchedVersion", "load_runner"]


def load_runner(config: PlatformConfig, version: ModelVersion, serving: ModelServing
                ) -> VersionRunner:
    """Fetch the version's artifact (checked by sha256), load it and warm it up."""
    artifacts = ArtifactStore(config.resolved_artifact_uri)
    device = "cuda" if serving.num_gpus > 0 and torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="mlray-serve-") as scratch:  # loaded, then gone
        local = artifacts.fetch(version.artifact_uri, version.artifact_sha256, scratch)
        predictor = Predictor.from_directory(local, allowed_architectures(config))
    return VersionRunner(predictor, version.input_schema, quantize=serving.quantize,
                         device=device)


def allowed_architectures(config: PlatformConfig) -> frozenset[str]:
    """The admin-allowed model architectures: from the platform's ``registry`` actor when
    this process is on its cluster, else from the state store itself (embedded use)."""
    if ray.is_initialized():
        try:
            registry = ray.get_actor("registry", namespace=config.namespace)
        except ValueError:
            registry = None
        if registry is not None:
            return frozenset(ray.get(registry.architectures.remote(), timeout=60))
    with open_state_store(config.resolved_state_url, redis_prefix=config.redis_prefix) as store:
        return ArchitecturePolicy(store).allowed()


class BatchedVersion:
    """One version's runner with its own batcher, batch-size counts and metrics."""

    def __init__(self, model: str, version: int, runner: VersionRunner,
                 tuning: BatchTuning, *, project: str) -> None:
        self.model, self.version, self.runner = model, version, runner
        self.tuning = tuning
        self.batch_sizes: collections.Counter[int] = collections.Counter()
        self.rows = 0
        self.metrics = ModelMetrics(project, model, version)
        self.predict = serve.batch(max_batch_size=tuning.max_batch_size,
                                   batch_wait_timeout_s=tuning.batch_wait_timeout_s
                                   )(self._predict_batch)

    def retune(self, tuning: BatchTuning) -> None:
        """Apply new batch size and wait to the live batcher."""
        self.predict.set_max_batch_size(tuning.max_batch_size)
        self.predict.set_batch_wait_timeout_s(tuning.batch_wait_timeout_s)
        self.tuning = tuning

    async def _predict_batch(self, requests: list[Columns]) -> list[np.ndarray]:
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

    def stats(self) -> dict[str, Any]:
        """Batching figures so far."""
        return {"model": self.model, "version": self.version, "rows": self.rows,
                "batch_sizes": dict(self.batch_sizes), "quantized": self.runner.quantized,
                "tuning": self.tuning.model_dump()}
