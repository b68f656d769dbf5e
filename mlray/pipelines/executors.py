"""Where stages run: as Ray tasks (the ``pipelines`` actor), or in threads (tests, no Ray).

An executor starts a stage and later answers whether it finished; it never blocks the
engine. Each Ray task asks for the stage's CPUs and GPUs and is named
``<pipeline>.<stage> (<run>)``, so the dashboard shows every stage under its pipeline,
and runs in a worker of its code's version (the cache key's): the task's runtime
environment names that version, and Ray reuses a worker only for tasks of the same
environment, so a stage whose callable (or explicit ``version``) changed never runs in a
process that imported the older copy, while stages of unchanged code share warm workers.
"""

from __future__ import annotations

import dataclasses
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any, Protocol

from mlray.pipelines.definitions import PipelineSpec
from mlray.pipelines.stage import StageTask, run_stage
from mlray.storage.artifacts import ArtifactRef

__all__ = ["CODE_VERSION_VAR", "Executor", "Outcome", "RayExecutor", "ThreadExecutor"]

#: The environment variable that keys a stage's worker to its code's version.
CODE_VERSION_VAR = "MLRAY_STAGE_CODE"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How a started stage ended: its output, or an error message."""

    output: ArtifactRef | None = None
    error: str | None = None


class Executor(Protocol):
    """Starts stages and reports their outcomes without blocking."""

    def submit(self, task: StageTask, num_cpus: float, num_gpus: float) -> Any:
        """Start ``task``; returns a handle for :meth:`poll` and :meth:`cancel`."""

    def poll(self, handle: Any) -> Outcome | None:
        """The outcome once the stage ended, else None."""

    def cancel(self, handle: Any) -> None:
        """Stop the stage (best effort); its outcome is ignored afterwards."""

    def wait(self, handles: list[Any], timeout_s: float) -> None:
        """Return once one of ``handles`` ended, or after ``timeout_s``."""


class ThreadExecutor:
    """Stages in this process's threads (a cancelled one runs on, unobserved)."""

    def __init__(self, workers: int = 4) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stage")

    def submit(self, task: StageTask, num_cpus: float, num_gpus: float) -> Future[ArtifactRef]:
        return self._pool.submit(run_stage, task)

    def poll(self, handle: Future[ArtifactRef]) -> Outcome | None:
        if not handle.done():
            return None
        exc = handle.exception()
        if exc is not None:
            return Outcome(error=f"{type(exc).__name__}: {exc}")
        return Outcome(output=handle.result())

    def cancel(self, handle: Future[ArtifactRef]) -> None:
        handle.cancel()

    def wait(self, handles: list[Any], timeout_s: float) -> None:
        """Return once one of ``handles`` ended, or after ``timeout_s``."""
        if handles:
            futures_wait(handles, timeout=timeout_s, return_when=FIRST_COMPLETED)
        else:
            time.sleep(timeout_s)

    def shutdown(self) -> None:
        """Stop taking work (running stages finish)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


class RayExecutor:
    """Each stage one Ray task with the stage's resources, named after its pipeline."""

    def __init__(self) -> None:
        import ray

        from mlray.pipelines.cache import code_versions

        self._remote = ray.remote(max_retries=0)(run_stage)
        self._versions = ray.remote(num_cpus=0, max_retries=0)(code_versions)

    def submit(self, task: StageTask, num_cpus: float, num_gpus: float) -> Any:
        name = f"{task.pipeline}.{task.stage} ({task.run_id})"
        env = {"env_vars": {CODE_VERSION_VAR: task.code_version}} if task.code_version else None
        return self._remote.options(num_cpus=num_cpus, num_gpus=num_gpus, name=name,
                                    runtime_env=env).remote(task)

    def poll(self, handle: Any) -> Outcome | None:
        import ray
        from ray import exceptions as rex

        done, _ = ray.wait([handle], timeout=0)
        if not done:
            return None
        try:
            return Outcome(output=ray.get(handle))
        except rex.TaskCancelledError:
            return Outcome(error="cancelled")
        except rex.RayTaskError as exc:
            cause = getattr(exc, "cause", None) or exc
            return Outcome(error=f"{type(cause).__name__}: {cause}")
        except rex.RayError as exc:  # worker died, object lost
            return Outcome(error=f"{type(exc).__name__}: {exc}")

    def cancel(self, handle: Any) -> None:
        import ray

        ray.cancel(handle, force=True)

    def code_versions(self, spec: PipelineSpec) -> dict[str, str]:
        """:func:`~mlray.pipelines.cache.code_versions` worked out in a Ray task: a
        project's modules are imported there, never in the calling (platform) process.

        Raises:
            InvalidInput: a stage's code cannot be loaded.
        """
        import ray
        from ray import exceptions as rex

        from mlray.errors import MlrayError

        try:
            return ray.get(self._versions.remote(spec), timeout=120)
        except rex.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, MlrayError):
                raise cause from None
            raise

    def wait(self, handles: list[Any], timeout_s: float) -> None:
        """Return once one of ``handles`` ended, or after ``timeout_s``."""
        import ray

        if handles:
            ray.wait(handles, num_returns=1, timeout=timeout_s)
        else:
            time.sleep(timeout_s)
