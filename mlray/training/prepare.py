"""Everything checked and built before any training worker starts.

``prepare`` reads the data, checks columns, dtypes, label and splits against the
config, checks that the cluster has the CPUs and GPUs asked for, fits the
preprocessor on the training split and wraps each split in a Ray Dataset whose
``map_batches`` turns raw rows into ``{"x": float32 matrix, "y": float32}``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlray.errors import ConfigError
from mlray.registry.types import TensorSpec
from mlray.training.config import TrainConfig
from mlray.training.data import (
    HistoricalFeatures,
    Preprocessor,
    Splits,
    check_frame,
    load_frame,
    split_frame,
)
from mlray.training.models import ModelArchitecture

__all__ = ["Prepared", "check_cluster", "check_resources", "prepare"]


@dataclass
class Prepared:
    """Data and metadata shared by the training loop, evaluation and registration."""

    frame: pd.DataFrame
    splits: Splits
    preprocessor: Preprocessor
    architecture: ModelArchitecture
    fingerprint: str

    def part(self, name: str) -> pd.DataFrame:
        """The rows of one split."""
        return self.frame.iloc[getattr(self.splits, name)]

    def datasets(self, label: str) -> dict[str, Any]:
        """Ray Datasets for the train and validation splits."""
        import ray.data

        featurize = functools.partial(_featurize, preprocessor=self.preprocessor, label=label)
        # Featurize once; every epoch (and every retry) then reads the stored blocks.
        return {name: ray.data.from_pandas(self.part(name)).map_batches(
                    featurize, batch_format="pandas").materialize()
                for name in ("train", "validation")}

    def input_schema(self) -> list[TensorSpec]:
        """One spec per raw feature column."""
        specs = []
        for col in self.preprocessor.numeric:
            dtype = "int64" if pd.api.types.is_integer_dtype(self.frame[col]) else "float64"
            specs.append(TensorSpec(name=col, dtype=dtype, shape=[-1]))
        specs += [TensorSpec(name=c, dtype="string", shape=[-1])
                  for c in self.preprocessor.categorical]
        return specs

    def output_schema(self) -> list[TensorSpec]:
        """The model's single output."""
        name = "probability" if self.architecture.task == "classification" else "prediction"
        return [TensorSpec(name=name, dtype="float32", shape=[-1])]


def _featurize(batch: pd.DataFrame, preprocessor: Preprocessor, label: str) -> dict[str, Any]:
    return {"x": preprocessor.transform(batch),
            "y": batch[label].to_numpy(dtype=np.float32)}


def check_cluster(config: TrainConfig, *, tune: bool = False) -> None:
    """Refuse a job the connected Ray cluster cannot place (it would wait forever); see
    :func:`check_resources`."""
    import ray

    check_resources(config, ray.cluster_resources(), tune=tune)


def check_resources(config: TrainConfig, have: dict[str, float], *, tune: bool = False
                    ) -> None:
    """Refuse a job that ``have`` (a cluster's resources) cannot place.

    A training job places ``scaling.num_workers`` workers; a sweep (``tune=True``)
    places ``tune.max_concurrent_trials * tune.workers_per_trial`` at once, and the
    error names the setting that sets the count.

    Raises:
        ConfigError: naming what was asked for, what the cluster has, and what to change.
    """
    if tune and config.tune is not None:
        trials, per_trial = config.tune.max_concurrent_trials, config.tune.workers_per_trial
        workers = trials * per_trial
        asked = (f"tune.max_concurrent_trials * tune.workers_per_trial = {trials} * "
                 f"{per_trial} = {workers} worker(s)")
        field = "tune.max_concurrent_trials"
        fix = "lower tune.max_concurrent_trials or tune.workers_per_trial"
    else:
        workers = config.scaling.num_workers
        asked = f"scaling.num_workers = {workers} worker(s)"
        field = "scaling.num_workers"
        fix = "lower scaling.num_workers"
    fix += " or give the cluster more CPUs (`mlray up --num-cpus N`)"
    if config.scaling.use_gpu and have.get("GPU", 0) < workers:
        raise ConfigError(f"scaling.use_gpu: {asked} need {workers} GPU(s); the cluster has "
                          f"{have.get('GPU', 0):g}", field="scaling.use_gpu")
    for resource, amount in config.scaling.resources_per_worker.items():
        needed = amount * workers
        if resource != "CPU" and have.get(resource, 0) < needed:  # CPUs: checked below
            raise ConfigError(
                f"scaling.resources_per_worker: {asked} need {needed:g} {resource}; the "
                f"cluster has {have.get(resource, 0):g}", field="scaling.resources_per_worker")
    cpus = config.scaling.resources_per_worker.get("CPU", 1.0) * workers
    if cpus >= have.get("CPU", 0):
        raise ConfigError(
            f"{asked} take {cpus:g} of the cluster's {have.get('CPU', 0):g} CPUs, leaving "
            f"none for the Ray Data tasks that feed them; {fix}", field=field)


def historical_from(client: Any) -> HistoricalFeatures:
    """The client's point-in-time join, as :func:`load_frame` takes it."""
    def join(entity_rows: Any, service: str) -> Any:
        return client.features.get_historical_features(entity_rows, service, as_pandas=True)

    return join


def prepare(config: TrainConfig, historical: HistoricalFeatures | None = None) -> Prepared:
    """Load (joining features when the config names a feature service), check, split and
    preprocess; raises before any worker starts."""
    task = config.model.resolved_task
    frame = load_frame(config.data, historical)
    check_frame(frame, config.data, task)
    splits = split_frame(frame, config.data)
    train = frame.iloc[splits.train]
    pre = Preprocessor.fit(train, config.data.numeric, config.data.categorical)
    arch = ModelArchitecture(
        type="mlp" if config.model.type.startswith("mlp_") else config.model.type,
        task=task, in_features=pre.width, hidden=list(config.model.hidden),
        dropout=config.model.dropout)
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return Prepared(frame=frame, splits=splits, preprocessor=pre, architecture=arch,
                    fingerprint=f"sha256:{digest.hexdigest()[:32]}")
