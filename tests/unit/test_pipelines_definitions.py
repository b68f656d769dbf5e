"""Pipeline definitions (DAG checks, YAML), the cron parser, cache keys and triggers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mlray.errors import ConfigError
from mlray.identity import Caller, Role
from mlray.pipelines.cache import cache_key, code_version
from mlray.pipelines.cron import CronSchedule
from mlray.pipelines.definitions import (
    NewData,
    NewFeedback,
    PipelineSpec,
    Schedule,
    load_pipelines,
)
from mlray.pipelines.executors import ThreadExecutor
from mlray.pipelines.service import PipelineService
from mlray.pipelines.triggers import due, feedback_rows
from mlray.storage import ArtifactStore
from mlray.storage.artifacts import ArtifactRef
from mlray.storage.base import StateStore

S = "tests.pipeline_stages:"


def spec(*stages: dict[str, Any], **extra: Any) -> PipelineSpec:
    return PipelineSpec.model_validate({"name": "p", "stages": list(stages), **extra})


def one_line(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    message = str(exc.value.errors()[0]["msg"])
    assert "\n" not in message
    return message


def test_cycles_unknown_and_duplicate_stages_are_refused_in_one_line() -> None:
    with pytest.raises(ValidationError) as cycle:
        spec({"name": "a", "kind": S + "emit", "depends_on": ["c"]},
             {"name": "b", "kind": S + "emit", "depends_on": ["a"]},
             {"name": "c", "kind": S + "emit", "depends_on": ["b"]})
    assert one_line(cycle).endswith("cycle in depends_on: a -> c -> b -> a")
    with pytest.raises(ValidationError) as unknown:
        spec({"name": "a", "kind": S + "emit", "depends_on": ["x", "y"]})
    assert one_line(unknown).endswith("stage 'a' depends on unknown stage(s): x, y")
    with pytest.raises(ValidationError) as dupe:
        spec({"name": "a", "kind": S + "emit"}, {"name": "a", "kind": S + "add"})
    assert one_line(dupe).endswith("duplicate stage name(s): a")
    with pytest.raises(ValidationError) as param:
        spec({"name": "a", "kind": S + "emit", "params": {"value": "$nope"}})
    assert "unknown parameter 'nope'" in one_line(param)
    with pytest.raises(ValidationError, match="neither one of"):
        spec({"name": "a", "kind": "trainn"})
    with pytest.raises(ValidationError, match="need kind: approval"):
        spec({"name": "a", "kind": S + "emit", "approval": {"timeout_s": 5}})


def test_yaml_files_load_and_errors_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "pipelines:\n- name: nightly\n  parameters: {n: {type: int, default: 3}}\n"
        "  triggers: [{type: schedule, cron: '0 2 * * *'}, {type: alert, rule: drift}]\n"
        "  stages:\n  - {name: a, kind: 'tests.pipeline_stages:emit', params: {value: $n},"
        " num_cpus: 0.5, retry: {attempts: 2}, timeout_s: 60}\n")
    [loaded] = load_pipelines(tmp_path)
    assert loaded.stages[0].num_cpus == 0.5 and loaded.stages[0].retry.attempts == 2
    assert [t.type for t in loaded.triggers] == ["schedule", "alert"]
    (tmp_path / "b.yaml").write_text("pipelines:\n- name: x\n  stages:\n"
                                     "  - {name: a, kind: emit}\n")
    with pytest.raises(ConfigError, match=r"b\.yaml"):
        load_pipelines(tmp_path)


def test_the_shipped_example_loads() -> None:
    [example] = [p for p in load_pipelines(Path("configs/pipelines")) if p.name == "example"]
    config = Path(example.stage("train").params["config"])
    assert config.is_absolute() and config.exists()  # taken against the YAML's directory
    assert example.stage("promote").params["model"] == "$model"


@pytest.mark.parametrize(("cron", "after", "expected"), [
    ("*/15 * * * *", "2026-01-01T10:07", "2026-01-01T10:15"),
    ("0 2 * * *", "2026-01-01T02:00", "2026-01-02T02:00"),
    ("30 9 * * 1-5", "2026-01-02T10:00", "2026-01-05T09:30"),  # Friday -> Monday
    ("0 0 1 */3 *", "2026-02-10T00:00", "2026-04-01T00:00"),
    ("0 12 13 * 5", "2026-01-01T00:00", "2026-01-02T12:00"),  # the 13th or a Friday
])
def test_cron_finds_the_next_time(cron: str, after: str, expected: str) -> None:
    t = dt.datetime.fromisoformat(after).replace(tzinfo=dt.UTC).timestamp()
    got = dt.datetime.fromtimestamp(CronSchedule.parse(cron).next_after(t), dt.UTC)
    assert got.strftime("%Y-%m-%dT%H:%M") == expected


@pytest.mark.parametrize("bad", ["* * * *", "60 * * * *", "* 24 * * *", "*/0 * * * *"])
def test_cron_refuses_bad_expressions(bad: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        CronSchedule.parse(bad)


def test_the_cache_key_follows_code_params_and_inputs() -> None:
    ref = ArtifactRef(uri="file:///x", sha256="a" * 64, size=1)
    other = ArtifactRef(uri="file:///y", sha256="b" * 64, size=1)
    version = code_version(S + "emit")
    assert version.startswith("src:") and version != code_version(S + "add")
    assert code_version(S + "emit", "v2") == "v:v2"
    base = cache_key(S + "emit", version, {"value": 1}, {"up": ref})
    assert base == cache_key(S + "emit", version, {"value": 1}, {"up": ref.model_copy(
        update={"uri": "file:///moved"})})  # content, not location
    assert base != cache_key(S + "emit", version, {"value": 2}, {"up": ref})
    assert base != cache_key(S + "emit", version, {"value": 1}, {"up": other})
    assert base != cache_key(S + "emit", "v:2", {"value": 1}, {"up": ref})


def test_schedule_new_data_and_feedback_triggers(tmp_path: Path) -> None:
    noon = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC).timestamp()
    hourly = Schedule(cron="0 * * * *")
    fires, state = due(hourly, None, noon)
    assert not fires and state["next"] == noon + 3600
    assert due(hourly, state, noon + 3599)[0] is False
    assert due(hourly, state, noon + 3600) == (True, {"next": noon + 7200})

    source = tmp_path / "source"
    (source / "date=2026-01-01").mkdir(parents=True)
    new_data = NewData(path=str(source))
    fires, state = due(new_data, None, noon)
    assert not fires
    assert due(new_data, state, noon)[0] is False
    (source / "date=2026-01-02").mkdir()
    fires, state = due(new_data, state, noon)
    assert fires and state["new"] == ["date=2026-01-02"]

    rows = {"n": 10}
    feedback = NewFeedback(rows=5)
    fires, state = due(feedback, None, noon, feedback=lambda: rows["n"])
    assert not fires
    rows["n"] = 14
    assert due(feedback, state, noon, feedback=lambda: rows["n"])[0] is False
    rows["n"] = 15
    assert due(feedback, state, noon, feedback=lambda: rows["n"]) == (True, {"rows": 15})


def test_feedback_rows_are_counted_from_the_feedback_log(tmp_path: Path) -> None:
    from mlray.monitoring.prediction_log import FeedbackLog

    root = str(tmp_path / "offline")
    assert feedback_rows(root, "p") == 0
    FeedbackLog(root, "p").write([("r1", 1.0, 0), ("r2", 0.0, 0)])
    FeedbackLog(root, "p").write([("r3", 1.0, 0)])
    assert feedback_rows(root, "p") == 3
    assert feedback_rows(root, "q") == 0


def test_triggers_start_runs_as_the_applier_and_coalesce(
        store: StateStore, artifacts: ArtifactStore, tmp_path: Path) -> None:
    clock = {"t": dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC).timestamp()}
    source = tmp_path / "source"
    source.mkdir()
    executor = ThreadExecutor()
    service = PipelineService(store, artifacts, executor, clock=lambda: clock["t"])
    service.allow_code(Caller.local_admin(), "p", allow=["tests.pipeline_stages"])
    gate = tmp_path / "gate"
    editor = Caller(user="ed", roles={"p": Role.editor})
    pipeline = spec({"name": "slow", "kind": S + "block", "params": {"gate": str(gate)}},
                    triggers=[{"type": "new_data", "path": str(source)},
                              {"type": "schedule", "cron": "0 * * * *"},
                              {"type": "alert", "rule": "drift-high"}])
    service.apply(editor, "p", [pipeline])
    assert service.check_triggers() == []  # the first look only records where things are
    (source / "part-1").mkdir()
    [run_id] = service.check_triggers()
    run = service.get_run(editor, "p", run_id)
    assert (run.trigger, run.created_by) == ("new_data", "ed")
    clock["t"] += 3600
    assert service.check_triggers() == [run_id]  # the schedule fires into the active run
    assert service.alert_fired("p", "drift-high") == [run_id]
    assert service.alert_fired("p", "other-rule") == []
    assert service.alert_fired("q", "drift-high") == []
    assert service.get_run(editor, "p", run_id).coalesced == 2
    assert len(service.runs(editor, "p")) == 1
    gate.write_text("open")
    executor.shutdown()
