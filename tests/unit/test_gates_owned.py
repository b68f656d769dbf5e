"""Validation gates the platform owns (#13 part 6): only a report the registry computed
counts for Production; a caller cannot write one; an admin's force is audited."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.registry import RegistryActor
from mlray.auth.tokens import PLATFORM_USER
from mlray.errors import ConfigError, InvalidInput, InvalidTransition, PermissionDenied
from mlray.identity import Caller, Role
from mlray.models.validation import evaluate_artifact
from mlray.registry import ModelRegistry, Stage
from mlray.registry.gates import GateReport, GateSpec, evaluate_gates
from mlray.registry.types import ModelVersion, VersionSpec
from mlray.storage import ArtifactStore, StateStore
from tests.unit.helpers import tiny_model

ADMIN = Caller(user="root", roles={"default": Role.admin})
EDITOR = Caller(user="ed", roles={"default": Role.editor})
AUC_09 = GateSpec(kind="threshold", metric="roc_auc", min=0.9)


@pytest.fixture
def setup(store: StateStore, tmp_path: Path) -> tuple[ModelRegistry, ArtifactStore, Path]:
    """A registry with the platform's evaluator, model ``m`` v1 (an untrained MLP: its
    AUC is far from 0.9) and a labelled Parquet file uploaded to the artifact store."""
    artifacts = ArtifactStore(str(tmp_path / "artifacts"))
    registry = ModelRegistry(store, artifacts, evaluator=evaluate_artifact)
    model_dir, data = tiny_model(tmp_path)
    ref = artifacts.put(model_dir)
    registry.create_model(ADMIN, "default", {"name": "m"})
    registry.create_version(EDITOR, "default", "m", VersionSpec(
        artifact_uri=ref.uri, artifact_sha256=ref.sha256, metrics={"roc_auc": 0.99}))
    return registry, artifacts, data


def _validate(registry: ModelRegistry, artifacts: ArtifactStore, data: Path,
              caller: Caller = EDITOR, gates: list[GateSpec] | None = None) -> ModelVersion:
    ref = artifacts.put(data)
    return registry.validate_version(caller, "default", "m", 1, ref.uri, ref.sha256, "y",
                                     gates=gates)


def test_a_caller_cannot_write_a_validation_report(
        setup: tuple[ModelRegistry, ArtifactStore, Path]) -> None:
    registry, _, _ = setup
    passed = evaluate_gates([AUC_09], {"roc_auc": 0.99}).model_copy(
        update={"computed_by": PLATFORM_USER})
    v1 = registry.get_version(EDITOR, "default", "m", 1)
    with pytest.raises(InvalidInput, match="validation"):
        registry.create_version(EDITOR, "default", "m", {
            "artifact_uri": v1.artifact_uri, "artifact_sha256": v1.artifact_sha256,
            "validation": passed.model_dump()})
    assert not hasattr(registry, "set_validation")
    assert "set_validation" not in RegistryActor.__ray_actor_class__.API  # type: ignore[attr-defined]


def test_the_report_is_computed_from_the_artifact_not_the_claimed_metrics(
        setup: tuple[ModelRegistry, ArtifactStore, Path]) -> None:
    registry, artifacts, data = setup
    version = _validate(registry, artifacts, data, gates=[AUC_09])
    report = version.validation
    assert report is not None and report.computed_by == PLATFORM_USER
    assert report.requested_by == "ed" and report.data_sha256
    # The version claims roc_auc 0.99; the platform measured the untrained model.
    assert report.metrics["roc_auc"] < 0.9 and not report.passed
    assert report.failed_critical == ["roc_auc >= 0.9"]
    registry.transition_stage(EDITOR, "default", "m", 1, Stage.STAGING)
    with pytest.raises(InvalidTransition, match=r"failed critical validation gates: "
                                                r"roc_auc >= 0.9"):
        registry.transition_stage(EDITOR, "default", "m", 1, Stage.PRODUCTION)


def test_required_gates_cannot_be_dropped_by_the_requester(
        setup: tuple[ModelRegistry, ArtifactStore, Path]) -> None:
    registry, artifacts, data = setup
    with pytest.raises(PermissionDenied):
        registry.set_required_gates(EDITOR, "default", "m", [AUC_09])
    registry.set_required_gates(ADMIN, "default", "m", [AUC_09])
    assert registry.required_gates(EDITOR, "default", "m") == [AUC_09]
    registry.transition_stage(EDITOR, "default", "m", 1, Stage.STAGING)
    with pytest.raises(InvalidTransition, match="no validation report computed by the platform"):
        registry.transition_stage(EDITOR, "default", "m", 1, Stage.PRODUCTION)
    version = _validate(registry, artifacts, data, gates=[])  # asks for no gates
    assert version.validation is not None
    assert [r.name for r in version.validation.results] == ["roc_auc >= 0.9"]
    with pytest.raises(InvalidTransition, match=r"roc_auc >= 0\.9"):
        registry.transition_stage(EDITOR, "default", "m", 1, Stage.PRODUCTION)


def test_a_report_the_platform_did_not_compute_never_counts(
        store: StateStore, setup: tuple[ModelRegistry, ArtifactStore, Path]) -> None:
    registry, _, _ = setup
    registry.set_required_gates(ADMIN, "default", "m", [AUC_09])
    doc = store.get("versions", "default/m/00000001")
    assert doc is not None
    forged = GateReport(passed=True, results=[], computed_by="ed")  # e.g. an old caller write
    store.put("versions", doc.key, {**doc.data, "validation": forged.model_dump()}, doc.version)
    registry.transition_stage(EDITOR, "default", "m", 1, Stage.STAGING)
    with pytest.raises(InvalidTransition, match="no validation report computed by the platform"):
        registry.transition_stage(EDITOR, "default", "m", 1, Stage.PRODUCTION)


def test_only_an_admin_force_passes_failed_gates_and_it_is_audited(
        setup: tuple[ModelRegistry, ArtifactStore, Path]) -> None:
    registry, artifacts, data = setup
    _validate(registry, artifacts, data, gates=[AUC_09])
    registry.transition_stage(EDITOR, "default", "m", 1, Stage.STAGING)
    with pytest.raises(PermissionDenied, match="admin"):
        registry.transition_stage(EDITOR, "default", "m", 1, Stage.PRODUCTION, force=True)
    forced = registry.transition_stage(ADMIN, "default", "m", 1, Stage.PRODUCTION, force=True)
    assert forced.stage is Stage.PRODUCTION
    entry = registry.audit_log(ADMIN, "default")[-1]
    assert entry.user == "root" and entry.action == "version.stage"
    assert entry.after is not None and entry.after["forced_past_gates"] == ["roc_auc >= 0.9"]


def test_a_registry_without_the_platform_evaluator_cannot_validate(
        store: StateStore, setup: tuple[ModelRegistry, ArtifactStore, Path]) -> None:
    _, artifacts, data = setup
    bare = ModelRegistry(store, artifacts)
    ref = artifacts.put(data)
    with pytest.raises(ConfigError, match="cannot evaluate"):
        bare.validate_version(EDITOR, "default", "m", 1, ref.uri, ref.sha256, "y")
    with pytest.raises(InvalidInput, match="label"):
        _validate_label(setup, "nope")


def _validate_label(setup: tuple[ModelRegistry, ArtifactStore, Path], label: str) -> None:
    registry, artifacts, data = setup
    ref = artifacts.put(data)
    registry.validate_version(EDITOR, "default", "m", 1, ref.uri, ref.sha256, label)


def test_no_regression_scores_the_production_model_on_the_same_rows(
        setup: tuple[ModelRegistry, ArtifactStore, Path]) -> None:
    registry, artifacts, data = setup
    registry.transition_stage(ADMIN, "default", "m", 1, Stage.PRODUCTION)  # claims auc 0.99
    v1 = registry.get_version(EDITOR, "default", "m", 1)
    registry.create_version(EDITOR, "default", "m", VersionSpec(
        artifact_uri=v1.artifact_uri, artifact_sha256=v1.artifact_sha256))  # the same model
    ref = artifacts.put(data)
    gate = GateSpec(kind="no_regression", metric="roc_auc", max_regression_pct=1)
    version = registry.validate_version(EDITOR, "default", "m", 2, ref.uri, ref.sha256, "y",
                                        gates=[gate])
    assert version.validation is not None and version.validation.passed
    assert "0.00% regression" in version.validation.results[0].message


def test_evaluation_data_over_the_cap_is_refused_before_it_is_read(
        setup: tuple[ModelRegistry, ArtifactStore, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import mlray.models.validation as validation

    registry, artifacts, data = setup
    monkeypatch.setattr(validation, "MAX_DATA_BYTES", data.stat().st_size - 1)
    with pytest.raises(InvalidInput, match="at most"):
        _validate(registry, artifacts, data)
    assert registry.get_version(EDITOR, "default", "m", 1).validation is None
