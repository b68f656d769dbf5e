"""ModelRegistry rules, driven without Ray, on SQLite and Redis."""

from __future__ import annotations

import threading
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
from mlray.registry import ModelRegistry, ModelSpec, Stage
from mlray.registry.types import ALLOWED_TRANSITIONS
from mlray.storage import ArtifactStore, StateStore, open_state_store
from tests.unit.helpers import artifact_spec

ADMIN = Caller.local_admin("alice")
P = "default"


@pytest.fixture
def registry(store: StateStore, artifacts: ArtifactStore) -> ModelRegistry:
    return ModelRegistry(store, artifacts)


@pytest.fixture
def fraud(registry: ModelRegistry, artifacts: ArtifactStore, tmp_path: Path) -> ModelRegistry:
    registry.create_model(ADMIN, P, ModelSpec(name="fraud", tags={"team": "risk"}))
    for i in range(3):
        registry.create_version(ADMIN, P, "fraud", artifact_spec(
            artifacts, tmp_path, f"w{i}".encode(), metrics={"auc": 0.80 + i / 100},
            params={"lr": 0.1 * (i + 1)}, tags={"arm": "a" if i % 2 else "b"}))
    return registry


def test_create_and_get_model(registry: ModelRegistry) -> None:
    spec = ModelSpec(name="fraud", description="d", owner="risk", framework="torch",
                     input_schema=[{"name": "x", "dtype": "float32", "shape": [-1, 8]}],
                     resources={"num_cpus": 2})
    created = registry.create_model(ADMIN, P, spec)
    assert created.created_by == "alice" and created.latest_version == 0
    got = registry.get_model(ADMIN, P, "fraud")
    assert got.input_schema[0].shape == [-1, 8] and got.resources.num_cpus == 2
    with pytest.raises(AlreadyExists, match="already exists"):
        registry.create_model(ADMIN, P, ModelSpec(name="fraud"))
    other = registry.create_model(ADMIN, "other", ModelSpec(name="fraud"))
    assert other.project == "other"


@pytest.mark.parametrize("name", ["", "a--b", "-x", "a b", "x" * 200, "a/b"])
def test_invalid_names_are_refused(registry: ModelRegistry, name: str) -> None:
    with pytest.raises(InvalidInput, match="name"):
        registry.create_model(ADMIN, P, {"name": name})


def test_bad_arguments_name_the_field(registry: ModelRegistry) -> None:
    with pytest.raises(InvalidInput) as err:
        registry.create_model(ADMIN, P, {"name": "m", "input_schema": [{"name": "x",
                                                                         "dtype": "complex"}]})
    assert err.value.field == "spec.input_schema.0.dtype"
    with pytest.raises(InvalidInput, match="version"):
        registry.get_version(ADMIN, P, "m", "three")
    with pytest.raises(InvalidInput, match="project"):
        registry.create_model(ADMIN, "Bad Project", {"name": "m"})


def test_versions_number_from_one_with_lineage(fraud: ModelRegistry) -> None:
    versions = fraud.list_versions(ADMIN, P, "fraud")
    assert [v.version for v in versions] == [1, 2, 3]
    v = fraud.get_version(ADMIN, P, "fraud", 2)
    assert v.metrics == {"auc": 0.81} and v.artifact_size == 2 and v.created_by == "alice"
    assert v.stage is Stage.NONE and v.uri == "models:/fraud/2"
    assert fraud.get_model(ADMIN, P, "fraud").latest_version == 3


def test_unknown_model_and_version(fraud: ModelRegistry) -> None:
    with pytest.raises(NotFound, match="model 'nope'"):
        fraud.get_version(ADMIN, P, "nope", 1)
    with pytest.raises(NotFound, match="no version 9"):
        fraud.get_version(ADMIN, P, "fraud", 9)
    with pytest.raises(NotFound):
        fraud.get_model(ADMIN, "other", "fraud")


def test_artifact_must_exist_and_match(registry: ModelRegistry, artifacts: ArtifactStore,
                                       tmp_path: Path) -> None:
    registry.create_model(ADMIN, P, {"name": "m"})
    good = artifact_spec(artifacts, tmp_path, b"real")
    with pytest.raises(IntegrityError):
        registry.create_version(ADMIN, P, "m", good.model_copy(
            update={"artifact_sha256": "1" * 64}))
    with pytest.raises(NotFound):
        registry.create_version(ADMIN, P, "m", good.model_copy(
            update={"artifact_uri": good.artifact_uri + "-missing"}))
    with pytest.raises(InvalidInput, match="metrics"):
        registry.create_version(ADMIN, P, "m", {**good.model_dump(), "metrics": {"a": "nan"}})
    assert registry.list_versions(ADMIN, P, "m") == []


