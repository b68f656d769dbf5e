"""Offline sources are confined to the project's storage root unless a platform admin
allows a prefix (#13 part 4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlray.errors import InvalidInput, PermissionDenied
from mlray.features.repo import FeatureRepo, load_repo
from mlray.features.service import FeatureRegistry
from mlray.identity import ALL_PROJECTS, Caller, Role
from mlray.storage import StateStore

ROOT = Path(__file__).resolve().parents[2]
PLATFORM_ADMIN = Caller.local_admin("root")
PROJECT_ADMIN = Caller(user="pa", roles={"default": Role.admin})
EDITOR = Caller(user="ed", roles={"default": Role.editor})


def _repo_at(path: str) -> FeatureRepo:
    """The example definitions with every Parquet source moved to ``path``."""
    data = load_repo(ROOT / "configs" / "features").model_dump(mode="json")
    for view in data["feature_views"]:
        if view["source"]["type"] == "parquet":
            view["source"]["path"] = path
    return FeatureRepo.model_validate(data)


def test_a_source_outside_the_project_root_is_refused_naming_the_path(
        store: StateStore, tmp_path: Path) -> None:
    offline = tmp_path / "offline"
    registry = FeatureRegistry(store, str(offline))
    inside = offline / "default" / "raw" / "fraud.parquet"
    assert registry.apply(EDITOR, "default", _repo_at(str(inside))).applied
    outside = [str(ROOT / "data" / "fraud.parquet"), "/etc/passwd",
               str(offline / "other" / "fraud.parquet"),  # another project's root
               str(offline / "default" / ".." / "other" / "x.parquet"),
               str(offline / "default-2" / "x.parquet")]  # a name that only starts alike
    link = offline / "default" / "escape"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    outside.append(str(link / "x.parquet"))
    for path in outside:
        with pytest.raises(PermissionDenied) as caught:
            registry.apply(EDITOR, "default", _repo_at(path))
        message = caught.value.message
        assert path in message and "\n" not in message, message
        assert "outside the project's storage" in message
    assert registry.repo(EDITOR, "default") == _repo_at(str(inside))


def test_object_store_roots_are_compared_without_the_query(store: StateStore) -> None:
    registry = FeatureRegistry(store, "s3://bucket/offline?endpoint_override=h:9000")
    assert registry.apply(EDITOR, "default",
                          _repo_at("s3://bucket/offline/default/f.parquet")).applied
    for path in ("s3://bucket/offline/other/f.parquet",
                 "s3://bucket/offline/default/../other/f.parquet",
                 "s3://other-bucket/offline/default/f.parquet"):
        with pytest.raises(PermissionDenied, match="outside the project's storage"):
            registry.apply(EDITOR, "default", _repo_at(path))


def test_a_platform_admin_allows_a_prefix_audited(store: StateStore, tmp_path: Path) -> None:
    registry = FeatureRegistry(store, str(tmp_path / "offline"))
    data = str(ROOT / "data")
    for caller in (EDITOR, PROJECT_ADMIN):  # a project admin could open other projects' data
        with pytest.raises(PermissionDenied):
            registry.allow_sources(caller, "default", allow=[data])
    with pytest.raises(InvalidInput, match="relative"):
        registry.allow_sources(PLATFORM_ADMIN, "default", allow=["data"])
    with pytest.raises(InvalidInput, match="everything"):
        registry.allow_sources(PLATFORM_ADMIN, "default", allow=["/"])
    assert registry.allow_sources(PLATFORM_ADMIN, "default", allow=[data]) == [data]
    assert registry.allowed_sources(EDITOR, "default") == [data]
    assert registry.apply(EDITOR, "default", _repo_at(f"{data}/fraud.parquet")).applied
    entry = store.audit_log(project=ALL_PROJECTS)[-1]
    assert entry.action == "platform.offline_sources" and entry.after == {"allowed": [data]}
    registry.allow_sources(PLATFORM_ADMIN, "default", revoke=[data])
    with pytest.raises(PermissionDenied, match=r"fraud2\.parquet"):
        registry.apply(EDITOR, "default", _repo_at(f"{data}/fraud2.parquet"))


def test_an_allowed_uri_is_stored_without_its_query(store: StateStore) -> None:
    registry = FeatureRegistry(store)
    listed = registry.allow_sources(PLATFORM_ADMIN, "default", allow=[
        "s3://shared/raw/?endpoint_override=h:9000&secret_key=SECRETKEY"])
    assert listed == ["s3://shared/raw"]
    assert "SECRETKEY" not in str(store.audit_log(project=ALL_PROJECTS)[-1].after)
    assert registry.apply(EDITOR, "default", _repo_at("s3://shared/raw/f.parquet")).applied
    assert registry.allow_sources(PLATFORM_ADMIN, "default",
                                  revoke=["s3://shared/raw?endpoint_override=h:9000"]) == []


def test_without_an_offline_root_only_allowed_prefixes_pass(store: StateStore,
                                                              tmp_path: Path) -> None:
    registry = FeatureRegistry(store)
    with pytest.raises(PermissionDenied):
        registry.apply(EDITOR, "default", _repo_at(str(tmp_path / "f.parquet")))
    registry.allow_sources(PLATFORM_ADMIN, "default", allow=[str(tmp_path)])
    assert registry.apply(EDITOR, "default", _repo_at(str(tmp_path / "f.parquet"))).applied


def test_cli_refuses_in_one_line_until_an_admin_allows_the_prefix(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from mlray.cli.main import main
    from tests.conftest import free_port
    from tests.unit.test_features_paths import _project

    monkeypatch.setenv("MLRAY_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MLRAY_CONFIG", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("MLRAY_RAY_HEAD_PORT", str(free_port()))  # embedded mode
    features = _project(tmp_path / "proj")
    source = str(tmp_path / "proj" / "data" / "tx.parquet")

    def cli(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    code, _, err = cli("features", "apply", str(features))
    assert code == 2 and source in err and len(err.strip().splitlines()) == 1, err
    code, out, _ = cli("features", "sources", "--allow", str(tmp_path / "proj" / "data"),
                       "--json")
    assert code == 0 and json.loads(out) == [str(tmp_path / "proj" / "data")]
    code, _, err = cli("features", "apply", str(features))
    assert code == 0, err
