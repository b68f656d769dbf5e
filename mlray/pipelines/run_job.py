"""A Ray job per pipeline run: the run as the Ray dashboard and ``ray job`` show it.

When a run starts (or resumes) the ``pipelines`` actor submits a job whose submission id
is ``pipeline-<pipeline>-<run>`` (``-resume-<n>`` for a resume) and whose metadata name
the project, pipeline and run. The job's driver follows the run: it prints each stage's
moves, and ends as the run ends: SUCCEEDED when the run succeeds, FAILED when it fails or
is cancelled. Stopping the job (``ray job stop``, the dashboard) cancels the run.

The stages themselves are Ray tasks the actor starts (named ``<pipeline>.<stage>
(<run>)``): the actor stays the one writer of the run's state, and the run does not
depend on this process (a lost driver loses no stage; a run survives its job).

    python -m mlray.pipelines.run_job PROJECT RUN_ID     # the job's entrypoint
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from mlray.auth import KEY_ENV, api_key_from_env
from mlray.pipelines.state import PipelineRun, RunState

__all__ = ["RunJobs", "follow", "job_submission_id", "main"]

log = logging.getLogger("mlray.pipelines")

#: Consecutive failed reads of the run after which the driver gives up (the platform is
#: gone: its actors were stopped).
MAX_MISSES = 10


def job_submission_id(run: PipelineRun, resumed: int = 0) -> str:
    """The job's submission id: the pipeline's name and the run's id (and the resume)."""
    base = f"pipeline-{run.pipeline}-{run.run_id}"
    return f"{base}-resume-{resumed}" if resumed else base


class RunJobs:
    """Submits each run's job to the cluster's job server (best effort, in a thread: a
    run never waits for it nor fails because of it)."""

    def __init__(self, namespace: str, dashboard_url: Callable[[], str | None]) -> None:
        self._namespace = namespace
        self._dashboard_url = dashboard_url
        self._resumes: dict[str, int] = {}

    def submit(self, run: PipelineRun, credential: str | None) -> None:
        """Submit the job of ``run`` (a second submission of a run is its resume)."""
        resumed = self._resumes.get(run.run_id, -1) + 1
        self._resumes[run.run_id] = resumed
        threading.Thread(target=self._submit, args=(run, credential, resumed), daemon=True,
                         name=f"job-{run.run_id}").start()

    def _submit(self, run: PipelineRun, credential: str | None, resumed: int) -> None:
        try:
            from ray.job_submission import JobSubmissionClient

            url = self._dashboard_url()
            if not url:
                log.info("no job server: run %s has no Ray job", run.run_id)
                return
            env = {"MLRAY_NAMESPACE": self._namespace, "RAY_AUTH_MODE": "token"}
            if credential:
                env[KEY_ENV] = credential
            JobSubmissionClient(url if "://" in url else f"http://{url}").submit_job(
                entrypoint=f"{sys.executable} -m mlray.pipelines.run_job {run.project} "
                           f"{run.run_id}",
                submission_id=job_submission_id(run, resumed),
                metadata={"project": run.project, "pipeline": run.pipeline,
                          "run": run.run_id, "trigger": run.trigger},
                runtime_env={"env_vars": env}, entrypoint_num_cpus=0)
        except Exception:
            log.warning("could not submit the Ray job of pipeline run %s", run.run_id,
                        exc_info=True)


def follow(read: Callable[[], PipelineRun], cancel: Callable[[], Any],
           out: Callable[[str], None] = print, interval_s: float = 1.0,
           stop: threading.Event | None = None) -> int:
    """Follow a run until it ends: print each stage's moves; 0 when it succeeded, 1 when
    it failed or was cancelled, 2 when it could not be read :data:`MAX_MISSES` times in a
    row. ``stop`` set: cancel the run (the job was stopped) and return 1."""
    stop = stop or threading.Event()
    seen: dict[str, str] = {}
    misses = 0
    while True:
        if stop.is_set():
            try:
                cancel()
                out("the job was stopped: run cancelled")
            except Exception as exc:  # it ended meanwhile, or the platform is gone
                out(f"the job was stopped; the run was not cancelled: {exc}")
            return 1
        try:
            run = read()
            misses = 0
        except Exception as exc:
            misses += 1
            if misses >= MAX_MISSES:
                out(f"cannot read the run: {type(exc).__name__}: {exc}")
                return 2
            stop.wait(interval_s)
            continue
        for name, stage in run.stages.items():
            state = str(stage.state)
            if seen.get(name) != state:
                seen[name] = state
                out(f"{name}: {state}" + (f" ({stage.message})" if stage.message else ""))
        if not run.active:
            out(f"run {run.run_id} {run.state}" + (f": {run.message}" if run.message else ""))
            return 0 if run.state is RunState.SUCCEEDED else 1
        stop.wait(interval_s)


def main(argv: list[str] | None = None) -> int:
    """The job's entrypoint: follow run ``argv[1]`` of project ``argv[0]``."""
    import ray

    from mlray._private.transport import ActorTransport

    project, run_id = (argv if argv is not None else sys.argv[1:])[:2]
    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"), log_to_driver=False)
    namespace = os.environ["MLRAY_NAMESPACE"]
    credential = api_key_from_env()
    try:  # the platform's actor only: never start one for a platform that was stopped
        transport = ActorTransport({"pipelines": ray.get_actor("pipelines",
                                                              namespace=namespace)},
                                   read_retries=2)
    except ValueError:
        print(f"no pipelines actor in namespace {namespace!r}")
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"following pipeline run {run_id} of project {project}", flush=True)
    return follow(
        lambda: transport.call("pipelines", "get_run", credential, project, run_id,
                               idempotent=True),
        lambda: transport.call("pipelines", "cancel", credential, project, run_id),
        out=lambda line: print(time.strftime("%H:%M:%S ") + line, flush=True), stop=stop)


if __name__ == "__main__":
    sys.exit(main())
