"""Experiments, runs and training jobs through the client."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mlray._private.validation import build
from mlray.client.facade import Who, _Facade
from mlray.storage.artifacts import ArtifactStore
from mlray.tracking.jobs import JobStatus, TrainingJob
from mlray.tracking.types import (
    Experiment,
    MetricPoint,
    Run,
    RunArtifact,
    RunComparison,
    RunPage,
    RunStatus,
)

__all__ = ["ExperimentsClient", "JobsClient"]


class ExperimentsClient(_Facade):
    """Experiment tracking for one project."""

    def __init__(self, transport: Any, who: Who, project: str,
                 artifacts: ArtifactStore) -> None:
        super().__init__("experiments", transport, who, project)
        self._artifacts = artifacts

    def create_experiment(self, name: str, *, description: str = "",
                          tags: dict[str, str] | None = None) -> Experiment:
        """Create an experiment."""
        return self._create("create_experiment", name, description=description,
                            tags=tags)

    def get_experiment(self, name: str) -> Experiment:
        """One experiment."""
        return self._call("get_experiment", name, read=True)

    def list_experiments(self) -> list[Experiment]:
        """All experiments of the project."""
        return self._call("list_experiments", read=True)

    def start_run(self, experiment: str, *, name: str | None = None,
                  params: dict[str, Any] | None = None,
                  tags: dict[str, str] | None = None) -> Run:
        """Start a run (the experiment is created when missing)."""
        return self._create("start_run", experiment, name=name, params=params, tags=tags)

    @contextlib.contextmanager
    def run(self, experiment: str, **kwargs: Any) -> Iterator[Run]:
        """A run that ends FINISHED, or FAILED with the error when the block raises."""
        run = self.start_run(experiment, **kwargs)
        try:
            yield run
        except BaseException as exc:
            status = RunStatus.KILLED if isinstance(exc, KeyboardInterrupt) else RunStatus.FAILED
            self.end_run(run.run_id, status, error=f"{type(exc).__name__}: {exc}")
            raise
        self.end_run(run.run_id)

    def get_run(self, run_id: str) -> Run:
        """One run."""
        return self._call("get_run", run_id, read=True)

    def log_params(self, run_id: str, params: dict[str, Any]) -> Run:
        """Record params (write-once)."""
        return self._call("log_params", run_id, params)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> Run:
        """Merge tags into a run."""
        return self._call("set_tags", run_id, tags)

    def log_metric(self, run_id: str, key: str, value: float, step: int = 0,
                   timestamp: float | None = None) -> Run:
        """Log one metric point."""
        point = build(MetricPoint, "points.0", key=key, value=value, step=step,
                      timestamp=timestamp)
        return self.log_metrics(run_id, [point])

    def log_metrics(self, run_id: str, points: list[MetricPoint] | dict[str, float],
                    step: int = 0) -> Run:
        """Log a batch: a list of points, or ``{key: value}`` at one ``step``."""
        if isinstance(points, dict):
            points = [build(MetricPoint, f"points.{k}", key=k, value=v, step=step)
                      for k, v in points.items()]
        return self._call("log_metrics", run_id, points)

    def metric_history(self, run_id: str, key: str) -> list[MetricPoint]:
        """Every point of one metric."""
        return self._call("metric_history", run_id, key, read=True)

    def log_artifact(self, run_id: str, local_path: str | Path,
                     path: str | None = None) -> Run:
        """Upload a local file or directory and attach it to the run."""
        ref = self._artifacts.put(local_path)
        artifact = build(RunArtifact, "artifact", path=path or Path(local_path).name,
                         uri=ref.uri, sha256=ref.sha256, size=ref.size)
        return self._call("log_artifact", run_id, artifact)

    def end_run(self, run_id: str, status: RunStatus | str = RunStatus.FINISHED, *,
                error: str | None = None) -> Run:
        """End a run."""
        return self._call("end_run", run_id, status, error=error)

    def search_runs(self, *, experiments: list[str] | None = None, filter: str | None = None,
                    order_by: list[str] | None = None, limit: int = 100,
                    offset: int = 0) -> RunPage:
        """Search runs, e.g. ``filter="metrics.loss < 0.2"``, ``order_by=["metrics.loss"]``."""
        return self._call("search_runs", experiments=experiments, filter=filter,
                          order_by=order_by, limit=limit, offset=offset, read=True)

    def compare_runs(self, run_ids: list[str]) -> RunComparison:
        """Runs side by side."""
        return self._call("compare_runs", run_ids, read=True)


class JobsClient(_Facade):
    """Training and tuning job records for one project."""

    def __init__(self, transport: Any, who: Who, project: str) -> None:
        super().__init__("jobs", transport, who, project)

    def create(self, kind: str, name: str, details: dict[str, Any] | None = None
               ) -> TrainingJob:
        """Record a PENDING job."""
        return self._create("create_job", kind, name, details)

    def update(self, job_id: str, *, status: JobStatus | str | None = None,
               run_id: str | None = None, error: str | None = None,
               model_version: int | None = None, heartbeat: bool = False) -> TrainingJob:
        """Change a job's status or attach its run, error or model version."""
        return self._call("update_job", job_id, status=status, run_id=run_id, error=error,
                          model_version=model_version, heartbeat=heartbeat)

    def cancel(self, job_id: str) -> TrainingJob:
        """Cancel a job (a running one stops after its current epoch)."""
        return self._call("cancel_job", job_id)

    def get(self, job_id: str) -> TrainingJob:
        """One job."""
        return self._call("get_job", job_id, read=True)

    def list(self, *, status: JobStatus | str | None = None, limit: int = 100
             ) -> list[TrainingJob]:
        """The project's jobs, newest first."""
        return self._call("list_jobs", status=status, limit=limit, read=True)