def test_promotion_archives_the_previous_production(fraud: ModelRegistry) -> None:
    fraud.transition_stage(ADMIN, P, "fraud", 1, Stage.PRODUCTION)
    fraud.transition_stage(ADMIN, P, "fraud", 2, Stage.STAGING)
    moved = fraud.transition_stage(ADMIN, P, "fraud", 2, Stage.PRODUCTION)
    assert moved.stage is Stage.PRODUCTION
    stages = {v.version: v.stage for v in fraud.list_versions(ADMIN, P, "fraud")}
    assert stages == {1: Stage.ARCHIVED, 2: Stage.PRODUCTION, 3: Stage.NONE}
    fraud.transition_stage(ADMIN, P, "fraud", 3, Stage.PRODUCTION, archive_existing=False)
    prod = fraud.list_versions(ADMIN, P, "fraud", stage=Stage.PRODUCTION)
    assert [v.version for v in prod] == [2, 3]
    entry = [e for e in fraud.audit_log(ADMIN, P) if e.action == "version.stage"][2]
    assert entry.before == {"stage": "Staging"} and entry.after == {"stage": "Production",
                                                                     "archived": [1]}


@pytest.mark.parametrize("start", list(Stage))
def test_every_illegal_transition_is_refused_naming_the_allowed(
        registry: ModelRegistry, artifacts: ArtifactStore, tmp_path: Path, start: Stage) -> None:
    registry.create_model(ADMIN, P, {"name": "m"})
    registry.create_version(ADMIN, P, "m", artifact_spec(artifacts, tmp_path))
    path = {Stage.NONE: [], Stage.STAGING: [Stage.STAGING],
            Stage.PRODUCTION: [Stage.PRODUCTION],
            Stage.ARCHIVED: [Stage.ARCHIVED]}[start]
    for stage in path:
        registry.transition_stage(ADMIN, P, "m", 1, stage)
    for target in Stage:
        if target in ALLOWED_TRANSITIONS[start]:
            continue
        with pytest.raises(InvalidTransition) as err:
            registry.transition_stage(ADMIN, P, "m", 1, target)
        for allowed in ALLOWED_TRANSITIONS[start]:
            assert allowed.value in err.value.message
    assert registry.get_version(ADMIN, P, "m", 1).stage is start


def test_aliases_set_clash_move_resolve_delete(fraud: ModelRegistry) -> None:
    fraud.set_alias(ADMIN, P, "fraud", "champion", 2)
    assert fraud.set_alias(ADMIN, P, "fraud", "champion", 2).aliases == {"champion": 2}
    with pytest.raises(Conflict, match="already points at version 2"):
        fraud.set_alias(ADMIN, P, "fraud", "champion", 3)
    fraud.set_alias(ADMIN, P, "fraud", "champion", 3, move=True)
    fraud.set_alias(ADMIN, P, "fraud", "challenger", 2)
    assert fraud.resolve(ADMIN, P, "models:/fraud@champion").version == 3
    assert fraud.get_version(ADMIN, P, "fraud", 3).aliases == ["champion"]
    assert fraud.resolve(ADMIN, P, "models:/fraud/1").version == 1
    assert fraud.resolve(ADMIN, P, "models:/fraud@latest").version == 3
    fraud.transition_stage(ADMIN, P, "fraud", 2, Stage.PRODUCTION)
    assert fraud.resolve(ADMIN, P, "models:/fraud/production").version == 2
    with pytest.raises(NotFound, match="Staging"):
        fraud.resolve(ADMIN, P, "models:/fraud/Staging")
    with pytest.raises(NotFound, match="alias 'nope'"):
        fraud.resolve(ADMIN, P, "models:/fraud@nope")
    with pytest.raises(InvalidInput, match="cannot parse"):
        fraud.resolve(ADMIN, P, "fraud/3")
    with pytest.raises(InvalidInput, match="neither"):
        fraud.resolve(ADMIN, P, "models:/fraud/prod")
    with pytest.raises(InvalidInput, match="reserved"):
        fraud.set_alias(ADMIN, P, "fraud", "latest", 1)
    with pytest.raises(InvalidInput, match="alias"):
        fraud.set_alias(ADMIN, P, "fraud", "Bad Alias", 1)
    with pytest.raises(NotFound):
        fraud.set_alias(ADMIN, P, "fraud", "x", 42)
    fraud.delete_alias(ADMIN, P, "fraud", "challenger")
    with pytest.raises(NotFound):
        fraud.delete_alias(ADMIN, P, "fraud", "challenger")


