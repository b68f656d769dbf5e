"""The Ray Train callback that streams each epoch to the tracker and watches for cancel.

It runs in Ray Train's controller actor, so it reaches the control-plane actors by
name; the driver is not involved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import ray
from ray.train import UserCallback

from mlray.tracking.types import MetricPoint

__all__ = ["TOKEN_TTL_S", "TrackerCallback", "TrackingTarget", "TrainingCancelled"]

LOGGED = ("train_loss", "val_loss", "samples_per_s")


class TrainingCancelled(RuntimeError):
    """Raised in the controller when the job was cancelled; training stops."""


#: How long the token a training or tuning job hands its Train controllers lives.
TOKEN_TTL_S = 24 * 3600.0


@dataclass(frozen=True)
class TrackingTarget:
    """Where epochs are logged: a run (and optionally a job) in a project, and the
    credential the calls present (a token minted from the submitter's key, or None
    where the platform runs ``auth: none``)."""

    namespace: str
    credential: str | None
    project: str
    run_id: str
    job_id: str | None = None

    def call(self, actor: str, method: str, *args: Any, **kwargs: Any) -> Any:
        """Invoke a control-plane actor method and wait for it."""
        from actors import find_or_start

        handle = find_or_start(actor, self.namespace)
        return ray.get(handle.invoke.remote(method, self.credential, self.project, *args, **kwargs),
                       timeout=60)


class TrackerCallback(UserCallback):
    """Logs rank 0's epoch metrics to the run, beats the job's heartbeat, honours cancel."""

    def __init__(self, target: TrackingTarget) -> None:
        self.target = target

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: Any) -> None:
        first = metrics[0]
        step = int(first.get("epoch", 0))
        # A diverging loss (NaN, inf) is not a loggable value; the other metrics still are.
        points = [MetricPoint(key=k, value=float(first[k]), step=step) for k in LOGGED
                  if k in first and math.isfinite(float(first[k]))]
        if points:
            self.target.call("experiments", "log_metrics", self.target.run_id, points)
        if self.target.job_id is None:
            return
        job = self.target.call("jobs", "update_job", self.target.job_id, heartbeat=True)
        if job.cancel_requested:
            raise TrainingCancelled(f"job {self.target.job_id} was cancelled")
