"""Tabular data for training: load, check against the config, split, preprocess.

The :class:`Preprocessor` is fit on the training split only (numeric: mean and std;
categorical: the vocabulary, with an "unseen" slot) and travels inside the model
artifact as JSON, so serving turns raw feature rows into tensors the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
from pydantic import BaseModel, Field, PrivateAttr

from mlray.errors import InvalidInput, NotFound
from mlray.training.config import DataConfig

__all__ = ["Preprocessor", "Splits", "check_frame", "load_frame", "require_data",
           "split_frame"]


#: ``(entity_rows, feature_service) -> DataFrame``: a point-in-time join (the client's
#: ``features.get_historical_features``), for configs that name a feature service.
HistoricalFeatures = Callable[[pa.Table, str], pd.DataFrame]


def load_frame(config: DataConfig, historical: HistoricalFeatures | None = None
               ) -> pd.DataFrame:
    """Read the configured columns from a Parquet file, directory or URI; with a feature
    service, join its features point-in-time onto the entity rows there.

    Raises:
        NotFound: no data at the path.
        InvalidInput: a configured column is missing (naming it and the ones there are).
    """
    require_data(config)
    try:
        dataset = pads.dataset(config.path, format="parquet")
        present = set(dataset.schema.names)
    except FileNotFoundError:
        raise _not_found(config.path) from None
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInput(f"data.path {config.path!r} is not readable Parquet: {exc}",
                           field="data.path") from None
    wanted = [*config.features, config.label]
    if config.feature_service:
        if historical is None:
            raise InvalidInput("data.feature_service needs a platform to read features from",
                               field="data.feature_service")
        frame = historical(dataset.to_table(), config.feature_service)
        present = set(frame.columns)
    missing = [c for c in wanted if c not in present]
    if missing:
        where = (f"the entity rows with feature service {config.feature_service!r}"
                 if config.feature_service else f"data.path {config.path!r}")
        raise InvalidInput(f"{where} give no column(s) {missing}; there are "
                           f"{sorted(present)}", field="data.features")
    if config.feature_service:
        return frame[wanted].reset_index(drop=True)
    return dataset.to_table(columns=wanted).to_pandas()


def _not_found(path: str) -> NotFound:
    where = "" if "://" in path else f" (looked for {Path(path).absolute()})"
    return NotFound(
        f"data.path {path!r} not found{where}; write your Parquet there, or generate the "
        f"example fraud data with `python -m mlray.datasets {path}`", field="data.path")


def require_data(config: DataConfig) -> None:
    """Fail fast, before Ray starts, when nothing is at ``data.path`` (a local path, or a
    URI whose filesystem answers; one that cannot be asked is left to :func:`load_frame`).

    Raises:
        NotFound: naming the path and how to make the example data.
    """
    if "://" not in config.path:
        if not Path(config.path).exists():
            raise _not_found(config.path)
        return
    try:
        filesystem, where = pafs.FileSystem.from_uri(config.path)
        info = filesystem.get_file_info(where)
    except (OSError, pa.ArrowException):
        return
    if info.type == pafs.FileType.NotFound:
        raise _not_found(config.path)


def check_frame(frame: pd.DataFrame, config: DataConfig, task: str) -> None:
    """Check dtypes and the label before any worker starts.

    Raises:
        InvalidInput: naming the column and what is wrong with it.
    """
    for col in config.numeric:
        if not (pd.api.types.is_numeric_dtype(frame[col]) or
                pd.api.types.is_bool_dtype(frame[col])):
            raise InvalidInput(f"data.numeric: column {col!r} has dtype {frame[col].dtype}, "
                               "expected a number (list it under categorical?)",
                               field=f"data.numeric.{col}")
    for col in config.categorical:
        if pd.api.types.is_float_dtype(frame[col]):
            raise InvalidInput(f"data.categorical: column {col!r} is float; expected strings "
                               "or integers", field=f"data.categorical.{col}")
    label = frame[config.label]
    if label.isna().any():
        raise InvalidInput(f"data.label {config.label!r} has {int(label.isna().sum())} nulls",
                           field="data.label")
    if task == "classification":
        values = set(pd.unique(label))
        if not values <= {0, 1}:
            raise InvalidInput(f"data.label {config.label!r} must be 0/1 for classification, "
                               f"got values like {sorted(values, key=str)[:5]}",
                               field="data.label")
    elif not pd.api.types.is_numeric_dtype(label):
        raise InvalidInput(f"data.label {config.label!r} must be numeric for regression",
                           field="data.label")


class Splits(BaseModel):
    """Row indices of each split (positions in the loaded frame)."""

    model_config = {"arbitrary_types_allowed": True}

    train: Any
    validation: Any
    test: Any


def split_frame(frame: pd.DataFrame, config: DataConfig) -> Splits:
    """A seeded permutation cut by the configured fractions.

    Raises:
        InvalidInput: a split would be empty.
    """
    n = len(frame)
    order = np.random.default_rng(config.seed).permutation(n)
    n_train = round(n * config.split.train)
    n_val = round(n * config.split.validation)
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    for name, part in zip(("train", "validation", "test"), parts, strict=True):
        if len(part) == 0:
            raise InvalidInput(f"data.split: the {name} split of {n} rows is empty",
                               field=f"data.split.{name}")
    return Splits(train=parts[0], validation=parts[1], test=parts[2])


class _IndexCache(dict[str, tuple[list[str], pd.Index]]):
    """Vocabulary indexes built on first use: a cache, so never part of equality."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _IndexCache)

    __hash__ = None  # type: ignore[assignment]


