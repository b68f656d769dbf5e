"""The feature registry: apply with a diff, breaking changes to views in use, bookkeeping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mlray.errors import Conflict, NotFound, PermissionDenied
from mlray.features.repo import FeatureRepo, load_repo
from mlray.features.service import FeatureRegistry, Materialization
from mlray.identity import Caller, Role
from mlray.storage import StateStore

ROOT = Path(__file__).resolve().parents[2]
ADMIN = Caller.local_admin()
EDITOR = Caller(user="ed", roles={"default": Role.editor})


def _registry(store: StateStore) -> FeatureRegistry:
    """A registry that accepts the example definitions' sources (the checkout's data/)."""
    registry = FeatureRegistry(store)
    registry.allow_sources(ADMIN, "default", allow=[str(ROOT / "data")])
    return registry


def _repo() -> FeatureRepo:
    return load_repo(ROOT / "configs" / "features")


def _drop_field(repo: FeatureRepo, view: str, field: str) -> FeatureRepo:
    data = repo.model_dump(mode="json")
    for fv in data["feature_views"]:
        if fv["name"] == view:
            fv["fields"] = [f for f in fv["fields"] if f["name"] != field]
    return FeatureRepo.model_validate(data)


def test_apply_reports_the_diff_and_is_idempotent(store: StateStore) -> None:
    registry = _registry(store)
    first = registry.apply(EDITOR, "default", _repo())
    assert first.applied and any("customer_profile" in a for a in first.added)
    again = registry.apply(EDITOR, "default", _repo())
    assert not again.applied and again.added == again.changed == again.removed == []
    assert registry.repo(ADMIN, "default") == _repo()
    assert registry.show(ADMIN, "default", "customer")["kind"] == "entities"
    with pytest.raises(NotFound):
        registry.show(ADMIN, "default", "nope")
    assert [e.action for e in store.audit_log(project="default")] == ["features.apply"]


def test_breaking_change_to_a_view_in_use_needs_force_by_an_admin(store: StateStore) -> None:
    registry = _registry(store)
    registry.apply(EDITOR, "default", _repo())
    registry.record_materialization(EDITOR, "default", Materialization(
        view="customer_last_transaction", start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        end=dt.datetime(2026, 1, 2, tzinfo=dt.UTC), rows=10, finished_at=0.0))
    broken = _drop_field(_repo(), "customer_last_transaction", "country")
    with pytest.raises(Conflict, match="country"):
        registry.apply(EDITOR, "default", broken)
    with pytest.raises(PermissionDenied):
        registry.apply(EDITOR, "default", broken, force=True)
    done = registry.apply(ADMIN, "default", broken, force=True)
    assert done.applied and any("BREAKING" in b for b in done.breaking)
    assert registry.repo(ADMIN, "default") == broken


def test_dry_run_changes_nothing(store: StateStore) -> None:
    registry = _registry(store)
    result = registry.apply(EDITOR, "default", _repo(), dry_run=True)
    assert not result.applied and result.added
    assert registry.repo(ADMIN, "default") == FeatureRepo()


def test_materializations_need_known_views(store: StateStore) -> None:
    registry = _registry(store)
    registry.apply(EDITOR, "default", _repo())
    run = Materialization(view="customer_profile", start=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                          end=dt.datetime(2026, 1, 5, tzinfo=dt.UTC), rows=3, finished_at=1.0)
    registry.record_materialization(EDITOR, "default", run)
    assert registry.materializations(ADMIN, "default")["customer_profile"].end == run.end
    with pytest.raises(NotFound):
        registry.record_materialization(EDITOR, "default", run.model_copy(update={"view": "x"}))


def test_a_stream_feeds_one_project(store: StateStore) -> None:
    """Another project's view may not read a stream this project's view reads (its
    events are this project's data); the refusal names no project."""
    registry = _registry(store)
    repo = _repo()
    registry.apply(ADMIN, "default", repo)
    stream = next(v.source.stream for v in repo.feature_views if v.source.type == "stream")
    with pytest.raises(Conflict, match="feeds another project") as refused:
        registry.apply(ADMIN, "other", repo)
    assert "default" not in str(refused.value)
    data = repo.model_dump(mode="json")
    for view in data["feature_views"]:
        if view["source"]["type"] == "stream":
            view["source"]["stream"] = f"{stream}-other"
    assert registry.apply(ADMIN, "other", FeatureRepo.model_validate(data)).applied
    assert registry.apply(ADMIN, "default", repo).applied is False  # its own: unchanged
