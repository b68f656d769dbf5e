"""ExperimentTracker rules, driven without Ray, on SQLite and Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlray.errors import (
    AlreadyExists,
    Conflict,
    IntegrityError,
    InvalidInput,
    InvalidTransition,
    NotFound,
    PermissionDenied,
)
from mlray.identity import Caller, Role
from mlray.storage import ArtifactStore, StateStore
from mlray.tracking import ExperimentTracker, MetricPoint, RunStatus
from mlray.tracking.types import RunArtifact

ADMIN = Caller.local_admin("alice")
P = "default"


@pytest.fixture
def tracker(store: StateStore, artifacts: ArtifactStore) -> ExperimentTracker:
    return ExperimentTracker(store, artifacts)


def _sweep(tracker: ExperimentTracker) -> list[str]:
    ids = []
    for i, (lr, opt) in enumerate([(0.1, "adam"), (0.01, "sgd"), (0.001, "adam")]):
        run = tracker.start_run(ADMIN, P, "sweep", name=f"r{i}",
                                params={"lr": lr, "optimizer": opt})
        tracker.log_metrics(ADMIN, P, run.run_id, [
            MetricPoint(key="loss", value=1.0 - i * 0.2, step=1),
            MetricPoint(key="acc", value=0.5 + i * 0.1, step=1)])
        if i < 2:
            tracker.end_run(ADMIN, P, run.run_id)
        ids.append(run.run_id)
    return ids


def test_experiments(tracker: ExperimentTracker) -> None:
    exp = tracker.create_experiment(ADMIN, P, "fraud", description="d", tags={"k": "v"})
    assert exp.created_by == "alice"
    with pytest.raises(AlreadyExists):
        tracker.create_experiment(ADMIN, P, "fraud")
    tracker.start_run(ADMIN, P, "auto-created")
    assert [e.name for e in tracker.list_experiments(ADMIN, P)] == ["auto-created", "fraud"]
    with pytest.raises(NotFound):
        tracker.get_experiment(ADMIN, P, "nope")


def test_run_lifecycle(tracker: ExperimentTracker) -> None:
    run = tracker.start_run(ADMIN, P, "e", params={"lr": 0.1})
    assert run.status is RunStatus.RUNNING and run.user == "alice"
    tracker.log_params(ADMIN, P, run.run_id, {"lr": 0.1, "epochs": 3})
    with pytest.raises(Conflict, match="params cannot change"):
        tracker.log_params(ADMIN, P, run.run_id, {"lr": 0.2})
    ended = tracker.end_run(ADMIN, P, run.run_id, RunStatus.FAILED, error="boom")
    assert ended.status is RunStatus.FAILED and ended.error == "boom" and ended.end_time
    with pytest.raises(InvalidTransition, match="FAILED"):
        tracker.log_params(ADMIN, P, run.run_id, {"late": 1})
    late = tracker.log_metric(ADMIN, P, run.run_id, "test_auc", 0.9)
    assert late.metrics["test_auc"].value == 0.9, "evaluations may land after the end"
    with pytest.raises(InvalidTransition):
        tracker.end_run(ADMIN, P, run.run_id)
    tracker.set_tags(ADMIN, P, run.run_id, {"note": "late tag is fine"})
    with pytest.raises(InvalidTransition, match="RUNNING"):
        tracker.end_run(ADMIN, P, tracker.start_run(ADMIN, P, "e").run_id, RunStatus.RUNNING)


def test_metrics_history_and_latest(tracker: ExperimentTracker) -> None:
    run = tracker.start_run(ADMIN, P, "e")
    tracker.log_metrics(ADMIN, P, run.run_id, [
        MetricPoint(key="loss", value=0.9, step=0, timestamp=10.0),
        MetricPoint(key="loss", value=0.5, step=2, timestamp=12.0),
        MetricPoint(key="acc", value=0.7, step=2)])
    after = tracker.log_metric(ADMIN, P, run.run_id, "loss", 0.7, step=1, timestamp=11.0)
    assert after.metrics["loss"].value == 0.5 and after.metrics["loss"].step == 2
    history = tracker.metric_history(ADMIN, P, run.run_id, "loss")
    assert [(p.step, p.value) for p in history] == [(0, 0.9), (1, 0.7), (2, 0.5)]
    with pytest.raises(InvalidInput, match="points"):
        tracker.log_metrics(ADMIN, P, run.run_id, [])
    with pytest.raises(InvalidInput, match="value"):
        tracker.log_metric(ADMIN, P, run.run_id, "loss", float("inf"))
    with pytest.raises(InvalidInput, match="step"):
        tracker.log_metric(ADMIN, P, run.run_id, "loss", 1.0, step=-1)


def test_state_reloads_from_the_store(tracker: ExperimentTracker, store: StateStore) -> None:
    ids = _sweep(tracker)
    again = ExperimentTracker(store)
    assert again.get_run(ADMIN, P, ids[0]).params == {"lr": 0.1, "optimizer": "adam"}
    assert again.search_runs(ADMIN, P).total == 3
    again.log_metric(ADMIN, P, ids[2], "loss", 0.1, step=5)
    assert len(again.metric_history(ADMIN, P, ids[2], "loss")) == 2


def test_artifacts_are_checked(tracker: ExperimentTracker, artifacts: ArtifactStore,
                               tmp_path: Path) -> None:
    run = tracker.start_run(ADMIN, P, "e")
    src = tmp_path / "plot.png"
    src.write_bytes(b"png")
    ref = artifacts.put(src)
    art = RunArtifact(path="plots/loss.png", uri=ref.uri, sha256=ref.sha256, size=ref.size)
    assert tracker.log_artifact(ADMIN, P, run.run_id, art).artifacts == [art]
    with pytest.raises(IntegrityError):
        tracker.log_artifact(ADMIN, P, run.run_id, art.model_copy(update={"sha256": "2" * 64}))


def test_search_filter_order_and_paging(tracker: ExperimentTracker) -> None:
    ids = _sweep(tracker)
    tracker.start_run(ADMIN, P, "other", params={"lr": 0.1})
    page = tracker.search_runs(ADMIN, P, experiments=["sweep"], filter="params.optimizer = adam",
                               order_by=["metrics.loss ASC"])
    assert [r.run_id for r in page.runs] == [ids[2], ids[0]]
    assert page.total == 2 and page.next_offset is None
    hits = tracker.search_runs(ADMIN, P, filter="metrics.loss < 0.9 and status = 'FINISHED'")
    assert [r.run_id for r in hits.runs] == [ids[1]]
    assert tracker.search_runs(ADMIN, P, filter="params.lr >= 0.01").total == 3
    first = tracker.search_runs(ADMIN, P, order_by=["params.lr DESC", "name"], limit=2)
    assert first.total == 4 and first.next_offset == 2
    rest = tracker.search_runs(ADMIN, P, order_by=["params.lr DESC", "name"], limit=2,
                               offset=first.next_offset)
    assert [r.params["lr"] for r in first.runs + rest.runs] == [0.1, 0.1, 0.01, 0.001]
    assert rest.next_offset is None
    for bad in ("loss < 1", "metrics.loss ~ 1", "metrics.loss <"):
        with pytest.raises(InvalidInput, match="filter"):
            tracker.search_runs(ADMIN, P, filter=bad)
    with pytest.raises(InvalidInput, match="order"):
        tracker.search_runs(ADMIN, P, order_by=["metrics.loss sideways"])
    with pytest.raises(InvalidInput, match="limit"):
        tracker.search_runs(ADMIN, P, limit=0)


def test_compare(tracker: ExperimentTracker) -> None:
    ids = _sweep(tracker)
    cmp = tracker.compare_runs(ADMIN, P, ids[:2])
    assert cmp.params == {"lr": [0.1, 0.01], "optimizer": ["adam", "sgd"]}
    assert cmp.metrics["loss"] == [1.0, 0.8]
    assert cmp.differing_params == ["lr", "optimizer"]
    with pytest.raises(InvalidInput, match="two"):
        tracker.compare_runs(ADMIN, P, ids[:1])
    with pytest.raises(NotFound):
        tracker.compare_runs(ADMIN, P, [ids[0], "nope"])


def test_runs_are_isolated_by_project_and_role(tracker: ExperimentTracker) -> None:
    run = tracker.start_run(ADMIN, P, "e")
    with pytest.raises(NotFound):
        tracker.get_run(ADMIN, "other", run.run_id)
    viewer = Caller(user="v", roles={P: Role.viewer})
    assert tracker.get_run(viewer, P, run.run_id).run_id == run.run_id
    with pytest.raises(PermissionDenied):
        tracker.log_metric(viewer, P, run.run_id, "loss", 1.0)


def test_two_trackers_on_one_store_both_write(tracker: ExperimentTracker,
                                              store: StateStore) -> None:
    run = tracker.start_run(ADMIN, P, "e")
    other = ExperimentTracker(store)
    other.log_metric(ADMIN, P, run.run_id, "loss", 0.5, step=1)
    tracker.log_metric(ADMIN, P, run.run_id, "loss", 0.4, step=2)
    other.set_tags(ADMIN, P, run.run_id, {"k": "v"})
    final = tracker.end_run(ADMIN, P, run.run_id)
    assert final.tags == {"k": "v"} and final.metrics["loss"].value == 0.4


def test_run_ids_resolve_from_a_unique_prefix(tracker: ExperimentTracker) -> None:
    run = tracker.start_run(ADMIN, P, "e")
    assert tracker.get_run(ADMIN, P, run.run_id[:12]).run_id == run.run_id
    with pytest.raises(NotFound):
        tracker.get_run(ADMIN, P, "00000000")
