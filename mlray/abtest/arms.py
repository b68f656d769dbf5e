"""Per-arm sufficient statistics and the result types every test returns.

A service keeps running totals per arm and hands them to the tests; no test needs the raw
rows. Binary metrics keep ``n`` and ``successes``; continuous ones keep ``n``, ``total``
(sum) and ``total_sq`` (sum of squares); CUPED adds the pre-period covariate's sums and
the cross product (:class:`CovariateArm`). Totals merge by addition (:meth:`merged`).

Variances: a binary arm's is ``p * (1 - p)`` (the plug-in Bernoulli variance, as
statsmodels' proportion tests use); a continuous arm's is the sample variance with
``ddof = 1`` (as scipy's and statsmodels' t-tests use), computed from the sums and clipped
at zero. Sums of squares lose precision when the mean is huge against the spread
(``|mean| / sd`` beyond about 1e6); centre such metrics before summing.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Alpha", "BinaryArm", "ComparisonResult", "ContinuousArm", "CovariateArm",
           "Interval", "MetricKind", "relative_interval"]

#: A significance level, strictly between 0 and 1.
Alpha = Annotated[float, Field(gt=0, lt=1, description="Significance level, in (0, 1).")]
MetricKind = Literal["binary", "continuous"]

_Count = Annotated[int, Field(ge=0, description="Number of units (users, requests) in the arm.")]


class BinaryArm(BaseModel):
    """One arm of a binary metric: units seen and units that converted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: _Count
    successes: int = Field(ge=0, description="Units with outcome 1 (at most n).")

    @model_validator(mode="after")
    def _successes_within_n(self) -> BinaryArm:
        if self.successes > self.n:
            raise ValueError(f"successes ({self.successes}) exceed n ({self.n})")
        return self

    @classmethod
    def from_values(cls, values: ArrayLike) -> BinaryArm:
        """Totals of a 0/1 array."""
        v = np.asarray(values)
        if v.size and not np.isin(v, (0, 1)).all():
            raise ValueError("binary values must be 0 or 1")
        return cls(n=int(v.size), successes=int(v.sum()))

    @property
    def mean(self) -> float:
        """The conversion rate (0 when the arm is empty)."""
        return self.successes / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """The plug-in Bernoulli variance ``p * (1 - p)``."""
        return self.mean * (1.0 - self.mean)

    def merged(self, other: BinaryArm) -> BinaryArm:
        """The totals of both (running totals add)."""
        return BinaryArm(n=self.n + other.n, successes=self.successes + other.successes)


class ContinuousArm(BaseModel):
    """One arm of a continuous metric: count, sum and sum of squares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: _Count
    total: float = Field(allow_inf_nan=False, description="Sum of the values.")
    total_sq: float = Field(ge=0, allow_inf_nan=False, description="Sum of squared values.")

    @model_validator(mode="after")
    def _consistent(self) -> ContinuousArm:
        if self.n == 0 and (self.total != 0 or self.total_sq != 0):
            raise ValueError("an empty arm (n=0) has total and total_sq 0")
        # Cauchy-Schwarz: total**2 <= n * total_sq (up to rounding)
        if self.total ** 2 > self.n * self.total_sq * (1 + 1e-9) + 1e-9:
            raise ValueError(f"total_sq ({self.total_sq}) is below total**2 / n: "
                             "not the sums of one set of values")
        return self

    @classmethod
    def from_values(cls, values: ArrayLike) -> ContinuousArm:
        """Totals of a float array."""
        v = np.asarray(values, dtype=np.float64)
        return cls(n=int(v.size), total=float(v.sum()), total_sq=float(np.dot(v, v)))

    @property
    def mean(self) -> float:
        """The arm's mean (0 when empty)."""
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        """Sample variance, ``ddof = 1`` (0 with fewer than two values)."""
        if self.n < 2:
            return 0.0
        return max(0.0, (self.total_sq - self.total * self.total / self.n) / (self.n - 1))

    def merged(self, other: ContinuousArm) -> ContinuousArm:
        """The totals of both (running totals add)."""
        return ContinuousArm(n=self.n + other.n, total=self.total + other.total,
                             total_sq=self.total_sq + other.total_sq)


