"""The training and tuning configuration (``configs/train/*.yaml``), validated by pydantic.

Cross-field checks (splits add up to one, a label that is not a feature, an early
stopping metric that is reported) run here; checks against the data (columns exist,
dtypes fit) and the cluster (GPUs exist) run before any worker starts, in
:mod:`mlray.training.prepare`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mlray._private.types import Name
from mlray.registry.gates import GateSpec

__all__ = [
    "DataConfig",
    "EarlyStoppingConfig",
    "FailureHandling",
    "ModelConfig",
    "ScalingSettings",
    "SearchSpace",
    "SplitConfig",
    "TrainConfig",
    "TuneSettings",
    "ValidationFile",
    "load_train_config",
    "resolve_data_path",
]

_CALLABLE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
Column = Annotated[str, Field(min_length=1, max_length=256)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SplitConfig(_Strict):
    """Fractions of rows for training, validation (early stopping) and test (evaluation)."""

    train: float = Field(0.7, gt=0, lt=1)
    validation: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, gt=0, lt=1)

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.validation + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + validation + test must be 1, got {total:g}")
        return self


class DataConfig(_Strict):
    """Where the rows come from and which columns matter."""

    path: str = Field(min_length=1, description="Parquet file or directory, or a pyarrow.fs URI.")
    label: Column
    numeric: list[Column] = Field(default_factory=list, description="Numeric feature columns.")
    categorical: list[Column] = Field(default_factory=list,
                                      description="String columns, one-hot encoded.")
    split: SplitConfig = Field(default_factory=SplitConfig)
    seed: int = Field(42, ge=0)
    feature_service: str | None = Field(
        None, max_length=128,
        description="Build the training set by a point-in-time join of this feature "
                    "service onto the entity rows at `path` (keys, timestamp, label).")

    @model_validator(mode="after")
    def _columns(self) -> DataConfig:
        features = [*self.numeric, *self.categorical]
        if not features:
            raise ValueError("name at least one feature in numeric or categorical")
        if self.label in features:
            raise ValueError(f"the label {self.label!r} is also listed as a feature")
        dupes = sorted({c for c in features if features.count(c) > 1})
        if dupes:
            raise ValueError(f"columns listed twice: {dupes}")
        return self

    @property
    def features(self) -> list[str]:
        """All feature columns, numeric first."""
        return [*self.numeric, *self.categorical]


class ModelConfig(_Strict):
    """A built-in tabular model, or ``module:callable`` returning an ``nn.Module``."""

    type: str = Field("mlp_classifier",
                      description="mlp_classifier, mlp_regressor, or module:callable")
    hidden: list[Annotated[int, Field(ge=1, le=8192)]] = Field(default_factory=lambda: [64, 32])
    dropout: float = Field(0.0, ge=0, lt=1)
    task: Literal["classification", "regression"] | None = Field(
        None, description="Required for module:callable models.")

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value in ("mlp_classifier", "mlp_regressor") or _CALLABLE.match(value):
            return value
        raise ValueError(f"unknown model type {value!r}; use mlp_classifier, mlp_regressor "
                         "or module:callable")

    @model_validator(mode="after")
    def _task(self) -> ModelConfig:
        if ":" in self.type and self.task is None:
            raise ValueError("a module:callable model needs task: classification|regression")
        return self

    @property
    def resolved_task(self) -> str:
        """classification or regression."""
        if self.task:
            return self.task
        return "classification" if self.type == "mlp_classifier" else "regression"


class Hyperparameters(_Strict):
    """Optimizer and loop settings."""

    lr: float = Field(1e-3, gt=0, le=10)
    batch_size: int = Field(256, ge=1, le=1_000_000)
    epochs: int = Field(10, ge=1, le=10_000)
    weight_decay: float = Field(0.0, ge=0)
    pos_weight: float | None = Field(None, gt=0, description="Positive-class weight (binary).")
    cache_shards_mb: int = Field(
        1024, ge=0, description="Each worker keeps its data shard in memory as tensors after "
        "the first epoch when it is at most this size (0 = always stream from Ray Data).")


class ScalingSettings(_Strict):
    """How many training workers and what each one gets."""

    num_workers: int = Field(2, ge=1, le=1024)
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = Field(default_factory=lambda: {"CPU": 1.0})


class FailureHandling(_Strict):
    """Retries and checkpoints: a dead worker restarts the group from the last checkpoint."""

    max_failures: int = Field(2, ge=-1)
    checkpoint_every: int = Field(1, ge=1, description="Epochs between checkpoints.")
    keep_checkpoints: int = Field(2, ge=1)


class EarlyStoppingConfig(_Strict):
    """Stop when the validation metric has not improved for ``patience`` epochs."""

    metric: Literal["val_loss"] = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(3, ge=1)
    min_delta: float = Field(0.0, ge=0)


class SearchSpace(_Strict):
    """One hyperparameter's search space."""

    type: Literal["uniform", "loguniform", "randint", "choice", "grid"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _shape(self) -> SearchSpace:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"{self.type} needs a non-empty values list")
        elif self.low is None or self.high is None or self.low >= self.high:
            raise ValueError(f"{self.type} needs low < high")
        elif self.type == "loguniform" and self.low <= 0:
            raise ValueError("loguniform needs low > 0")
        return self


