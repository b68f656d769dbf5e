"""The training baseline that drift detection compares live traffic against.

Per numeric feature: quantile bin edges with the count of training rows in each bin,
mean, std, min, max and null rate. Per categorical feature: category frequencies and
null rate. And the same numeric profile of the model's predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

__all__ = ["Baseline", "CategoricalProfile", "NumericProfile", "profile_frame",
           "profile_numeric"]


class NumericProfile(BaseModel):
    """Distribution of one numeric column."""

    edges: list[float] = Field(description="Bin edges (len = bins + 1), from quantiles.")
    counts: list[int] = Field(description="Rows per bin; the outer bins are open-ended.")
    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    null_rate: float


class CategoricalProfile(BaseModel):
    """Distribution of one categorical column."""

    frequencies: dict[str, float]
    null_rate: float


class Baseline(BaseModel):
    """What the training data and the model's predictions on it looked like."""

    rows: int
    numeric: dict[str, NumericProfile] = Field(default_factory=dict)
    categorical: dict[str, CategoricalProfile] = Field(default_factory=dict)
    predictions: NumericProfile | None = None


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def profile_numeric(values: np.ndarray | pd.Series, bins: int = 10) -> NumericProfile:
    """Quantile bins and summary statistics of one column (nulls counted, not binned)."""
    data = pd.to_numeric(pd.Series(values), errors="coerce").astype(float)
    data = data.where(np.isfinite(data))  # infinities count as missing, like NaN
    present = data.dropna().to_numpy()
    null_rate = float(data.isna().mean()) if len(data) else 0.0
    if len(present) == 0:
        return NumericProfile(edges=[], counts=[], mean=None, std=None, min=None, max=None,
                              null_rate=null_rate)
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    inner = edges[1:-1]
    counts = np.bincount(np.searchsorted(inner, present, side="right"),
                         minlength=len(edges) - 1)
    return NumericProfile(edges=[float(e) for e in edges], counts=[int(c) for c in counts],
                          mean=_num(present.mean()), std=_num(present.std()),
                          min=_num(present.min()), max=_num(present.max()), null_rate=null_rate)


def profile_frame(frame: pd.DataFrame, numeric: list[str], categorical: list[str],
                  predictions: np.ndarray | None = None, bins: int = 10) -> Baseline:
    """The baseline of ``frame`` (the training split) and, optionally, predictions on it."""
    cats = {}
    for col in categorical:
        series = frame[col]
        freq = series.dropna().astype(str).value_counts(normalize=True)
        cats[col] = CategoricalProfile(frequencies={str(k): float(v) for k, v in freq.items()},
                                       null_rate=float(series.isna().mean()))
    return Baseline(
        rows=len(frame),
        numeric={col: profile_numeric(frame[col], bins) for col in numeric},
        categorical=cats,
        predictions=None if predictions is None else profile_numeric(predictions, bins),
    )