def test_delete_version_drops_its_aliases_and_never_reuses_numbers(
        fraud: ModelRegistry, artifacts: ArtifactStore, tmp_path: Path) -> None:
    fraud.set_alias(ADMIN, P, "fraud", "champion", 3)
    fraud.set_alias(ADMIN, P, "fraud", "keep", 2)
    fraud.delete_version(ADMIN, P, "fraud", 3)
    assert fraud.get_model(ADMIN, P, "fraud").aliases == {"keep": 2}
    with pytest.raises(NotFound):
        fraud.get_version(ADMIN, P, "fraud", 3)
    new = fraud.create_version(ADMIN, P, "fraud", artifact_spec(artifacts, tmp_path, b"n"))
    assert new.version == 4
    fraud.transition_stage(ADMIN, P, "fraud", 4, Stage.PRODUCTION)
    with pytest.raises(InvalidTransition, match="Production"):
        fraud.delete_version(ADMIN, P, "fraud", 4)


def test_delete_model(fraud: ModelRegistry) -> None:
    fraud.transition_stage(ADMIN, P, "fraud", 1, Stage.PRODUCTION)
    with pytest.raises(InvalidTransition, match="archive them first"):
        fraud.delete_model(ADMIN, P, "fraud")
    assert fraud.delete_model(ADMIN, P, "fraud", force=True) == 3
    with pytest.raises(NotFound):
        fraud.get_model(ADMIN, P, "fraud")


def test_search(fraud: ModelRegistry) -> None:
    fraud.create_model(ADMIN, P, ModelSpec(name="churn"))
    fraud.transition_stage(ADMIN, P, "fraud", 2, Stage.STAGING)
    hits = fraud.search_versions(ADMIN, P, filter="metrics.auc >= 0.81",
                                 order_by=["metrics.auc DESC"])
    assert [v.version for v in hits] == [3, 2]
    assert [v.version for v in fraud.search_versions(ADMIN, P, stage=Stage.STAGING)] == [2]
    assert [v.version for v in fraud.search_versions(ADMIN, P, tags={"arm": "a"})] == [2]
    assert [v.version for v in fraud.search_versions(ADMIN, P, filter="params.lr < 0.15")] == [1]
    assert fraud.search_versions(ADMIN, P, name_like="chu") == []
    assert [m.name for m in fraud.list_models(ADMIN, P)] == ["churn", "fraud"]
    assert [m.name for m in fraud.list_models(ADMIN, P, tags={"team": "risk"})] == ["fraud"]
    assert [m.name for m in fraud.list_models(ADMIN, P, name_like="FRA")] == ["fraud"]
    assert len(fraud.search_versions(ADMIN, P, limit=2)) == 2
    with pytest.raises(InvalidInput, match="unknown field"):
        fraud.search_versions(ADMIN, P, filter="bogus > 1")


def test_update_model_merges_tags(fraud: ModelRegistry) -> None:
    updated = fraud.update_model(ADMIN, P, "fraud", description="new",
                                 tags={"team": "", "tier": "1"})
    assert updated.tags == {"tier": "1"} and updated.description == "new"
    assert fraud.get_model(ADMIN, P, "fraud").tags == {"tier": "1"}


def test_roles_are_enforced_per_project(fraud: ModelRegistry) -> None:
    viewer = Caller(user="bob", roles={P: Role.viewer})
    assert fraud.get_model(viewer, P, "fraud").name == "fraud"
    with pytest.raises(PermissionDenied, match="editor is required"):
        fraud.transition_stage(viewer, P, "fraud", 1, Stage.STAGING)
    with pytest.raises(PermissionDenied, match="no role"):
        fraud.get_model(viewer, "other", "fraud")
    editor = Caller(user="carol", roles={P: Role.editor})
    fraud.transition_stage(editor, P, "fraud", 1, Stage.STAGING)
    with pytest.raises(PermissionDenied):
        fraud.audit_log(editor, P)


def test_refused_calls_are_audited(fraud: ModelRegistry) -> None:
    """A PermissionDenied leaves an auth.denied entry (who, where, which method, why)."""
    viewer = Caller(user="bob", roles={P: Role.viewer})
    with pytest.raises(PermissionDenied):
        fraud.transition_stage(viewer, P, "fraud", 1, Stage.STAGING)
    with pytest.raises(PermissionDenied):
        fraud.get_model(viewer, "other", "fraud")
    with pytest.raises(PermissionDenied):
        fraud.audit_log(viewer, P)
    denied = [e for e in fraud.audit_log(ADMIN, P) + fraud.audit_log(ADMIN, "other")
              if e.action == "auth.denied"]
    assert [(e.user, e.project, e.target) for e in denied] == [
        ("bob", P, "ModelRegistry.transition_stage"), ("bob", P, "ModelRegistry.audit_log"),
        ("bob", "other", "ModelRegistry.get_model")]
    assert "editor is required" in denied[0].after["reason"]


