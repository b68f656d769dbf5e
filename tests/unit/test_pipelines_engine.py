"""The pipeline engine without Ray: stages in threads over a real state store (SQLite and
Redis) and a real artifact store; runs, cache hits, retries, crashes and resume,
approvals, cancel, coalescing and triggers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mlray.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from mlray.identity import Caller, Role
from mlray.pipelines.code_policy import check_pipeline_code, code_allowed
from mlray.pipelines.definitions import PipelineSpec, load_pipelines
from mlray.pipelines.executors import ThreadExecutor
from mlray.pipelines.kinds import KINDS
from mlray.pipelines.service import PipelineService
from mlray.pipelines.state import PipelineRun, RunState, StageState
from mlray.storage import ArtifactStore
from mlray.storage.base import StateStore
from tests.conftest import wait_for

ADMIN = Caller.local_admin("ada")
EDITOR = Caller(user="ed", roles={"p": Role.editor})
VIEWER = Caller(user="vi", roles={"p": Role.viewer})
S = "tests.pipeline_stages:"


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: StateStore, artifacts: ArtifactStore, clock: Clock) -> Any:
    executor = ThreadExecutor()
    service = PipelineService(store, artifacts, executor, clock=clock)
    service.allow_code(ADMIN, "p", allow=["tests.pipeline_stages"])
    yield service
    executor.shutdown()


def diamond(log: Path, b_value: int = 2, **extra: Any) -> PipelineSpec:
    """a, b -> total (a + b) -> report."""
    return PipelineSpec.model_validate({"name": "diamond", "stages": [
        {"name": "a", "kind": S + "emit", "params": {"value": 1, "log": str(log)}},
        {"name": "b", "kind": S + "emit", "params": {"value": b_value, "log": str(log)}},
        {"name": "total", "kind": S + "add", "depends_on": ["a", "b"],
         "params": {"log": str(log)}},
        {"name": "report", "kind": S + "add", "depends_on": ["total"],
         "params": {"log": str(log)}}], **extra})


def finish(service: PipelineService, run: PipelineRun, timeout: float = 30) -> PipelineRun:
    """Tick until the run is no longer active."""
    def done() -> bool:
        service.tick()
        return not service.get_run(ADMIN, run.project, run.run_id).active
    wait_for(done, timeout=timeout)
    return service.get_run(ADMIN, run.project, run.run_id)


def ran(log: Path) -> list[str]:
    return sorted(log.read_text().split()) if log.exists() else []


def test_a_run_passes_outputs_by_reference_and_a_rerun_is_cached(
        service: PipelineService, artifacts: ArtifactStore, tmp_path: Path) -> None:
    log = tmp_path / "log"
    service.apply(ADMIN, "p", [diamond(log)])
    run = finish(service, service.run(ADMIN, "p", "diamond").run)
    assert run.state is RunState.SUCCEEDED, run.message
    assert ran(log) == ["a", "b", "report", "total"]
    total = run.stages["total"].output
    assert total is not None and artifacts.read_bytes(total.uri, total.sha256) == b"3"

    again = finish(service, service.run(ADMIN, "p", "diamond").run)
    assert again.state is RunState.SUCCEEDED
    assert set(again.summary().values()) == {"CACHED"}
    assert "cached" in again.stages["total"].message
    assert ran(log) == ["a", "b", "report", "total"]  # nothing ran a second time

    service.apply(ADMIN, "p", [diamond(log, b_value=5)])
    third = finish(service, service.run(ADMIN, "p", "diamond").run)
    assert third.summary() == {"a": "CACHED", "b": "SUCCEEDED", "total": "SUCCEEDED",
                               "report": "SUCCEEDED"}
    out = third.stages["report"].output
    assert out is not None and artifacts.read_bytes(out.uri, out.sha256) == b"6"


def test_file_outputs_reach_the_next_stage(service: PipelineService, tmp_path: Path) -> None:
    spec = PipelineSpec.model_validate({"name": "files", "stages": [
        {"name": "write", "kind": S + "write_file", "params": {"value": "hello"}},
        {"name": "read", "kind": S + "read_file", "depends_on": ["write"]}]})
    service.apply(ADMIN, "p", [spec])
    run = finish(service, service.run(ADMIN, "p", "files").run)
    assert run.state is RunState.SUCCEEDED, run.message
    assert run.stages["write"].output is not None
    assert run.stages["write"].output.uri.endswith("/data.txt")


def test_a_failed_try_is_retried_after_its_backoff(service: PipelineService, clock: Clock,
                                                  tmp_path: Path) -> None:
    spec = PipelineSpec.model_validate({"name": "retry", "stages": [
        {"name": "f", "kind": S + "flaky", "params": {"marker": str(tmp_path / "m")},
         "retry": {"attempts": 1, "backoff_s": 30}}]})
    service.apply(ADMIN, "p", [spec])
    run = service.run(ADMIN, "p", "retry").run
    wait_for(lambda: (service.tick(), service.get_run(ADMIN, "p", run.run_id).stages["f"]
                      .state is StageState.PENDING)[1])
    stored = service.get_run(ADMIN, "p", run.run_id)
    assert "try 1 failed: RuntimeError: first try fails" in stored.stages["f"].message
    service.tick()
    assert service.get_run(ADMIN, "p", run.run_id).stages["f"].attempt == 1  # backing off
    clock.t += 31
    done = finish(service, run)
    assert done.state is RunState.SUCCEEDED and done.stages["f"].attempt == 2


def test_the_last_failure_fails_the_run_and_blocks_what_follows(
        service: PipelineService, tmp_path: Path) -> None:
    spec = PipelineSpec.model_validate({"name": "fails", "stages": [
        {"name": "f", "kind": S + "flaky", "params": {"marker": str(tmp_path / "m")}},
        {"name": "after", "kind": S + "add", "depends_on": ["f"]}]})
    service.apply(ADMIN, "p", [spec])
    run = finish(service, service.run(ADMIN, "p", "fails").run)
    assert run.state is RunState.FAILED
    assert run.summary() == {"f": "FAILED", "after": "PENDING"}
    assert "f: RuntimeError: first try fails" in run.message
    resumed = finish(service, service.resume(EDITOR, "p", run.run_id))
    assert resumed.summary() == {"f": "SUCCEEDED", "after": "SUCCEEDED"}


def test_a_crash_mid_run_leaves_a_run_that_resumes_from_the_interrupted_stage(
        store: StateStore, artifacts: ArtifactStore, clock: Clock, tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    spec = PipelineSpec.model_validate({"name": "crash", "stages": [
        {"name": "first", "kind": S + "emit", "params": {"value": 1, "log": str(log)}},
        {"name": "slow", "kind": S + "block", "depends_on": ["first"],
         "params": {"gate": str(gate), "log": str(log), "wait_s": 20}},
        {"name": "last", "kind": S + "add", "depends_on": ["slow"]}]})
    before = ThreadExecutor()
    crashed = PipelineService(store, artifacts, before, clock=clock)
    crashed.allow_code(ADMIN, "p", allow=["tests.pipeline_stages"])
    crashed.apply(ADMIN, "p", [spec])
    run = crashed.run(ADMIN, "p", "crash").run
    wait_for(lambda: (crashed.tick(), crashed.get_run(ADMIN, "p", run.run_id)
                      .stages["slow"].state is StageState.RUNNING)[1])
    # The process dies: a new service over the same store knows nothing of its tasks.
    after = ThreadExecutor()
    restarted = PipelineService(store, artifacts, after, clock=clock)
    restarted.tick()
    failed = restarted.get_run(ADMIN, "p", run.run_id)
    assert failed.state is RunState.FAILED
    assert failed.summary() == {"first": "SUCCEEDED", "slow": "FAILED", "last": "PENDING"}
    assert "interrupted" in failed.stages["slow"].message
    gate.write_text("open")
    done = finish(restarted, restarted.resume(ADMIN, "p", run.run_id))
    assert done.summary() == {"first": "SUCCEEDED", "slow": "SUCCEEDED", "last": "SUCCEEDED"}
    assert ran(log).count("first") == 1  # reused, not run again
    before.shutdown()
    after.shutdown()


def approval_spec(on_timeout: str) -> PipelineSpec:
    return PipelineSpec.model_validate({"name": "gated", "stages": [
        {"name": "build", "kind": S + "emit", "params": {"value": 4}},
        {"name": "ok", "kind": "approval", "depends_on": ["build"],
         "approval": {"timeout_s": 600, "on_timeout": on_timeout}},
        {"name": "ship", "kind": S + "add", "depends_on": ["ok", "build"]}]})


def waiting(service: PipelineService, run: PipelineRun) -> PipelineRun:
    wait_for(lambda: (service.tick(), service.get_run(ADMIN, "p", run.run_id).state
                      is RunState.WAITING_APPROVAL)[1])
    return service.get_run(ADMIN, "p", run.run_id)


def test_an_approval_waits_for_an_editor(service: PipelineService,
                                         store: StateStore) -> None:
    service.apply(ADMIN, "p", [approval_spec("fail")])
    run = waiting(service, service.run(ADMIN, "p", "gated").run)
    assert run.stages["ok"].state is StageState.WAITING_APPROVAL
    with pytest.raises(PermissionDenied):
        service.approve(VIEWER, "p", run.run_id, "ok")
    with pytest.raises(InvalidTransition, match="build"):
        service.approve(EDITOR, "p", run.run_id, "build")
    service.approve(EDITOR, "p", run.run_id, "ok", comment="looks fine")
    done = finish(service, run)
    assert done.state is RunState.SUCCEEDED
    assert done.stages["ok"].approved_by == "ed"
    assert "approved by ed: looks fine" in done.stages["ok"].message
    audit = [e for e in store.audit_log(project="p") if e.action == "pipelines.approve"]
    assert [e.user for e in audit] == ["ed"]


@pytest.mark.parametrize(("on_timeout", "state", "ship"), [
    ("fail", RunState.FAILED, "PENDING"), ("skip", RunState.SUCCEEDED, "SKIPPED")])
def test_an_unanswered_approval_times_out_as_configured(
        service: PipelineService, clock: Clock, on_timeout: str, state: RunState,
        ship: str) -> None:
    service.apply(ADMIN, "p", [approval_spec(on_timeout)])
    run = waiting(service, service.run(ADMIN, "p", "gated").run)
    clock.t += 599
    service.tick()
    assert service.get_run(ADMIN, "p", run.run_id).state is RunState.WAITING_APPROVAL
    clock.t += 2
    service.tick()
    done = service.get_run(ADMIN, "p", run.run_id)
    assert done.state is state
    assert done.summary()["ship"] == ship
    assert "no approval within 600s" in done.stages["ok"].message


def test_a_start_while_the_pipeline_runs_is_coalesced(service: PipelineService,
                                                      tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    spec = PipelineSpec.model_validate({"name": "one", "stages": [
        {"name": "slow", "kind": S + "block", "params": {"gate": str(gate), "wait_s": 20}}]})
    service.apply(ADMIN, "p", [spec])
    first = service.run(ADMIN, "p", "one")
    second = service.run(ADMIN, "p", "one")
    assert not first.coalesced and second.coalesced
    assert second.run.run_id == first.run.run_id
    assert service.get_run(ADMIN, "p", first.run.run_id).coalesced == 1
    assert len(service.runs(ADMIN, "p")) == 1
    gate.write_text("open")
    assert finish(service, first.run).state is RunState.SUCCEEDED
    assert not service.run(ADMIN, "p", "one").coalesced  # a new run once it ended


def test_cancel_stops_the_run_and_resume_picks_it_up(service: PipelineService,
                                                     tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    spec = PipelineSpec.model_validate({"name": "c", "stages": [
        {"name": "slow", "kind": S + "block", "params": {"gate": str(gate), "wait_s": 20}},
        {"name": "next", "kind": S + "add", "depends_on": ["slow"]}]})
    service.apply(ADMIN, "p", [spec])
    run = service.run(ADMIN, "p", "c").run
    cancelled = service.cancel(EDITOR, "p", run.run_id)
    assert cancelled.state is RunState.CANCELLED
    assert cancelled.summary() == {"slow": "CANCELLED", "next": "CANCELLED"}
    assert service.get_run(VIEWER, "p", run.run_id).state is RunState.CANCELLED
    with pytest.raises(InvalidTransition):
        service.cancel(EDITOR, "p", run.run_id)
    gate.write_text("open")
    assert finish(service, service.resume(EDITOR, "p", run.run_id)).state \
        is RunState.SUCCEEDED


def test_apply_reports_a_diff_and_refuses_code_it_cannot_load(
        service: PipelineService, store: StateStore, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "log"
    first = service.apply(ADMIN, "p", [diamond(log)])
    assert (first.added, first.applied) == (["diamond"], True)
    same = service.apply(ADMIN, "p", [diamond(log)])
    assert (same.unchanged, same.applied) == (["diamond"], False)
    other = PipelineSpec.model_validate({"name": "other", "stages": [
        {"name": "x", "kind": S + "emit", "params": {"value": 1}}]})
    dry = service.apply(ADMIN, "p", [diamond(log, b_value=3), other], prune=True,
                        dry_run=True)
    assert (dry.added, dry.changed, dry.applied) == (["other"], ["diamond"], False)
    gone = service.apply(EDITOR, "p", [other], prune=True)
    assert gone.removed == ["diamond"]
    assert [p.spec.name for p in service.pipelines(VIEWER, "p")] == ["other"]
    with pytest.raises(NotFound, match="diamond"):
        service.run(ADMIN, "p", "diamond")
    with pytest.raises(PermissionDenied):
        service.apply(VIEWER, "p", [other])
    bad = PipelineSpec.model_validate({"name": "bad", "stages": [
        {"name": "x", "kind": "tests.pipeline_stages:missing"}]})
    with pytest.raises(InvalidInput, match=r"stage 'x'.*cannot be loaded"):
        service.apply(ADMIN, "p", [bad])
    monkeypatch.delitem(KINDS, "abtest")  # a built-in kind without code yet
    unbuilt = PipelineSpec.model_validate({"name": "ab", "stages": [
        {"name": "x", "kind": "abtest"}]})
    with pytest.raises(InvalidInput, match="'abtest' is not implemented"):
        service.apply(ADMIN, "p", [unbuilt])
    actions = [e.action for e in store.audit_log(project="p")]
    assert actions.count("pipelines.apply") == 2


def test_run_parameters_are_typed(service: PipelineService, tmp_path: Path) -> None:
    spec = PipelineSpec.model_validate({
        "name": "typed", "parameters": {"n": {"type": "int", "default": 2}},
        "stages": [{"name": "x", "kind": S + "emit", "params": {"value": "$n"}}]})
    service.apply(ADMIN, "p", [spec])
    with pytest.raises(InvalidInput, match="parameter 'n' must be int"):
        service.run(ADMIN, "p", "typed", {"n": "two"})
    with pytest.raises(InvalidInput, match="no parameter"):
        service.run(ADMIN, "p", "typed", {"m": 1})
    run = finish(service, service.run(ADMIN, "p", "typed", {"n": 9}).run)
    assert run.params == {"n": 9}


def test_another_project_sees_and_touches_nothing(service: PipelineService,
                                                  tmp_path: Path) -> None:
    service.apply(ADMIN, "p", [diamond(tmp_path / "log")])
    run = finish(service, service.run(ADMIN, "p", "diamond").run)
    other = Caller(user="mallory", roles={"q": Role.admin})
    for run_id in (run.run_id, "missing"):  # one answer whether the run exists or not
        for call in (service.get_run, service.resume, service.cancel):
            with pytest.raises(PermissionDenied, match="'p'"):
                call(other, "p", run_id)
        with pytest.raises(PermissionDenied, match="'p'"):
            service.approve(other, "p", run_id, "a")
    with pytest.raises(PermissionDenied):
        service.run(other, "p", "diamond")
    assert service.pipelines(other, "q") == [] and service.runs(other, "q") == []


def test_stage_code_runs_only_from_the_admin_allow_list(
        store: StateStore, artifacts: ArtifactStore, clock: Clock, tmp_path: Path) -> None:
    loaded: list[str] = []
    executor = ThreadExecutor()
    service = PipelineService(store, artifacts, executor, clock=clock,
                              versions=lambda s: loaded.append(s.name) or {})
    spec = diamond(tmp_path / "log")
    with pytest.raises(PermissionDenied, match=r"pipeline 'diamond' stage 'a': code "
                       r"'tests.pipeline_stages:emit' is not allowed.*mlray pipelines code "
                       r"--allow"):
        service.apply(EDITOR, "p", [spec])
    assert loaded == []  # refused before its module was loaded
    builtin = PipelineSpec.model_validate({"name": "gate", "stages": [
        {"name": "ok", "kind": "approval"}]})
    assert service.apply(EDITOR, "p", [builtin]).applied  # built-in kinds need no entry
    for entry in ("tests.pipeline", "tests.pipeline_stages:add", "pipeline_stages"):
        service.allow_code(ADMIN, "p", allow=[entry])  # a raw prefix, another callable
        with pytest.raises(PermissionDenied, match="stage 'a'"):
            service.apply(EDITOR, "p", [spec])
    for caller in (EDITOR, Caller(user="pa", roles={"p": Role.admin})):
        with pytest.raises(PermissionDenied):
            service.allow_code(caller, "p", allow=["tests"])
    with pytest.raises(InvalidInput, match="pipeline code 'tests:': give a module path"):
        service.allow_code(ADMIN, "p", allow=["tests:"])
    assert service.allow_code(ADMIN, "p", allow=["tests"]) == [
        "pipeline_stages", "tests", "tests.pipeline", "tests.pipeline_stages:add"]
    assert service.apply(EDITOR, "p", [spec]).added == ["diamond"]  # a parent module
    assert service.allowed_code(VIEWER, "p")[1] == "tests"
    service.allow_code(ADMIN, "p", revoke=["tests"])
    with pytest.raises(PermissionDenied, match="stage 'a'"):
        service.run(EDITOR, "p", "diamond")  # applied before the revoke: runs no more
    assert service.runs(VIEWER, "p") == []
    audit = [e for e in store.audit_log(project="*") if e.action == "platform.pipeline_code"]
    assert audit[-1].before == {"allowed": ["pipeline_stages", "tests", "tests.pipeline",
                                            "tests.pipeline_stages:add"]}
    executor.shutdown()


def test_the_shipped_pipelines_need_no_allow_list_entry() -> None:
    shipped = Path(__file__).parents[2] / "configs" / "pipelines"
    specs = [s for f in sorted(shipped.glob("*.yaml")) for s in load_pipelines(f)]
    assert any(":" in st.kind for s in specs for st in s.stages)
    check_pipeline_code(specs, allowed=())
    assert not code_allowed("mlray.pipelines.retraining:decide", ())  # not a stage