class CovariateArm(BaseModel):
    """One arm of a metric ``y`` with a pre-period covariate ``x`` (for CUPED)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    y: ContinuousArm = Field(description="Totals of the metric in the experiment period.")
    x: ContinuousArm = Field(description="Totals of the same units' pre-period covariate.")
    total_xy: float = Field(allow_inf_nan=False, description="Sum of x * y over the units.")

    @model_validator(mode="after")
    def _same_units(self) -> CovariateArm:
        if self.y.n != self.x.n:
            raise ValueError(f"y.n ({self.y.n}) and x.n ({self.x.n}) differ: "
                             "x and y are measured on the same units")
        return self

    @classmethod
    def from_values(cls, y: ArrayLike, x: ArrayLike) -> CovariateArm:
        """Totals of paired arrays (one row per unit)."""
        yv, xv = np.asarray(y, dtype=np.float64), np.asarray(x, dtype=np.float64)
        if yv.shape != xv.shape:
            raise ValueError(f"y and x differ in shape: {yv.shape} vs {xv.shape}")
        return cls(y=ContinuousArm.from_values(yv), x=ContinuousArm.from_values(xv),
                   total_xy=float(np.dot(xv, yv)))

    @property
    def n(self) -> int:
        """Units in the arm."""
        return self.y.n

    def merged(self, other: CovariateArm) -> CovariateArm:
        """The totals of both (running totals add)."""
        return CovariateArm(y=self.y.merged(other.y), x=self.x.merged(other.x),
                            total_xy=self.total_xy + other.total_xy)


class Interval(BaseModel):
    """A two-sided interval ``[low, high]``."""

    model_config = ConfigDict(frozen=True)

    low: float
    high: float

    def contains(self, value: float) -> bool:
        """Whether ``value`` lies in the closed interval."""
        return self.low <= value <= self.high


class ComparisonResult(BaseModel):
    """Treatment against control on one metric: effect, intervals, evidence.

    ``diff`` is ``mean_treatment - mean_control``; ``lift`` is ``diff / mean_control``.
    ``p_value`` is two-sided. A sequential test also sets ``e_value`` (its p-value is then
    always valid: ``min(1, 1 / e)``, at any number of looks).
    """

    model_config = ConfigDict(frozen=True)

    method: str = Field(description="Which test produced the numbers.")
    kind: MetricKind
    alpha: float
    n_control: int
    n_treatment: int
    mean_control: float
    mean_treatment: float
    diff: float
    diff_ci: Interval | None = Field(description="Interval for diff at 1 - alpha "
                                                 "(None when undefined, e.g. no variance).")
    lift: float | None = Field(description="diff / mean_control (None when that is 0).")
    lift_ci: Interval | None = Field(description="Interval for lift (None when undefined).")
    statistic: float | None = Field(None, description="z or t statistic (fixed-horizon).")
    df: float | None = Field(None, description="Degrees of freedom (Welch).")
    p_value: float
    e_value: float | None = Field(None, description="Evidence against no difference "
                                                    "(sequential); rejects at >= 1/alpha.")

    @property
    def significant(self) -> bool:
        """Whether the test rejects 'no difference' at ``alpha``."""
        return self.p_value <= self.alpha


def relative_interval(mean_t: float, var_t: float, n_t: int, mean_c: float, var_c: float,
                      n_c: int, z: float) -> tuple[float | None, Interval | None]:
    """Lift and its interval by the delta method on ``log(mean_t / mean_c)``.

    ``var(log mean) ~ var / (n * mean**2)`` per arm; the interval is exponentiated, minus 1
    (asymmetric). For proportions this is statsmodels' ``confint_proportions_2indep(...,
    compare='ratio', method='log')``. Undefined (None) unless both means are positive.
    """
    lift = (mean_t / mean_c - 1.0) if mean_c != 0 else None
    if mean_t <= 0 or mean_c <= 0 or n_t == 0 or n_c == 0:
        return lift, None
    se = math.sqrt(var_t / (n_t * mean_t ** 2) + var_c / (n_c * mean_c ** 2))
    log_ratio = math.log(mean_t / mean_c)
    return lift, Interval(low=math.exp(log_ratio - z * se) - 1.0,
                          high=math.exp(log_ratio + z * se) - 1.0)
