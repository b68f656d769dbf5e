"""Sample-ratio mismatch: do the arms' unit counts match the configured traffic split?

A chi-square goodness-of-fit test of the observed counts against ``total * share``
(``scipy.stats.chisquare``), with ``k - 1`` degrees of freedom. A mismatch (p below
:data:`SRM_THRESHOLD`, 0.001 by convention) means assignment or logging is broken and the
experiment's numbers cannot be trusted, whatever they say.
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator
from scipy import stats as sps

from mlray._private.validation import build
from mlray.errors import InvalidInput

__all__ = ["SRM_THRESHOLD", "SrmInput", "SrmResult", "sample_ratio_mismatch"]

#: An SRM is flagged below this p-value.
SRM_THRESHOLD = 0.001
_SUM_TOLERANCE = 1e-6


class SrmInput(BaseModel):
    """Observed units per arm and the configured share of each arm."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    counts: dict[str, Annotated[int, Field(ge=0)]] = Field(
        description="Arm -> units assigned (non-negative).")
    weights: dict[str, Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(
        description="Arm -> configured share; positive, summing to 1.")
    threshold: float = Field(SRM_THRESHOLD, gt=0, lt=1,
                             description="Flag a mismatch when p is below this.")

    @field_validator("weights")
    @classmethod
    def _shares(cls, weights: dict[str, float]) -> dict[str, float]:
        if len(weights) < 2:
            raise ValueError("an experiment has at least two arms")
        total = sum(weights.values())
        if abs(total - 1.0) > _SUM_TOLERANCE:
            raise ValueError(f"weights must sum to 1 (got {total:g}); percentages: divide "
                             "by 100")
        return weights


class SrmResult(BaseModel):
    """The goodness-of-fit test and whether it flags a mismatch."""

    model_config = ConfigDict(frozen=True)

    statistic: float
    df: int
    p_value: float
    flagged: bool = Field(description="p_value < threshold: the split is broken.")
    threshold: float
    observed: dict[str, int]
    expected: dict[str, float]


def sample_ratio_mismatch(counts: dict[str, int], weights: dict[str, float],
                          threshold: float = SRM_THRESHOLD) -> SrmResult:
    """Chi-square test of ``counts`` against the split ``weights`` (shares summing to 1).

    Raises:
        InvalidInput: a negative count, a non-positive weight, weights not summing to 1,
            arms that differ between counts and weights, a threshold outside (0, 1).
    """
    spec = build(SrmInput, counts=counts, weights=weights, threshold=threshold)
    if set(spec.counts) != set(spec.weights):
        raise InvalidInput(f"counts name arms {sorted(spec.counts)} but weights name "
                           f"{sorted(spec.weights)}", field="counts")
    arms = sorted(spec.weights)
    total = sum(spec.counts.values())
    expected = {a: total * spec.weights[a] for a in arms}
    if total == 0:
        return SrmResult(statistic=0.0, df=len(arms) - 1, p_value=1.0, flagged=False,
                         threshold=spec.threshold, observed=dict(spec.counts),
                         expected=expected)
    res = sps.chisquare([spec.counts[a] for a in arms], [expected[a] for a in arms])
    p = float(res.pvalue)
    return SrmResult(statistic=float(res.statistic), df=len(arms) - 1,
                     p_value=p if math.isfinite(p) else 0.0, flagged=p < spec.threshold,
                     threshold=spec.threshold, observed=dict(spec.counts), expected=expected)
