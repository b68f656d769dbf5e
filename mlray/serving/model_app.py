"""The Serve application of one model version, ``<project>--<model>--v<N>``: a thin shell.

A replica fetches the version's artifact (checked by sha256), loads and warms it up in
``__init__`` (so it is ready only once it can answer), batches requests with
``serve.batch`` (:class:`~mlray.serving.batched.BatchedVersion`), and fails
``check_health`` when the model stops predicting. Batch size and wait are its
``user_config``: changing them reconfigures live replicas.
"""

from __future__ import annotations

import gc
from typing import Any

import numpy as np
from ray import serve
from ray.serve import Application

from mlray._private.redact import install_log_redaction
from mlray.config import PlatformConfig
from mlray.registry.types import ModelVersion
from mlray.serving.batched import BatchedVersion, load_runner
from mlray.serving.loaded_model import Columns
from mlray.serving.model_names import app_name
from mlray.serving.settings import BatchTuning, ModelServing

__all__ = ["ModelServer", "app_name", "model_app"]


@serve.deployment(name="ModelServer", health_check_period_s=5, health_check_timeout_s=30)
class ModelServer:
    """One replica of a model version."""

    def __init__(self, config: PlatformConfig, version: ModelVersion,
                 serving: ModelServing) -> None:
        install_log_redaction()
        self.deployed = serving
        self.batched = BatchedVersion(version.model, version.version,
                                      load_runner(config, version, serving), serving.tuning,
                                      project=version.project)
        gc.freeze()  # the loaded model leaves the collector's scans (tail latency)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Apply new batch tuning to this live replica."""
        self.batched.retune(BatchTuning.model_validate(user_config))

    async def predict(self, columns: Columns) -> np.ndarray:
        """One request's predictions, answered in a batch with concurrent ones."""
        return await self.batched.predict(columns)

    async def smoke(self) -> list[float]:
        """Predict the probe rows through the batching path (a rollout's smoke test)."""
        return await self.batched.smoke()

    def serving(self) -> dict[str, Any]:
        """The settings this replica runs with, its live batch tuning included (colocated
        copies load with them and follow the tuning)."""
        return self.deployed.model_copy(update={"tuning": self.batched.tuning}).model_dump()

    def check_health(self) -> None:
        """Raise (Serve restarts the replica) when the model cannot predict."""
        self.batched.runner.check()

    def stats(self) -> dict[str, Any]:
        """This replica's own batching figures."""
        return self.batched.stats()


def model_app(config: PlatformConfig, version: ModelVersion, serving: ModelServing
              ) -> Application:
    """The Serve application for ``version`` with ``serving``'s replicas and batching."""
    options: dict[str, Any] = {
        "max_ongoing_requests": serving.max_ongoing_requests,
        # Beyond this queue at each caller (an ingress replica), Serve refuses at once; the
        # ingress answers 503 with Retry-After.
        "max_queued_requests": serving.max_queued_requests,
        "ray_actor_options": {"num_cpus": serving.num_cpus, "num_gpus": serving.num_gpus,
                              "resources": dict(serving.replica_resources)},
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