def test_every_change_is_audited_with_who(fraud: ModelRegistry) -> None:
    fraud.set_alias(ADMIN, P, "fraud", "champion", 1)
    log = fraud.audit_log(ADMIN, P)
    assert [e.action for e in log] == ["model.create", "version.create", "version.create",
                                       "version.create", "alias.set"]
    assert {e.user for e in log} == {"alice"}
    assert log[1].target == "default/fraud/00000001"


def test_fifty_concurrent_writers_get_versions_one_to_fifty(
        store: StateStore, state_url: str, redis_prefix: str, artifacts: ArtifactStore,
        tmp_path: Path) -> None:
    """Two registries on separate connections race; CAS keeps numbers unique and gapless."""
    first = ModelRegistry(store, artifacts)
    second = ModelRegistry(open_state_store(state_url, redis_prefix=redis_prefix), artifacts)
    first.create_model(ADMIN, P, {"name": "m"})
    spec = artifact_spec(artifacts, tmp_path)
    got: list[int] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        v = (first if i % 2 else second).create_version(ADMIN, P, "m", spec)
        with lock:
            got.append(v.version)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 51))
    assert [v.version for v in first.list_versions(ADMIN, P, "m")] == list(range(1, 51))


def test_concurrent_promotions_leave_one_production_version(
        store: StateStore, state_url: str, redis_prefix: str, artifacts: ArtifactStore,
        tmp_path: Path) -> None:
    first = ModelRegistry(store, artifacts)
    second = ModelRegistry(open_state_store(state_url, redis_prefix=redis_prefix), artifacts)
    first.create_model(ADMIN, P, {"name": "m"})
    for i in range(6):
        first.create_version(ADMIN, P, "m", artifact_spec(artifacts, tmp_path, bytes([i])))
    threads = [threading.Thread(target=(first if v % 2 else second).transition_stage,
                                args=(ADMIN, P, "m", v, Stage.PRODUCTION))
               for v in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(first.list_versions(ADMIN, P, "m", stage=Stage.PRODUCTION)) == 1
    assert len(first.list_versions(ADMIN, P, "m", stage=Stage.ARCHIVED)) == 5


def test_non_finite_params_are_refused(registry: ModelRegistry, artifacts: ArtifactStore,
                                       tmp_path: Path) -> None:
    registry.create_model(ADMIN, P, {"name": "m"})
    spec = artifact_spec(artifacts, tmp_path)
    with pytest.raises(InvalidInput, match="params"):
        registry.create_version(ADMIN, P, "m", {**spec.model_dump(),
                                                "params": {"x": float("nan")}})
    registry.create_version(ADMIN, P, "m", spec)
    assert registry.resolve(ADMIN, P, "models:/m/None").version == 1


def test_update_model_validates(fraud: ModelRegistry) -> None:
    with pytest.raises(InvalidInput, match="description"):
        fraud.update_model(ADMIN, P, "fraud", description="x" * 6000)


def test_traffic_policies(fraud: ModelRegistry) -> None:
    from mlray.serving import TrafficPolicy

    with pytest.raises(NotFound, match="no traffic policy and no Production"):
        fraud.get_traffic(ADMIN, P, "fraud")
    fraud.transition_stage(ADMIN, P, "fraud", 2, Stage.PRODUCTION)
    assert fraud.get_traffic(ADMIN, P, "fraud").weights == {2: 1.0}
    policy = TrafficPolicy(weights={2: 90, 3: 10}, shadows=[1])
    fraud.set_traffic(ADMIN, P, "fraud", policy)
    assert fraud.get_traffic(ADMIN, P, "fraud") == policy
    with pytest.raises(NotFound, match="no version 9"):
        fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={9: 1}))
    fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={2: 90, 3: 10}))
    fraud.transition_stage(ADMIN, P, "fraud", 1, Stage.ARCHIVED)
    with pytest.raises(InvalidTransition, match="Archived"):
        fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={1: 1}))
    with pytest.raises(InvalidInput, match="negative"):
        fraud.set_traffic(ADMIN, P, "fraud", {"weights": {2: -5}})
    entries = [e for e in fraud.audit_log(ADMIN, P) if e.action == "traffic.set"]
    assert len(entries) == 2, "failed sets not logged"
    assert entries[0].after is not None and entries[0].after["shadows"] == [1]


