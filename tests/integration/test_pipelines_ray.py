"""Pipelines on the shared test Ray: stages are Ray tasks named after their pipeline, run
side by side, are cached, cancelled with ``ray.cancel``; each run is a Ray job named after
its pipeline that ends as the run does (stopping it cancels the run); and a run
interrupted by the ``pipelines`` actor's death resumes from the interrupted stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import mlray
from mlray.config import PlatformConfig
from mlray.pipelines.definitions import PipelineSpec
from mlray.pipelines.state import RunState, StageState
from tests.conftest import OwnRay, wait_for

S = "tests.pipeline_stages:"


def _tasks(name: str) -> list[Any]:
    """The Ray tasks called ``name`` (the state API of the shared test Ray)."""
    import ray
    from ray.util.state import list_tasks

    address = ray.get_runtime_context().gcs_address
    return list_tasks(address=address, filters=[("name", "=", name)],
                      raise_on_missing_output=False)


def _state(client: Any, run_id: str, stage: str) -> StageState:
    return client.pipelines.show(run_id).stages[stage].state


@pytest.fixture
def client(mlray_env: PlatformConfig) -> Any:
    client = mlray.connect(config=mlray_env)
    client.pipelines.allow_code(allow=[S.rstrip(":")])  # an editor's code: admin-allowed
    return client


def _job_status(jobs: Any, submission_id: str) -> str | None:
    """The job's status, or None while it has not been submitted."""
    try:
        return str(jobs.get_job_status(submission_id).value)
    except RuntimeError:  # no such job (yet)
        return None


def test_parallel_stages_named_tasks_cache_and_cancel(client: Any, tmp_path: Path,
                                                      ray_shared: OwnRay) -> None:
    from ray.job_submission import JobSubmissionClient

    gate, log = tmp_path / "gate", tmp_path / "log"
    common = {"gate": str(gate), "log": str(log)}
    spec = PipelineSpec.model_validate({"name": "par", "stages": [
        {"name": "left", "kind": S + "block", "params": common, "num_cpus": 0.1},
        {"name": "right", "kind": S + "block", "params": common,
         "num_cpus": 0.1},
        {"name": "join", "kind": S + "add", "depends_on": ["left", "right"],
         "num_cpus": 0.1}]})
    assert client.pipelines.apply([spec]).added == ["par"]
    run_id = client.pipelines.run("par").run.run_id
    # Both wait on one gate: they can only both be running if they run side by side.
    wait_for(lambda: sorted(log.read_text().split()) == ["left", "right"]
             if log.exists() else False, timeout=120)
    assert {_state(client, run_id, s) for s in ("left", "right")} == {StageState.RUNNING}
    # The stage's Ray task carries its pipeline's name (task events reach the state API
    # asynchronously, a second or more after the task starts).
    wait_for(lambda: bool(_tasks(f"par.left ({run_id})")), timeout=60)
    gate.write_text("open")
    done = client.pipelines.wait(run_id, timeout_s=120)
    assert done.state is RunState.SUCCEEDED, done.message
    assert done.stages["join"].output is not None
    # The run's Ray job, named after its pipeline, followed it and ended as it did.
    jobs = JobSubmissionClient(ray_shared.dashboard_url)
    wait_for(lambda: _job_status(jobs, f"pipeline-par-{run_id}") == "SUCCEEDED", timeout=180)
    info = jobs.get_job_info(f"pipeline-par-{run_id}")
    assert info.metadata["pipeline"] == "par" and info.metadata["run"] == run_id
    assert "join: SUCCEEDED" in jobs.get_job_logs(f"pipeline-par-{run_id}")

    again = client.pipelines.run("par", wait=True).run
    assert again.summary() == {"left": "CACHED", "right": "CACHED", "join": "CACHED"}

    slow = PipelineSpec.model_validate({"name": "slow", "stages": [
        {"name": "wait", "kind": S + "block", "num_cpus": 0.1,
         "params": {"gate": str(tmp_path / "never"), "log": str(log)}}]})
    client.pipelines.apply([slow])
    run_id = client.pipelines.run("slow").run.run_id
    wait_for(lambda: _state(client, run_id, "wait") is StageState.RUNNING, timeout=60)
    wait_for(lambda: any(t.state == "RUNNING" for t in _tasks(f"slow.wait ({run_id})")),
             timeout=60)
    cancelled = client.pipelines.cancel(run_id)
    assert cancelled.state is RunState.CANCELLED
    wait_for(lambda: all(t.state != "RUNNING" for t in _tasks(f"slow.wait ({run_id})")),
             timeout=60)
    wait_for(lambda: _job_status(jobs, f"pipeline-slow-{run_id}") == "FAILED", timeout=180)

    # Stopping a run's job (`ray job stop`, the dashboard) cancels the run.
    run_id = client.pipelines.run("slow").run.run_id
    wait_for(lambda: _job_status(jobs, f"pipeline-slow-{run_id}") == "RUNNING", timeout=180)
    wait_for(lambda: "wait: RUNNING" in jobs.get_job_logs(f"pipeline-slow-{run_id}"),
             timeout=120)
    jobs.stop_job(f"pipeline-slow-{run_id}")
    wait_for(lambda: client.pipelines.show(run_id).state is RunState.CANCELLED, timeout=120)


def test_a_run_survives_the_actor_dying_and_resumes(client: Any, mlray_env: PlatformConfig,
                                                    tmp_path: Path) -> None:
    import ray

    gate, log = tmp_path / "gate", tmp_path / "log"
    spec = PipelineSpec.model_validate({"name": "crash", "stages": [
        {"name": "first", "kind": S + "emit", "num_cpus": 0.1,
         "params": {"value": 5, "log": str(log)}},
        {"name": "slow", "kind": S + "block", "depends_on": ["first"], "num_cpus": 0.1,
         "params": {"gate": str(gate), "log": str(log)}},
        {"name": "last", "kind": S + "add", "depends_on": ["slow"], "num_cpus": 0.1}]})
    client.pipelines.apply([spec])
    run_id = client.pipelines.run("crash").run.run_id
    wait_for(lambda: _state(client, run_id, "slow") is StageState.RUNNING, timeout=120)

    ray.kill(ray.get_actor("pipelines", namespace=mlray_env.namespace), no_restart=False)
    wait_for(lambda: client.pipelines.show(run_id).state is RunState.FAILED, timeout=120)
    failed = client.pipelines.show(run_id)
    assert failed.summary() == {"first": "SUCCEEDED", "slow": "FAILED", "last": "PENDING"}
    assert "interrupted" in failed.stages["slow"].message

    gate.write_text("open")
    client.pipelines.resume(run_id)
    done = client.pipelines.wait(run_id, timeout_s=120)
    assert done.summary() == {"first": "SUCCEEDED", "slow": "SUCCEEDED", "last": "SUCCEEDED"}
    assert log.read_text().split().count("first") == 1  # reused, not run again