class TuneSettings(_Strict):
    """A Ray Tune sweep over hyperparameters."""

    search_space: dict[Literal["lr", "batch_size", "epochs", "weight_decay", "hidden",
                               "dropout"], SearchSpace]
    metric: Literal["val_loss"] = "val_loss"
    mode: Literal["min", "max"] = "min"
    num_samples: int = Field(4, ge=1, le=10_000)
    max_concurrent_trials: int = Field(2, ge=1, le=256)
    scheduler: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1, description="ASHA: epochs before a trial can stop.")
    workers_per_trial: int = Field(1, ge=1)


class TrainConfig(_Strict):
    """A whole training job: data, model, hyperparameters, scaling, failures, gates."""

    name: Name = Field(description="Model name in the registry and experiment in the tracker.")
    data: DataConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    failure: FailureHandling = Field(default_factory=FailureHandling)
    early_stopping: EarlyStoppingConfig | None = None
    register_model: bool = Field(True, description="Register the trained model as a version.")
    promote: Literal["none", "staging", "production"] = Field(
        "none", description="Stage to move the new version to if its gates pass.")
    gates: list[GateSpec] | None = Field(
        None, description="Validation gates; None = this model's in configs/validation.yaml.")
    tune: TuneSettings | None = None
    description: str = Field("", max_length=5000)
    tags: dict[str, str] = Field(default_factory=dict)


class ValidationFile(_Strict):
    """``configs/validation.yaml``: gates per model, and a default for the others."""

    default: list[GateSpec] = Field(default_factory=list)
    models: dict[str, list[GateSpec]] = Field(default_factory=dict)

    def gates_for(self, model: str) -> list[GateSpec]:
        """The model's gates, or the default ones."""
        return self.models.get(model, self.default)


def resolve_data_path(config: TrainConfig, base: str | Path) -> TrainConfig:
    """``config`` with a relative local ``data.path`` made absolute against ``base``
    (``~`` expanded; URIs unchanged), so it names the same rows from any directory."""
    from mlray.config.files import beside

    path = beside(config.data.path, base)
    if path == config.data.path:
        return config
    return config.model_copy(update={"data": config.data.model_copy(update={"path": path})})


def load_train_config(path: str | Path, validation: str | Path | None = None) -> TrainConfig:
    """Read a training YAML; without ``gates:`` take them from the validation file
    (``validation``, else ``configs/validation.yaml`` beside the config's folder or in
    the working directory, when one exists).

    A relative ``data.path`` resolves against the YAML file's directory, not the
    working directory (``configs/train/fraud.yaml`` reads ``../../data/fraud.parquet``).
    """
    from mlray.config.files import load_yaml_model

    config = resolve_data_path(load_yaml_model(path, TrainConfig), Path(path).parent)
    if config.gates is not None:
        return config
    candidates = [Path(validation)] if validation else [
        Path(path).resolve().parent.parent / "validation.yaml",
        Path("configs") / "validation.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            gates = load_yaml_model(candidate, ValidationFile).gates_for(config.name)
            return config.model_copy(update={"gates": gates})
    return config
