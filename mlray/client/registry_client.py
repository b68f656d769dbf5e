"""The model registry through the client."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from mlray._private.validation import build
from mlray.client.facade import Who, _Facade
from mlray.errors import (
    AlreadyExists,
    NotFound,
)
from mlray.registry.gates import GateSpec
from mlray.registry.types import (
    Lineage,
    ModelSpec,
    ModelVersion,
    RegisteredModel,
    Stage,
    TensorSpec,
    VersionSpec,
)
from mlray.serving.traffic import TrafficPolicy
from mlray.storage.artifacts import ArtifactStore
from mlray.storage.base import AuditEntry

__all__ = ["RegistryClient"]


class RegistryClient(_Facade):
    """Model registry operations for one project."""

    def __init__(self, transport: Any, who: Who, project: str,
                 artifacts: ArtifactStore) -> None:
        super().__init__("registry", transport, who, project)
        self._artifacts = artifacts

    def create_model(self, name: str, **spec: Any) -> RegisteredModel:
        """Register a model name; ``spec`` takes the fields of :class:`ModelSpec`."""
        return self._create("create_model", build(ModelSpec, "spec", name=name, **spec))

    def get_model(self, name: str) -> RegisteredModel:
        """The registered model ``name``."""
        return self._call("get_model", name, read=True)

    def update_model(self, name: str, *, description: str | None = None,
                     owner: str | None = None, tags: dict[str, str] | None = None,
                     feature_service: str | None = None) -> RegisteredModel:
        """Change description, owner, tags (merged; an empty value deletes) or the feature
        service the model reads by entity key ('' clears it)."""
        return self._call("update_model", name, description=description, owner=owner,
                          tags=tags, feature_service=feature_service)

    def list_models(self, *, name_like: str | None = None,
                    tags: dict[str, str] | None = None) -> list[RegisteredModel]:
        """Models of the project, optionally filtered."""
        return self._call("list_models", name_like=name_like, tags=tags, read=True)

    def delete_model(self, name: str, *, force: bool = False) -> int:
        """Delete a model and its versions; returns how many versions went."""
        return self._call("delete_model", name, force=force)

    def create_version(self, model: str, spec: VersionSpec) -> ModelVersion:
        """Add a version whose artifact is already in the artifact store."""
        return self._create("create_version", model, spec)

    def register(self, model: str, artifact_path: str | Path, *,
                 metrics: dict[str, float] | None = None,
                 params: dict[str, Any] | None = None, run_id: str | None = None,
                 data_fingerprint: str | None = None, description: str = "",
                 tags: dict[str, str] | None = None,
                 input_schema: list[TensorSpec] | None = None,
                 output_schema: list[TensorSpec] | None = None,
                 baseline: dict[str, Any] | None = None, **model_spec: Any) -> ModelVersion:
        """Upload a local file or directory and register it as the next version of ``model``.

        The model is created when it does not exist, from ``model_spec`` (the fields of
        :class:`ModelSpec`) and the schemas; the schemas and baseline go on the version.
        """
        try:
            self.get_model(model)
        except NotFound:
            with contextlib.suppress(AlreadyExists):  # another register() got there first
                self.create_model(model, input_schema=input_schema or [],
                                  output_schema=output_schema or [], **model_spec)
        ref = self._artifacts.put(artifact_path)
        spec = build(
            VersionSpec, "spec", artifact_uri=ref.uri, artifact_sha256=ref.sha256,
            artifact_size=ref.size, metrics=metrics or {}, params=params or {},
            description=description, tags=tags or {}, input_schema=input_schema or [],
            output_schema=output_schema or [], baseline=baseline,
            lineage=build(Lineage, "lineage", run_id=run_id, data_fingerprint=data_fingerprint))
        return self.create_version(model, spec)

    def get_version(self, model: str, version: int) -> ModelVersion:
        """One version."""
        return self._call("get_version", model, version, read=True)

    def list_versions(self, model: str, *, stage: Stage | str | None = None
                      ) -> list[ModelVersion]:
        """Versions of ``model``, oldest first."""
        return self._call("list_versions", model, stage=stage, read=True)

    def search_versions(self, *, filter: str | None = None, name_like: str | None = None,
                        stage: Stage | str | None = None, tags: dict[str, str] | None = None,
                        order_by: list[str] | None = None, limit: int = 100
                        ) -> list[ModelVersion]:
        """Versions across models, e.g. ``filter="metrics.auc >= 0.9"``."""
        return self._call("search_versions", filter=filter, name_like=name_like, stage=stage,
                          tags=tags, order_by=order_by, limit=limit, read=True)

    def transition_stage(self, model: str, version: int, stage: Stage | str, *,
                         archive_existing: bool = True, force: bool = False) -> ModelVersion:
        """Move a version to a stage (Production archives the previous one by default and
        needs passed critical gates, or ``force`` as an admin)."""
        return self._call("transition_stage", model, version, stage,
                          archive_existing=archive_existing, force=force)

    def promote(self, model: str, version: int, *, force: bool = False) -> ModelVersion:
        """Move a version to Production, archiving the current Production version."""
        return self.transition_stage(model, version, Stage.PRODUCTION, force=force)

    def validate(self, model: str, version: int, data: str | Path, *, label: str,
                 gates: list[GateSpec] | None = None) -> ModelVersion:
        """Have the platform evaluate a version on a labelled local Parquet file (uploaded to
        the artifact store) against the model's required gates plus ``gates``; the report
        it stores is the only one promotion counts."""
        ref = self._artifacts.put(data)
        return self._call("validate_version", model, version, ref.uri, ref.sha256, label,
                          gates=gates)

    def required_gates(self, model: str) -> list[GateSpec]:
        """The gates every validation of ``model`` evaluates."""
        return self._call("required_gates", model, read=True)

    def set_required_gates(self, model: str, gates: list[GateSpec]) -> list[GateSpec]:
        """Replace ``model``'s required gates (project admins; audited)."""
        return self._call("set_required_gates", model, gates)

    def delete_version(self, model: str, version: int) -> None:
        """Delete a version and its aliases."""
        self._call("delete_version", model, version)

    def set_alias(self, model: str, alias: str, version: int, *,
                  move: bool = False) -> RegisteredModel:
        """Point ``alias`` at ``version`` (``move`` to repoint an existing alias)."""
        return self._call("set_alias", model, alias, version, move=move)

    def delete_alias(self, model: str, alias: str) -> None:
        """Remove an alias."""
        self._call("delete_alias", model, alias)

    def resolve(self, uri: str) -> ModelVersion:
        """The version named by ``models:/name/3``, ``models:/name@alias`` or a stage."""
        return self._call("resolve", uri, read=True)

    def download(self, uri: str, dest_dir: str | Path | None = None) -> Path:
        """Fetch the artifact of the version ``uri`` names, verified by sha256."""
        version = self.resolve(uri)
        return self._artifacts.fetch(version.artifact_uri, version.artifact_sha256, dest_dir)

    def set_traffic(self, model: str, weights: dict[int, float], *,
                    shadows: list[int] | None = None, sticky: bool = True) -> TrafficPolicy:
        """Store how ``model``'s requests split between versions (e.g. ``{1: 90, 2: 10}``)."""
        policy = build(TrafficPolicy, "policy", weights=weights, shadows=shadows or [],
                       sticky=sticky)
        return self._call("set_traffic", model, policy)

    def get_traffic(self, model: str) -> TrafficPolicy:
        """``model``'s traffic policy (all to Production when none was set)."""
        return self._call("get_traffic", model, read=True)

    def audit_log(self, *, after_seq: int = 0, limit: int = 100) -> list[AuditEntry]:
        """The project's audit trail (admins)."""
        return self._call("audit_log", after_seq=after_seq, limit=limit, read=True)

    def allowed_architectures(self) -> list[str]:
        """The ``module:callable`` model architectures a platform admin allowed."""
        return self._call("allowed_architectures", read=True)

    def allow_architectures(self, allow: list[str] | None = None,
                            revoke: list[str] | None = None) -> list[str]:
        """Allow or revoke ``module:callable`` architectures (platform admins; audited)."""
        return self._call("allow_architectures", allow=allow, revoke=revoke)
