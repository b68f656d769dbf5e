"""A Ray job per pipeline run (#14): the service tells the actor of every run it starts or
resumes (with the run's credential), the job's id names the pipeline and the run, and the
job's driver follows the run: each stage's moves printed once, its exit code the run's
outcome, a stopped job cancelling the run. Stages run in threads over real stores."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from mlray.pipelines.cache import code_version
from mlray.pipelines.definitions import PipelineSpec
from mlray.pipelines.executors import ThreadExecutor
from mlray.pipelines.run_job import MAX_MISSES, follow, job_submission_id
from mlray.pipelines.service import PipelineService
from mlray.pipelines.state import PipelineRun, RunState
from mlray.storage import ArtifactStore
from mlray.storage.base import StateStore
from tests.unit.test_pipelines_robustness import ADMIN, EDITOR, S, finish, running


def _spec(gate: Path) -> PipelineSpec:
    return PipelineSpec.model_validate({"name": "nightly", "stages": [
        {"name": "first", "kind": S + "emit", "params": {"value": 2}},
        {"name": "wait", "kind": S + "block", "depends_on": ["first"],
         "params": {"gate": str(gate), "wait_s": 20}}]})


@pytest.fixture
def started(store: StateStore, artifacts: ArtifactStore
            ) -> Any:
    calls: list[tuple[str, str | None]] = []
    executor = ThreadExecutor()
    service = PipelineService(store, artifacts, executor,
                              mint=lambda caller, project: f"token-of-{caller.user}",
                              on_run=lambda run, cred: calls.append((run.run_id, cred)))
    service.allow_code(ADMIN, "p", allow=["tests.pipeline_stages"])
    yield service, calls
    executor.shutdown()


def test_each_started_and_resumed_run_is_handed_on_with_its_credential(
        started: Any, tmp_path: Path) -> None:
    service, calls = started
    gate = tmp_path / "gate"
    service.apply(EDITOR, "p", [_spec(gate)])
    run = service.run(EDITOR, "p", "nightly").run
    assert calls == [(run.run_id, "token-of-ed")]
    assert service.run(EDITOR, "p", "nightly").coalesced  # joined: no second job
    assert len(calls) == 1
    running(service, run, "wait")
    service.cancel(EDITOR, "p", run.run_id)
    gate.write_text("open")
    service.resume(EDITOR, "p", run.run_id)
    assert calls == [(run.run_id, "token-of-ed")] * 2
    assert finish(service, run).state is RunState.SUCCEEDED
    assert job_submission_id(run) == f"pipeline-nightly-{run.run_id}"
    assert job_submission_id(run, 1) == f"pipeline-nightly-{run.run_id}-resume-1"


def test_the_job_driver_prints_each_move_once_and_ends_as_the_run(
        started: Any, tmp_path: Path) -> None:
    service, _ = started
    gate = tmp_path / "gate"
    service.apply(EDITOR, "p", [_spec(gate)])
    run = service.run(EDITOR, "p", "nightly").run
    lines: list[str] = []

    def read() -> PipelineRun:
        service.tick()
        if service.get_run(EDITOR, "p", run.run_id).stages["wait"].state == "RUNNING":
            gate.write_text("open")
        return service.get_run(EDITOR, "p", run.run_id)

    assert follow(read, lambda: None, lines.append, interval_s=0.01) == 0
    assert lines.count("first: SUCCEEDED") == 1 and "wait: RUNNING" in lines
    assert lines[-1] == f"run {run.run_id} SUCCEEDED"


def test_a_stopped_job_cancels_its_run_and_fails(started: Any, tmp_path: Path) -> None:
    service, _ = started
    service.apply(EDITOR, "p", [_spec(tmp_path / "never")])
    run = service.run(EDITOR, "p", "nightly").run
    running(service, run, "wait")
    stop = threading.Event()
    stop.set()  # SIGTERM from `ray job stop`
    code = follow(lambda: service.get_run(EDITOR, "p", run.run_id),
                  lambda: service.cancel(EDITOR, "p", run.run_id), lambda _: None,
                  interval_s=0.01, stop=stop)
    assert code == 1
    assert service.get_run(EDITOR, "p", run.run_id).state is RunState.CANCELLED


def test_a_driver_that_cannot_read_the_run_gives_up() -> None:
    reads: list[int] = []

    def gone() -> PipelineRun:
        reads.append(1)
        raise ConnectionError("the platform was stopped")

    assert follow(gone, lambda: None, lambda _: None, interval_s=0.001) == 2
    assert len(reads) == MAX_MISSES


def test_a_stage_task_carries_the_code_version_its_cache_key_was_made_with(
        store: StateStore, artifacts: ArtifactStore, tmp_path: Path) -> None:
    """The Ray executor keys a stage's worker to ``task.code_version`` (its runtime env):
    the version must be the one the run's cache key used."""
    seen: list[Any] = []

    class Recording(ThreadExecutor):
        def submit(self, task: Any, num_cpus: float, num_gpus: float) -> Any:
            seen.append(task)
            return super().submit(task, num_cpus, num_gpus)

    executor = Recording()
    service = PipelineService(store, artifacts, executor)
    service.allow_code(ADMIN, "p", allow=["tests.pipeline_stages"])
    service.apply(EDITOR, "p", [PipelineSpec.model_validate({"name": "one", "stages": [
        {"name": "first", "kind": S + "emit", "params": {"value": 1}, "version": "v7"}]})])
    run = service.run(EDITOR, "p", "one").run
    assert finish(service, run).state is RunState.SUCCEEDED
    executor.shutdown()
    [task] = seen
    assert task.code_version == code_version(S + "emit", "v7")  # the cache key's
