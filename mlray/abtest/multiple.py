"""Corrections for testing several metrics at once: Holm (FWER) and Benjamini-Hochberg (FDR).

Both return adjusted p-values (compare each with alpha) in the input order, equal to
``statsmodels.stats.multitest.multipletests(p, alpha, method='holm' | 'fdr_bh')``:

- Holm: step-down Bonferroni; controls the chance of any false positive (family-wise
  error), under any dependence between the metrics. The safe default for a decision.
- Benjamini-Hochberg: step-up; controls the expected share of false positives among the
  metrics called significant (false discovery rate), valid for independent or positively
  dependent tests. More power with many secondary metrics.

Always-valid (sequential) p-values can go through either: the correction is applied to
each look's p-values.
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlray._private.validation import boundary
from mlray.abtest.arms import Alpha

__all__ = ["Correction", "CorrectionResult", "adjust_p_values", "benjamini_hochberg", "holm"]

Correction = Literal["holm", "bh", "none"]
_P = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values, in the input order (unchecked; see :func:`adjust_p_values`)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def benjamini_hochberg(p_values: list[float] | np.ndarray) -> np.ndarray:
    """BH-adjusted p-values (q-values), in the input order (unchecked)."""
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    stepped = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


class CorrectionResult(BaseModel):
    """Adjusted p-values per metric and which metrics are significant after correction."""

    model_config = ConfigDict(frozen=True)

    method: Correction
    alpha: float
    adjusted: dict[str, float]
    significant: dict[str, bool]


@boundary
def adjust_p_values(p_values: dict[str, _P], method: Correction = "holm",
                    alpha: Alpha = 0.05) -> CorrectionResult:
    """Correct the metrics' p-values (metric name -> p) for testing them together.

    Raises:
        InvalidInput: a p-value outside [0, 1], an unknown method, alpha outside (0, 1).
    """
    names = list(p_values)
    raw = np.array([p_values[n] for n in names], dtype=np.float64)
    adj = {"holm": holm, "bh": benjamini_hochberg}.get(method, lambda p: p)(raw)
    adjusted = {n: float(a) for n, a in zip(names, adj, strict=True)}
    return CorrectionResult(method=method, alpha=alpha, adjusted=adjusted,
                            significant={n: a <= alpha for n, a in adjusted.items()})
