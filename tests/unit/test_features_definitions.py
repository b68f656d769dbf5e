"""Feature definitions: validation with clear field errors, the YAML loader, refs, apply plans."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pytest

from mlray._private.validation import build
from mlray.errors import ConfigError, InvalidInput, NotFound
from mlray.features import (
    Action,
    Entity,
    FeatureRepo,
    FeatureService,
    FeatureView,
    load_repo,
    parse_ref,
    plan_apply,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "configs" / "features"


def _view(**over: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "user_stats", "entities": ["user"],
        "fields": [{"name": "clicks", "dtype": "int64"}, {"name": "score", "dtype": "float64"}],
        "source": {"type": "push"}, "ttl": "1h",
    }
    spec.update(over)
    return spec


def _repo(*views: dict[str, Any], services: list[dict[str, Any]] | None = None) -> FeatureRepo:
    return build(FeatureRepo,
                 entities=[{"name": "user", "join_keys": [{"name": "user_id"}]}],
                 feature_views=list(views) or [_view()],
                 feature_services=services or [])


def test_example_fraud_definitions_load() -> None:
    repo = load_repo(EXAMPLE)
    assert {v.name for v in repo.feature_views} >= {"customer_profile", "customer_velocity"}
    assert repo.bind("customer_velocity").key_names == ["customer_id"]
    assert repo.feature_view("customer_velocity").ttl == dt.timedelta(days=1)
    sel = repo.select("fraud_model_v1")
    assert [s.view for s in sel][-1] == "transaction_risk" and sel[-1].on_demand


def test_view_builds_with_defaults_and_durations() -> None:
    view = build(FeatureView, **_view(ttl="5m"))
    assert view.ttl == dt.timedelta(minutes=5) and view.online and view.feature_names == [
        "clicks", "score"]
    assert build(FeatureView, **_view(ttl=90)).ttl == dt.timedelta(seconds=90)
    assert build(FeatureView, **_view(ttl="PT2H")).ttl == dt.timedelta(hours=2)
    assert build(FeatureView, **_view(ttl="24d")).ttl == dt.timedelta(days=24)


@pytest.mark.parametrize(("over", "field", "message"), [
    ({"fields": [{"name": "x", "dtype": "int32"}]}, "fields.0.dtype", "int64"),
    ({"fields": [{"name": "x", "dtype": "string", "range": {"min": 0}}]}, "fields.0",
     "range applies to int64 and float64"),
    ({"fields": [{"name": "x", "dtype": "string", "regex": "("}]}, "fields.0", "does not compile"),
    ({"fields": [{"name": "x", "dtype": "int64", "regex": "a"}]}, "fields.0",
     "regex applies to string"),
    ({"fields": [{"name": "x", "dtype": "float64", "range": {"min": 2, "max": 1}}]},
     "fields.0.range", "greater than max"),
    ({"fields": [{"name": "x", "dtype": "array", "allowed_values": [1]}]}, "fields.0",
     "allowed_values applies to scalar"),
    ({"fields": [{"name": "x", "dtype": "int64", "items": "string"}]}, "fields.0",
     "items applies to array and map"),
    ({"fields": [{"name": "x", "dtype": "int64"}, {"name": "x", "dtype": "bool"}]}, "",
     "fields listed twice"),
    ({"fields": [{"name": "event_timestamp", "dtype": "int64"}]}, "", "clash"),
    ({"fields": [{"name": "bad name", "dtype": "int64"}]}, "fields.0.name", "pattern"),
    ({"fields": []}, "fields", "at least 1"),
    ({"ttl": "-5"}, "ttl", "valid timedelta"),
    ({"ttl": "soon"}, "ttl", "valid timedelta"),
    ({"ttl": -5}, "ttl", "ttl must not be negative, got -5s"),
    ({"source": {"type": "kafka"}}, "source", "parquet"),
    ({"source": {"type": "parquet"}}, "source.parquet.path", "Field required"),
    ({"tll": "1h"}, "tll", "Extra inputs are not permitted"),
    ({"name": "a--b"}, "name", "no '--'"),
])
def test_view_validation_names_the_field(over: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        build(FeatureView, **_view(**over))
    assert info.value.field == (field or "input")


def test_entity_and_service_validation() -> None:
    with pytest.raises(InvalidInput, match="join key listed twice"):
        build(Entity, name="u", join_keys=[{"name": "id"}, {"name": "id"}])
    with pytest.raises(InvalidInput) as info:
        build(Entity, name="u", join_keys=[{"name": "id", "dtype": "float64"}])
    assert info.value.field == "join_keys.0.dtype"
    with pytest.raises(InvalidInput, match="expected 'view:feature'") as info:
        build(FeatureService, name="s", features=["user_stats.clicks"])
    assert info.value.field == "features.0"
    assert parse_ref("v:*") == ("v", "*")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"feature_views": [_view(entities=["account"])]}, "unknown entity 'account'"),
    ({"feature_views": [_view(), _view()]}, "defined twice"),
    ({"feature_views": [_view(fields=[{"name": "user_id", "dtype": "int64"}])]},
     "are join keys"),
    ({"feature_services": [{"name": "s", "features": ["user_stats:nope"]}]},
     "has no feature 'nope'"),
    ({"feature_services": [{"name": "s", "features": ["other:*"]}]}, "names no feature view"),
    ({"on_demand_feature_views": [{"name": "o", "function": "m:f", "sources": ["user_stats:x"],
                                   "fields": [{"name": "y", "dtype": "int64"}]}]},
     "has no feature 'x'"),
    ({"on_demand_feature_views": [{"name": "user_stats", "function": "m:f",
                                   "request": [{"name": "a", "dtype": "int64"}],
                                   "fields": [{"name": "y", "dtype": "int64"}]}]},
     "defined twice"),
])
def test_repo_cross_checks(kwargs: dict[str, Any], message: str) -> None:
    fields: dict[str, Any] = {"entities": [{"name": "user", "join_keys": [{"name": "user_id"}]}],
                              "feature_views": [_view()]}
    fields.update(kwargs)
    with pytest.raises(InvalidInput, match=message):
        build(FeatureRepo, **fields)


def test_select_orders_and_errors() -> None:
    repo = _repo(services=[{"name": "svc", "features": ["user_stats:score", "user_stats:*"]}])
    sel = repo.select(["user_stats:score", "user_stats:clicks", "user_stats:score"])
    assert sel[0].features == ("score", "clicks")
    assert repo.select("svc")[0].features == ("score", "clicks")
    assert repo.select(repo.feature_service("svc"))[0].features == ("score", "clicks")
    with pytest.raises(InvalidInput) as info:
        repo.select(["user_stats:clicks", "user_stats"])
    assert info.value.field == "features[1]"
    with pytest.raises(NotFound, match="no feature view 'nope'"):
        repo.select(["nope:x"])
    with pytest.raises(NotFound, match="has no feature 'x'"):
        repo.select(["user_stats:x"])
    with pytest.raises(NotFound, match="no feature service"):
        repo.select("missing")
    with pytest.raises(InvalidInput, match="at least one"):
        repo.select([])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_load_repo_errors_name_file_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_repo(tmp_path / "missing")
    with pytest.raises(ConfigError, match=r"no \*\.yaml"):
        load_repo(tmp_path)
    bad = _write(tmp_path / "a.yaml", "feature_views:\n  - name: v\n    entities: [user]\n"
                 "    source: {type: push}\n    fields: [{name: x, dtype: int32}]\n")
    with pytest.raises(ConfigError, match=r"a\.yaml: feature_views\.0\.fields\.0\.dtype") as info:
        load_repo(tmp_path)
    assert info.value.field == "feature_views.0.fields.0.dtype"
    _write(bad, "entitys: []\n")
    with pytest.raises(ConfigError, match="entitys: Extra inputs"):
        load_repo(tmp_path)
    _write(bad, "entities: [ {name: user\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_repo(tmp_path)


def test_load_repo_merges_files_and_refuses_duplicates(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE / "fraud.yaml", tmp_path / "fraud.yaml")
    _write(tmp_path / "extra.yml", "feature_services:\n  - name: extra\n"
           "    features: ['customer_profile:*']\n")
    repo = load_repo(tmp_path)
    assert repo.feature_service("extra").features == ["customer_profile:*"]
    _write(tmp_path / "zz.yaml", "entities:\n  - name: customer\n"
           "    join_keys: [{name: customer_id}]\n")
    with pytest.raises(ConfigError, match=r"zz\.yaml: 'customer' is also defined in .*fraud"):
        load_repo(tmp_path)
    _write(tmp_path / "zz.yaml", "feature_services:\n  - name: broken\n"
           "    features: ['customer_profile:nope']\n")
    with pytest.raises(ConfigError, match="has no feature 'nope'"):
        load_repo(tmp_path)


def test_plan_apply_diff_and_breaking_changes() -> None:
    empty = FeatureRepo()
    current = _repo(_view(), _view(name="gone"))
    plan = plan_apply(empty, current)
    assert [(c.kind, c.name, c.action) for c in plan.changes] == [
        ("entities", "user", Action.ADDED), ("feature_views", "gone", Action.ADDED),
        ("feature_views", "user_stats", Action.ADDED)]
    assert not plan.breaking
    assert plan_apply(current, current).empty

    safe = _repo(_view(ttl="2h", description="now documented",
                       fields=[{"name": "clicks", "dtype": "int64"},
                               {"name": "score", "dtype": "float64"},
                               {"name": "new", "dtype": "string"}]), _view(name="gone"))
    plan = plan_apply(current, safe)
    [change] = plan.changes
    assert change.action == Action.CHANGED and not change.breaking
    assert set(change.fields) == {"ttl", "description", "fields"}

    breaking = _repo(_view(fields=[{"name": "clicks", "dtype": "float64"}]))
    plan = plan_apply(current, breaking)
    assert {c.name: c.action for c in plan.changes} == {"gone": Action.REMOVED,
                                                        "user_stats": Action.CHANGED}
    reasons = {c.name: c.reasons for c in plan.breaking}
    assert reasons["gone"] == ("view removed",)
    assert set(reasons["user_stats"]) == {"field 'clicks' changed type int64 -> float64",
                                          "field 'score' removed"}
    assert any("BREAKING" in line for line in plan.summary())
    assert plan.of(Action.REMOVED)[0].name == "gone"


def test_plan_apply_item_type_and_keys() -> None:
    a = _repo(_view(fields=[{"name": "emb", "dtype": "array", "items": "float64"}]))
    b = _repo(_view(fields=[{"name": "emb", "dtype": "array", "items": "int64"}]))
    [change] = plan_apply(a, b).breaking
    assert "array<float64> -> array<int64>" in change.reasons[0]
    c = build(FeatureRepo, entities=[{"name": "user", "join_keys": [
        {"name": "user_id", "dtype": "string"}]}], feature_views=[_view()])
    [change] = plan_apply(_repo(), c).breaking
    assert change.kind == "entities" and "join keys changed" in change.reasons[0]
