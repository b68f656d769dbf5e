"""Pipeline robustness (#14): what a cancelled stage started is undone and what an
interrupted one started is adopted, coalescing and trigger state live in the store (saved
after the run they fire), ``~`` paths are expanded where used, and the stage cache sees
the data behind path parameters. Stages run in threads over real stores."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mlray.abtest.experiment import Experiment, ExperimentSpec
from mlray.pipelines import kinds
from mlray.pipelines.definitions import NewData, PipelineSpec
from mlray.pipelines.executors import ThreadExecutor
from mlray.pipelines.service import TRIGGERS, PipelineService
from mlray.pipelines.state import PipelineRun, RunState, StageState
from mlray.pipelines.triggers import due
from mlray.serving.rollout_model import Rollout
from mlray.storage import ArtifactStore
from mlray.storage.base import StateStore
from tests.conftest import wait_for
from tests.unit.test_pipelines_engine import ADMIN, EDITOR, Clock, S


@pytest.fixture
def clock() -> Clock:
    return Clock()

@pytest.fixture
def executor() -> Any:
    pool = ThreadExecutor()
    yield pool
    pool.shutdown()


def service_on(store: StateStore, artifacts: ArtifactStore, executor: ThreadExecutor,
               clock: Clock, **kwargs: Any) -> PipelineService:
    service = PipelineService(store, artifacts, executor, clock=clock, **kwargs)
    service.allow_code(ADMIN, "p", allow=["tests.pipeline_stages"])
    return service


@pytest.fixture
def service(store: StateStore, artifacts: ArtifactStore, executor: ThreadExecutor,
            clock: Clock) -> PipelineService:
    return service_on(store, artifacts, executor, clock)


def finish(service: PipelineService, run: PipelineRun) -> PipelineRun:
    def done() -> bool:
        service.tick()
        return not service.get_run(ADMIN, run.project, run.run_id).active
    wait_for(done, timeout=30)
    return service.get_run(ADMIN, run.project, run.run_id)


def running(service: PipelineService, run: PipelineRun, stage: str) -> None:
    wait_for(lambda: (service.tick(), service.get_run(ADMIN, "p", run.run_id)
                      .stages[stage].state is StageState.RUNNING)[1], timeout=30)


def test_cancel_undoes_what_the_stage_started_and_resume_tells_it_its_first_start(
        service: PipelineService, clock: Clock, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(kinds.UNDO, S + "claim", S + "release")
    marks, undone, gate = tmp_path / "marks", tmp_path / "undone", tmp_path / "gate"
    spec = PipelineSpec.model_validate({"name": "world", "stages": [
        {"name": "start", "kind": S + "claim", "params": {
            "marks": str(marks), "undone": str(undone), "gate": str(gate), "wait_s": 20}}]})
    service.apply(ADMIN, "p", [spec])
    run = service.run(ADMIN, "p", "world").run
    running(service, run, "start")
    first = clock.t
    clock.t += 100
    service.cancel(EDITOR, "p", run.run_id)
    wait_for(lambda: undone.exists() and bool(undone.read_text()), timeout=30)  # written
    assert undone.read_text() == f"{first} {run.run_id}"  # what this run's stage started
    clock.t += 100
    gate.write_text("open")
    done = finish(service, service.resume(EDITOR, "p", run.run_id))
    assert done.state is RunState.SUCCEEDED
    wait_for(lambda: len(marks.read_text().split()) == 2, timeout=30)
    assert marks.read_text().split() == [str(first), str(first)]  # the resumed try adopts
    assert done.stages["start"].first_started_at == first


def test_the_abtest_and_deploy_kinds_adopt_only_what_their_run_started() -> None:
    from mlray.pipelines.abtest_stage import own_experiment
    from mlray.pipelines.kinds import own_rollout

    def exp(id_: str, arms: dict[int, float], at: float, status: str = "running"
            ) -> Experiment:
        return Experiment(id=id_, project="p", created_by="ed", created_at=at, updated_at=at,
                          status=status,  # type: ignore[arg-type]
                          spec=ExperimentSpec(model="fraud", arms=arms, min_effect=0.05))
    since = 5_000.0
    found = [exp("old", {1: 50, 2: 50}, 100.0), exp("other", {1: 50, 3: 50}, 6_000.0),
             exp("stopped", {1: 50, 2: 50}, 5_500.0, "stopped"),
             exp("mine", {1: 50, 2: 50}, 6_000.0)]
    assert own_experiment(found, "fraud", 2, None, since).id == "mine"
    assert own_experiment(found, "fraud", 2, 1, since).id == "mine"
    assert own_experiment(found, "fraud", 2, 4, since) is None  # another control
    assert own_experiment(found, "fraud", 2, None, None) is None  # never started before
    assert own_experiment(found[:3], "fraud", 2, None, since) is None  # a cancelled one
    done = [*found[:3], exp("mine", {1: 50, 2: 50}, 6_000.0, "promoted")]
    assert own_experiment(done, "fraud", 2, None, since).id == "mine"
    assert own_experiment(done, "fraud", 2, None, since, running_only=True) is None

    def rollout(id_: str, version: int, at: float, status: str = "running") -> Rollout:
        return Rollout(id=id_, project="p", model="fraud", version=version,
                       strategy="shadow",  # type: ignore[arg-type]
                       status=status,  # type: ignore[arg-type]
                       created_by="ed", created_at=at, updated_at=at)
    rollouts = [rollout("old", 2, 100.0), rollout("v3", 3, 6_000.0),
                rollout("back", 2, 5_200.0, "rolled_back"), rollout("mine", 2, 6_000.0)]
    assert own_rollout(rollouts, "fraud", 2, "shadow", since).id == "mine"
    assert own_rollout(rollouts, "fraud", 2, "canary", since) is None
    assert own_rollout(rollouts[:3], "fraud", 2, "shadow", since) is None
    assert own_rollout(rollouts, "fraud", 2, "shadow", None) is None


def approval(name: str = "gated", **extra: Any) -> PipelineSpec:
    return PipelineSpec.model_validate({"name": name, "stages": [
        {"name": "ok", "kind": "approval"}], **extra})


def test_a_start_is_coalesced_into_the_run_in_the_store_not_just_in_memory(
        store: StateStore, artifacts: ArtifactStore, executor: ThreadExecutor,
        clock: Clock) -> None:
    other = service_on(store, artifacts, executor, clock)  # e.g. a CLI process
    actor = service_on(store, artifacts, executor, clock)
    actor.apply(ADMIN, "p", [approval()])
    run = actor.run(ADMIN, "p", "gated").run
    assert actor.get_run(ADMIN, "p", run.run_id).state is RunState.WAITING_APPROVAL
    start = other.run(EDITOR, "p", "gated")
    assert start.coalesced and start.run.run_id == run.run_id
    assert len(other.runs(ADMIN, "p")) == 1
    restarted = service_on(store, artifacts, executor, clock)
    assert restarted.get_run(ADMIN, "p", run.run_id).coalesced == 1
    assert restarted.run(EDITOR, "p", "gated").run.coalesced == 2


def test_a_trigger_state_is_saved_only_after_the_run_it_fires(
        store: StateStore, artifacts: ArtifactStore, executor: ThreadExecutor,
        clock: Clock) -> None:
    down = [True]

    def versions(spec: PipelineSpec) -> dict[str, str]:
        if down[0]:  # the process dies as the run is created
            raise RuntimeError("worker died")
        return {}
    service = service_on(store, artifacts, executor, clock, versions=versions)
    down[0] = False
    service.apply(ADMIN, "p", [approval(triggers=[{"type": "schedule",
                                                   "cron": "*/5 * * * *"}])])
    assert service.check_triggers() == []  # the first look only records the next time
    before = store.get(TRIGGERS, "p/gated/0")
    assert before is not None
    clock.t = before.data["next"] + 1
    down[0] = True
    with pytest.raises(RuntimeError):
        service.check_triggers()
    assert store.get(TRIGGERS, "p/gated/0").data == before.data  # the firing is not lost
    down[0] = False
    [run_id] = service.check_triggers()
    assert service.get_run(ADMIN, "p", run_id).trigger == "schedule"
    assert store.get(TRIGGERS, "p/gated/0").data["next"] > clock.t
    assert service.check_triggers() == []


def test_home_paths_are_expanded_where_used_not_in_the_stored_run(
        service: PipelineService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    spec = PipelineSpec.model_validate({
        "name": "home", "parameters": {"data": {"default": "~/data/in.parquet"}},
        "stages": [{"name": "see", "kind": S + "echo",
                    "params": {"data": "$data", "note": "~/notes"}}]})
    service.apply(ADMIN, "p", [spec])
    run = finish(service, service.run(ADMIN, "p", "home").run)
    assert run.state is RunState.SUCCEEDED, run.message
    out = run.stages["see"].output
    assert out is not None
    seen = service.engine.cache._artifacts.read_bytes(out.uri, out.sha256).decode()
    assert str(tmp_path / "data" / "in.parquet") in seen and "~" not in seen
    assert str(tmp_path / "notes") in seen
    assert run.params == {"data": "~/data/in.parquet"}  # the record keeps what was given
    stored = service.pipeline(ADMIN, "p", "home")
    assert stored.parameters["data"].default == "~/data/in.parquet"


def test_a_new_data_trigger_reads_a_home_path(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    landing = tmp_path / "landing"
    landing.mkdir()
    trigger = NewData(path="~/landing")
    (landing / "day=0").mkdir()
    fires, state = due(trigger, None, 0.0)
    assert not fires and state == {"seen": ["day=0"]}
    (landing / "day=1").mkdir()
    assert due(trigger, state, 1.0) == (True, {"seen": ["day=0", "day=1"], "new": ["day=1"]})


def test_the_cache_key_folds_in_the_data_behind_path_params(
        service: PipelineService, tmp_path: Path) -> None:
    log, data, folder = tmp_path / "log", tmp_path / "rows.csv", tmp_path / "parts"
    data.write_text("a,b\n1,2\n")
    folder.mkdir()
    (folder / "part-0").write_text("x")
    spec = PipelineSpec.model_validate({"name": "data", "stages": [
        {"name": "file", "kind": S + "echo", "params": {"data": str(data), "log": str(log)}},
        {"name": "dir", "kind": S + "echo", "params": {"path": str(folder),
                                                       "log": str(log)}}]})
    service.apply(ADMIN, "p", [spec])

    def run() -> dict[str, str]:
        done = finish(service, service.run(ADMIN, "p", "data").run)
        assert done.state is RunState.SUCCEEDED, done.message
        return done.summary()
    assert run() == {"file": "SUCCEEDED", "dir": "SUCCEEDED"}
    assert run() == {"file": "CACHED", "dir": "CACHED"}  # the log it appends to is no data
    data.write_text("a,b\n1,3\n")
    assert run() == {"file": "SUCCEEDED", "dir": "CACHED"}
    (folder / "part-1").write_text("y")
    assert run() == {"file": "CACHED", "dir": "SUCCEEDED"}
    stat = (folder / "part-0").stat()
    (folder / "part-0").write_text("z")  # same size: the mtime tells
    os.utime(folder / "part-0", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert run() == {"file": "CACHED", "dir": "SUCCEEDED"}
    assert sorted(log.read_text().split()) == ["dir"] * 3 + ["file"] * 2
