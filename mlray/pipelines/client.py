"""``client.pipelines``: define, run and watch pipelines of one project."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlray.errors import DeadlineExceeded
from mlray.pipelines.definitions import PipelineSpec, load_pipelines
from mlray.pipelines.service import ApplyResult, PipelineSummary, RunStart
from mlray.pipelines.state import PipelineRun

__all__ = ["PipelinesClient"]


class PipelinesClient:
    """Pipelines of one project, through the ``pipelines`` actor."""

    def __init__(self, transport: Any, who: Any, project: str) -> None:
        self._transport = transport
        self._who = who
        self.project = project

    def _call(self, method: str, *args: Any, read: bool = False, **kwargs: Any) -> Any:
        return self._transport.call("pipelines", method, self._who, self.project, *args,
                                    idempotent=read, **kwargs)

    def apply(self, pipelines: Sequence[PipelineSpec] | str | Path, *, prune: bool = False,
              dry_run: bool = False) -> ApplyResult:
        """Register pipelines (specs, or a YAML file or directory of them); ``prune``
        removes the project's others. Returns the diff."""
        specs = load_pipelines(pipelines) if isinstance(pipelines, str | Path) \
            else list(pipelines)
        return self._call("apply", specs, prune=prune, dry_run=dry_run)

    def list(self) -> list[PipelineSummary]:
        """The project's pipelines with their latest runs."""
        return self._call("pipelines", read=True)

    def get(self, name: str) -> PipelineSpec:
        """One pipeline's definition."""
        return self._call("pipeline", name, read=True)

    def run(self, name: str, params: dict[str, Any] | None = None, *, wait: bool = False,
            timeout_s: float = 3600.0) -> RunStart:
        """Start a run (or join the active one: ``coalesced``); with ``wait``, return once
        it stopped moving (succeeded, failed, cancelled or waiting for approval)."""
        started: RunStart = self._call("run", name, params or {})
        if wait:
            return started.model_copy(update={"run": self.wait(started.run.run_id, timeout_s)})
        return started

    def runs(self, pipeline: str | None = None, limit: int = 50) -> list[PipelineRun]:
        """Runs, newest first."""
        return self._call("runs", pipeline, limit, read=True)

    def show(self, run_id: str) -> PipelineRun:
        """One run with its stages."""
        return self._call("get_run", run_id, read=True)

    def resume(self, run_id: str) -> PipelineRun:
        """Run a failed or cancelled run's unfinished stages again."""
        return self._call("resume", run_id)

    def cancel(self, run_id: str) -> PipelineRun:
        """Stop a run."""
        return self._call("cancel", run_id)

    def approve(self, run_id: str, stage: str, *, reject: bool = False,
                comment: str = "") -> PipelineRun:
        """Let a waiting approval stage pass (or ``reject`` it); editor or admin."""
        return self._call("approve", run_id, stage, reject=reject, comment=comment)

    def allowed_code(self) -> list[str]:
        """The stage code (``module:callable`` or modules) a platform admin allowed."""
        return self._call("allowed_code", read=True)

    def allow_code(self, allow: list[str] | None = None,
                   revoke: list[str] | None = None) -> list[str]:
        """Allow or revoke stage code for every project (platform admins; audited);
        returns the new list."""
        return self._call("allow_code", allow=allow, revoke=revoke)

    def wait(self, run_id: str, timeout_s: float = 3600.0, poll_s: float = 0.2
             ) -> PipelineRun:
        """The run once it is no longer RUNNING or PENDING.

        Raises:
            DeadlineExceeded: it still runs after ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            run = self.show(run_id)
            if run.state not in ("PENDING", "RUNNING"):
                return run
            if time.monotonic() > deadline:
                raise DeadlineExceeded(f"pipeline run {run_id} still {run.state} after "
                                       f"{timeout_s:g}s", field="timeout_s")
            time.sleep(poll_s)