class Preprocessor(BaseModel):
    """Standardize numeric columns and one-hot encode categorical ones."""

    numeric: list[str]
    categorical: list[str]
    means: list[float] = Field(default_factory=list)
    stds: list[float] = Field(default_factory=list)
    vocab: dict[str, list[str]] = Field(default_factory=dict)
    _indexes: _IndexCache = PrivateAttr(default_factory=lambda: _IndexCache())

    @classmethod
    def fit(cls, frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> Preprocessor:
        """Learn statistics and vocabularies from ``frame`` (the training split)."""
        values = frame[numeric].astype("float64") if numeric else pd.DataFrame()
        means = [float(values[c].mean()) if values[c].notna().any() else 0.0 for c in numeric]
        stds = [float(values[c].std(ddof=0)) or 1.0 for c in numeric]
        stds = [s if np.isfinite(s) and s > 0 else 1.0 for s in stds]
        vocab = {c: sorted(frame[c].dropna().astype(str).unique().tolist()) for c in categorical}
        return cls(numeric=numeric, categorical=categorical, means=means, stds=stds, vocab=vocab)

    @property
    def width(self) -> int:
        """Number of model inputs: numeric columns plus one slot per category and unseen."""
        return len(self.numeric) + sum(len(v) + 1 for v in self.vocab.values())

    @property
    def feature_names(self) -> list[str]:
        """Names of the model inputs, in order."""
        names = list(self.numeric)
        for col in self.categorical:
            names += [f"{col}={v}" for v in self.vocab[col]] + [f"{col}=<unseen>"]
        return names

    def transform(self, columns: pd.DataFrame | Mapping[str, Any]) -> np.ndarray:
        """Rows to a float32 matrix; nulls become the mean (0 after scaling) or unseen.

        ``columns`` is a DataFrame or a mapping of column name to a 1-d array (the
        serving path), so no rows are built as Python objects.
        """
        n = len(columns) if isinstance(columns, pd.DataFrame) else _rows_of(columns)
        out = np.zeros((n, self.width), dtype=np.float32)
        if self.numeric:
            values = np.column_stack([_floats(columns[c]) for c in self.numeric])
            scaled = (values - np.asarray(self.means)) / np.asarray(self.stds)
            out[:, :len(self.numeric)] = np.nan_to_num(scaled, nan=0.0)
        offset = len(self.numeric)
        for col in self.categorical:
            vocab = self.vocab[col]
            codes = self._index(col).get_indexer(_strings(columns[col])).astype(np.int64)
            codes[codes < 0] = len(vocab)  # unseen and null share the last slot
            out[np.arange(n), offset + codes] = 1.0
            offset += len(vocab) + 1
        return out


    def _index(self, column: str) -> pd.Index:
        """The column's vocabulary as an index, built once per vocabulary list (serving
        calls this per batch; a copy with another vocabulary builds its own)."""
        vocab = self.vocab[column]
        found = self._indexes.get(column)
        if found is None or found[0] is not vocab or len(found[1]) != len(vocab):
            found = self._indexes[column] = (vocab, pd.Index(vocab, dtype=object))
        return found[1]


def _rows_of(columns: Mapping[str, Any]) -> int:
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise InvalidInput(f"columns have different lengths {sorted(lengths)}", field="columns")
    return lengths.pop() if lengths else 0


def _floats(values: Any) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        return array.astype(np.float64, copy=False)
    return pd.to_numeric(pd.Series(array, dtype=object), errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan)


def _strings(values: Any) -> pd.Series:
    series = pd.Series(np.asarray(values, dtype=object), dtype=object)
    if pd.api.types.infer_dtype(series, skipna=False) == "string":
        return series
    return series.where(series.isna(), series.astype(str))