def test_a_version_that_takes_traffic_is_neither_archived_nor_deleted(fraud: ModelRegistry
                                                                      ) -> None:
    from mlray.serving import TrafficPolicy

    fraud.transition_stage(ADMIN, P, "fraud", 2, Stage.PRODUCTION)
    fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={2: 75, 3: 25}, shadows=[1]))
    with pytest.raises(InvalidTransition) as err:
        fraud.transition_stage(ADMIN, P, "fraud", 3, Stage.ARCHIVED)
    assert "v3 takes 25% of fraud's traffic" in str(err.value) and "\n" not in str(err.value)
    assert "mlray traffic fraud" in str(err.value) and err.value.field == "stage"
    with pytest.raises(InvalidTransition, match="shadow"):
        fraud.transition_stage(ADMIN, P, "fraud", 1, Stage.ARCHIVED)
    with pytest.raises(InvalidTransition, match="takes copies"):
        fraud.delete_version(ADMIN, P, "fraud", 1)
    # Promoting 3 would archive 2, which serves: refused, saying how to move the traffic.
    with pytest.raises(InvalidTransition) as err:
        fraud.transition_stage(ADMIN, P, "fraud", 3, Stage.PRODUCTION)
    message = str(err.value)
    assert "would archive v2, which takes 75% of fraud's traffic" in message
    assert "mlray deploy fraud --version 3" in message and "--keep-existing" in message
    assert fraud.get_version(ADMIN, P, "fraud", 2).stage is Stage.PRODUCTION
    assert fraud.get_version(ADMIN, P, "fraud", 3).stage is Stage.NONE
    kept = fraud.transition_stage(ADMIN, P, "fraud", 3, Stage.PRODUCTION,
                                  archive_existing=False)
    assert kept.stage is Stage.PRODUCTION
    # Once its traffic has moved, the old version is archived as before.
    fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={3: 100}))
    assert fraud.transition_stage(ADMIN, P, "fraud", 2, Stage.ARCHIVED).stage is Stage.ARCHIVED


def test_archived_versions_only_lose_traffic_and_a_restore_puts_back_what_served(
        fraud: ModelRegistry) -> None:
    from mlray.serving import TrafficPolicy

    fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={1: 100}))
    fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={2: 100}))
    fraud.transition_stage(ADMIN, P, "fraud", 1, Stage.ARCHIVED)
    # A rollback restores the policy that served, though v1 was archived since.
    restored = fraud.restore_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={1: 100}))
    assert fraud.get_traffic(ADMIN, P, "fraud") == restored
    assert [e.action for e in fraud.audit_log(ADMIN, P)][-1] == "traffic.restore"
    # A canary may take traffic away from the archived version, never give it more.
    fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={1: 90, 2: 10}))
    fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={1: 9, 2: 91}))
    with pytest.raises(InvalidTransition, match="can shrink but not grow"):
        fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={1: 50, 2: 50}))
    with pytest.raises(InvalidTransition, match="Archived"):
        fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={2: 100}, shadows=[1]))
    # Versions deleted since are left out of a restore; nothing left is an error.
    fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={2: 100}))
    fraud.delete_version(ADMIN, P, "fraud", 3)
    back = fraud.restore_traffic(ADMIN, P, "fraud",
                                 TrafficPolicy(weights={1: 50, 3: 50}, shadows=[2]))
    assert (back.weights, back.shadows) == ({1: 50.0}, [2])
    with pytest.raises(NotFound, match="exists any more"):
        fraud.restore_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={3: 100}))


def test_every_stored_policy_is_listed_for_reconciling(fraud: ModelRegistry,
                                                      artifacts: ArtifactStore,
                                                      tmp_path: Path) -> None:
    from mlray.serving import TrafficPolicy

    fraud.create_model(ADMIN, "other", ModelSpec(name="fraud"))
    fraud.create_version(ADMIN, "other", "fraud", artifact_spec(artifacts, tmp_path, b"o"))
    fraud.set_traffic(ADMIN, P, "fraud", TrafficPolicy(weights={2: 1}))
    fraud.set_traffic(ADMIN, "other", "fraud", TrafficPolicy(weights={1: 1}))
    assert {k: p.weights for k, p in fraud.traffic_policies(ADMIN).items()} == {
        (P, "fraud"): {2: 1.0}, ("other", "fraud"): {1: 1.0}}
    with pytest.raises(PermissionDenied):
        fraud.traffic_policies(Caller(user="bob", roles={P: Role.admin}))
    fraud.delete_model(ADMIN, "other", "fraud")
    assert list(fraud.traffic_policies(ADMIN)) == [(P, "fraud")]
