"""Model architectures: built-ins, or callables a platform admin allowed (audited)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlray.config import PlatformConfig
from mlray.errors import PermissionDenied
from mlray.identity import Caller, Role
from mlray.models.predictor import Predictor
from mlray.registry import ModelRegistry, ModelSpec, VersionSpec
from mlray.registry.architectures import ArchitecturePolicy
from mlray.storage import ArtifactStore, StateStore, open_state_store
from mlray.training.data import Preprocessor
from mlray.training.models import ModelArchitecture

CUSTOM = "tests.unit.custom_model:build"
ADMIN = Caller.local_admin("root")
P = "default"


def _model_dir(root: Path, kind: str) -> Path:
    root.mkdir(parents=True)
    arch = ModelArchitecture(type=kind, task="regression", in_features=1)
    (root / "architecture.json").write_text(arch.model_dump_json())
    (root / "preprocessor.json").write_text(
        Preprocessor(numeric=["a"], categorical=[]).model_dump_json())
    return root


def test_registration_refuses_an_unlisted_callable_until_an_admin_allows_it(
        store: StateStore, tmp_path: Path) -> None:
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    registry = ModelRegistry(store, artifacts)
    registry.create_model(ADMIN, P, ModelSpec(name="m"))
    ref = artifacts.put(_model_dir(tmp_path / "m", CUSTOM))
    spec = VersionSpec(artifact_uri=ref.uri, artifact_sha256=ref.sha256)
    with pytest.raises(PermissionDenied, match=f"architecture '{CUSTOM}' is not allowed"):
        registry.create_version(ADMIN, P, "m", spec)

    project_admin = Caller(user="pat", roles={P: Role.admin})
    with pytest.raises(PermissionDenied):
        registry.allow_architectures(project_admin, P, allow=[CUSTOM])
    assert registry.allow_architectures(ADMIN, P, allow=[CUSTOM]) == [CUSTOM]
    assert registry.create_version(ADMIN, P, "m", spec).version == 1
    changes = [e for e in store.audit_log(limit=1000) if e.action == "platform.architectures"]
    assert [(e.user, e.after) for e in changes] == [("root", {"allowed": [CUSTOM]})]


def test_loading_refuses_an_unlisted_callable_without_importing_it(tmp_path: Path) -> None:
    kind = "tests.unit.never_imported_here:build"
    with pytest.raises(PermissionDenied, match="not allowed"):
        Predictor.from_directory(_model_dir(tmp_path / "m", kind))
    assert "tests.unit.never_imported_here" not in sys.modules
    with pytest.raises(PermissionDenied, match="not allowed"):
        Predictor.from_directory(_model_dir(tmp_path / "c", CUSTOM), allowed=["other:thing"])


def test_loaders_read_the_list_from_the_platform_store(platform_config: PlatformConfig) -> None:
    """Off a cluster, serving's loader reads the admin's list from the configured store."""
    from mlray.serving.batched import allowed_architectures

    assert allowed_architectures(platform_config) == frozenset()
    with open_state_store(platform_config.resolved_state_url,
                          redis_prefix=platform_config.redis_prefix) as store:
        ArchitecturePolicy(store).change(ADMIN, allow=[CUSTOM])
    assert allowed_architectures(platform_config) == {CUSTOM}
