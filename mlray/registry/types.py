"""Registry objects: registered models, versions, stages and their allowed transitions."""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from mlray._private.types import FiniteFloat, Name, ParamValue, Tags
from mlray.registry.gates import GateReport

__all__ = [
    "ALLOWED_TRANSITIONS",
    "Lineage",
    "ModelSpec",
    "ModelVersion",
    "RegisteredModel",
    "Resources",
    "ServedModel",
    "Stage",
    "TensorSpec",
    "TrafficPolicy",
    "VersionSpec",
]

ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
RESERVED_ALIASES = frozenset({"latest"})


class Stage(enum.StrEnum):
    """Lifecycle stage of a model version."""

    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"


#: Where each stage may go next. A Production or Archived version never returns to None.
ALLOWED_TRANSITIONS: dict[Stage, frozenset[Stage]] = {
    Stage.NONE: frozenset({Stage.STAGING, Stage.PRODUCTION, Stage.ARCHIVED}),
    Stage.STAGING: frozenset({Stage.PRODUCTION, Stage.ARCHIVED, Stage.NONE}),
    Stage.PRODUCTION: frozenset({Stage.STAGING, Stage.ARCHIVED}),
    Stage.ARCHIVED: frozenset({Stage.STAGING, Stage.PRODUCTION}),
}


def check_alias(alias: str) -> str:
    """Return ``alias`` if it is a settable alias name, else raise ``ValueError``."""
    if not ALIAS_PATTERN.match(alias):
        raise ValueError(f"invalid alias {alias!r}: 1-64 lowercase letters, digits, '_' or "
                         "'-', starting with a letter")
    if alias in RESERVED_ALIASES:
        raise ValueError(f"alias {alias!r} is reserved")
    return alias


Alias = Annotated[str, AfterValidator(check_alias)]
DType = Literal["float32", "float64", "int32", "int64", "bool", "string", "bytes"]


class TensorSpec(BaseModel):
    """One named input or output: dtype and shape (-1 = any size)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=256)
    dtype: DType
    shape: list[Annotated[int, Field(ge=-1)]] = Field(default_factory=lambda: [-1])


class Resources(BaseModel):
    """What one serving replica of the model needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_cpus: float = Field(1.0, ge=0, le=256)
    num_gpus: float = Field(0.0, ge=0, le=16)
    memory_mb: int | None = Field(None, ge=1)


class ModelSpec(BaseModel):
    """What a user declares about a registered model."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: str = Field("", max_length=5000)
    owner: str | None = Field(None, max_length=256)
    tags: Tags = Field(default_factory=dict)
    framework: str = Field("torch", min_length=1, max_length=64)
    input_schema: list[TensorSpec] = Field(default_factory=list)
    output_schema: list[TensorSpec] = Field(default_factory=list)
    resources: Resources = Field(default_factory=Resources)
    feature_service: str | None = Field(
        None, max_length=128,
        description="Feature service whose features the model reads when called by entity key.")


class RegisteredModel(ModelSpec):
    """A registered model: the spec plus what the registry records."""

    project: str
    aliases: dict[str, int] = Field(default_factory=dict)
    latest_version: int = 0
    created_at: float
    updated_at: float
    created_by: str


class Lineage(BaseModel):
    """Where a version came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str | None = Field(None, max_length=128)
    data_fingerprint: str | None = Field(None, max_length=256)
    source: str | None = Field(None, max_length=1024, description="Code or job that built it.")


class VersionSpec(BaseModel):
    """What a caller supplies to create a version."""

    model_config = ConfigDict(extra="forbid")

    artifact_uri: str = Field(min_length=1, max_length=4096)
    artifact_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    artifact_size: int = Field(0, ge=0)
    metrics: dict[str, FiniteFloat] = Field(default_factory=dict)
    params: dict[str, ParamValue] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    description: str = Field("", max_length=5000)
    tags: Tags = Field(default_factory=dict)
    input_schema: list[TensorSpec] = Field(default_factory=list)
    output_schema: list[TensorSpec] = Field(default_factory=list)
    baseline: dict[str, Any] | None = Field(
        None, description="Training baseline for drift (mlray.monitoring.Baseline as a dict).")


class ModelVersion(VersionSpec):
    """A model version as stored; ``aliases`` is filled from the model on every read."""

    model: str
    project: str
    version: int = Field(ge=1)
    stage: Stage = Stage.NONE
    created_at: float
    updated_at: float
    created_by: str
    updated_by: str
    aliases: list[str] = Field(default_factory=list)
    validation: GateReport | None = Field(
        None, description="Result of the validation gates, computed by the platform "
                          "(ModelRegistry.validate_version); never supplied by a caller.")

    @property
    def uri(self) -> str:
        """``models:/<name>/<version>``."""
        return f"models:/{self.model}/{self.version}"


class TrafficPolicy(BaseModel):
    """How one model's requests are split between its versions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    weights: dict[int, float] = Field(description="Version → share (need not sum to 100).")
    shadows: list[int] = Field(default_factory=list,
                               description="Versions that get a copy and never answer.")
    sticky: bool = Field(True, description="Place requests by a hash of their routing key.")

    @model_validator(mode="after")
    def _check(self) -> TrafficPolicy:
        if not self.weights:
            raise ValueError("weights must name at least one version")
        for version, weight in self.weights.items():
            if version < 1:
                raise ValueError(f"version {version} is not a version number")
            if weight < 0:
                raise ValueError(f"version {version} has a negative weight {weight}")
        if sum(self.weights.values()) <= 0:
            raise ValueError("at least one version needs a positive weight")
        both = sorted(set(self.shadows) & {v for v, w in self.weights.items() if w > 0})
        if both:
            raise ValueError(f"version(s) {both} cannot both answer and shadow")
        return self

    @property
    def serving(self) -> list[int]:
        """Versions with a positive weight, ascending."""
        return sorted(v for v, w in self.weights.items() if w > 0)


class ServedModel(BaseModel):
    """A model as the serving ingress sees it: its traffic policy and the versions named."""

    model_config = ConfigDict(frozen=True)

    policy: TrafficPolicy
    versions: dict[int, ModelVersion]
    feature_service: str | None = None
