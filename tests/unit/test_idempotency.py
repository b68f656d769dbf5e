"""Idempotent creates, without Ray, on SQLite and Redis: a retry whose first answer was
lost gets that answer back and never applies twice."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mlray.errors import InvalidInput
from mlray.identity import Caller
from mlray.registry import ModelRegistry, ModelSpec
from mlray.storage import ArtifactStore, StateStore
from mlray.storage.idempotency import new_key
from mlray.tracking import ExperimentTracker
from mlray.tracking.jobs import JobBook
from tests.unit.helpers import artifact_spec

ADMIN = Caller.local_admin("alice")
P = "default"


@pytest.fixture
def registry(store: StateStore, artifacts: ArtifactStore) -> ModelRegistry:
    registry = ModelRegistry(store, artifacts)
    registry.create_model(ADMIN, P, ModelSpec(name="fraud"))
    return registry


def test_same_key_twice_gives_one_version_and_the_first_answer(
        registry: ModelRegistry, artifacts: ArtifactStore, tmp_path: Path) -> None:
    spec = artifact_spec(artifacts, tmp_path, b"w1", metrics={"auc": 0.9})
    key = new_key()
    first = registry.create_version(ADMIN, P, "fraud", spec, idempotency_key=key)
    again = registry.create_version(ADMIN, P, "fraud", spec, idempotency_key=key)
    assert again == first
    assert [v.version for v in registry.list_versions(ADMIN, P, "fraud")] == [1]
    created = [e for e in registry.audit_log(ADMIN, P) if e.action == "version.create"]
    assert len(created) == 1


def test_a_different_key_adds_a_new_version(registry: ModelRegistry, artifacts: ArtifactStore,
                                            tmp_path: Path) -> None:
    spec = artifact_spec(artifacts, tmp_path, b"w1")
    one = registry.create_version(ADMIN, P, "fraud", spec, idempotency_key=new_key())
    two = registry.create_version(ADMIN, P, "fraud", spec, idempotency_key=new_key())
    assert (one.version, two.version) == (1, 2)


def test_a_restarted_service_answers_a_retry_from_the_store(
        store: StateStore, registry: ModelRegistry, artifacts: ArtifactStore,
        tmp_path: Path) -> None:
    spec = artifact_spec(artifacts, tmp_path, b"w1")
    key = new_key()
    first = registry.create_version(ADMIN, P, "fraud", spec, idempotency_key=key)
    restarted = ModelRegistry(store, artifacts)  # a new actor process over the same state
    assert restarted.create_version(ADMIN, P, "fraud", spec, idempotency_key=key) == first
    assert len(restarted.list_versions(ADMIN, P, "fraud")) == 1


def test_racing_attempts_with_one_key_apply_once(
        store: StateStore, registry: ModelRegistry, artifacts: ArtifactStore,
        tmp_path: Path) -> None:
    spec = artifact_spec(artifacts, tmp_path, b"w1")
    key = new_key()
    answers: list[int] = []
    lock = threading.Lock()

    def attempt() -> None:
        got = ModelRegistry(store, artifacts).create_version(ADMIN, P, "fraud", spec,
                                                             idempotency_key=key)
        with lock:
            answers.append(got.version)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [1] * 6
    assert len(registry.list_versions(ADMIN, P, "fraud")) == 1


def test_a_key_reused_for_another_request_is_refused(
        registry: ModelRegistry, artifacts: ArtifactStore, tmp_path: Path) -> None:
    key = new_key()
    registry.create_version(ADMIN, P, "fraud", artifact_spec(artifacts, tmp_path, b"w1"),
                            idempotency_key=key)
    other = artifact_spec(artifacts, tmp_path, b"w2")
    with pytest.raises(InvalidInput, match="already used") as err:
        registry.create_version(ADMIN, P, "fraud", other, idempotency_key=key)
    assert err.value.field == "idempotency_key"
    with pytest.raises(InvalidInput) as bad:
        registry.create_version(ADMIN, P, "fraud", other, idempotency_key="short")
    assert bad.value.field == "idempotency_key"


def test_create_model_retried_returns_the_model_not_already_exists(
        registry: ModelRegistry) -> None:
    key = new_key()
    first = registry.create_model(ADMIN, P, ModelSpec(name="churn"), idempotency_key=key)
    assert registry.create_model(ADMIN, P, ModelSpec(name="churn"),
                                 idempotency_key=key) == first


def test_runs_experiments_and_jobs_are_created_once_per_key(store: StateStore) -> None:
    tracker = ExperimentTracker(store)
    key = new_key()
    exp = tracker.create_experiment(ADMIN, P, "e", idempotency_key=key)
    assert tracker.create_experiment(ADMIN, P, "e", idempotency_key=key) == exp
    key = new_key()
    run = tracker.start_run(ADMIN, P, "e", params={"lr": 0.1}, idempotency_key=key)
    assert ExperimentTracker(store).start_run(ADMIN, P, "e", params={"lr": 0.1},
                                              idempotency_key=key) == run
    assert tracker.search_runs(ADMIN, P).total == 1
    jobs = JobBook(store)
    key = new_key()
    job = jobs.create_job(ADMIN, P, "train", "fraud", {"epochs": 2}, idempotency_key=key)
    assert jobs.create_job(ADMIN, P, "train", "fraud", {"epochs": 2},
                           idempotency_key=key) == job
    assert [j.job_id for j in jobs.list_jobs(ADMIN, P)] == [job.job_id]
