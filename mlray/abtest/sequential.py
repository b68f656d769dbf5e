"""Always-valid sequential test: the mixture SPRT (mSPRT) of Johari et al. (2017/2022).

Look at the results as often as you like and stop the first time the test says so: the
chance of ever rejecting when the arms are the same stays at or below ``alpha``.

With ``diff = mean_t - mean_c`` and ``V = var_t / n_t + var_c / n_c`` (the variance of
``diff``; plug-in: ``p (1 - p)`` per binary arm, the sample variance per continuous arm),
and a normal mixing distribution ``N(0, tau**2)`` over the true difference, the mixture
likelihood ratio against "no difference" is

    e = sqrt(V / (V + tau**2)) * exp(diff**2 * tau**2 / (2 V (V + tau**2)))

a non-negative martingale under the null (an e-value), so by Ville's inequality
``P(sup_n e_n >= 1/alpha) <= alpha``. The always-valid p-value is ``min(1, 1/e)``,
taken as the running minimum over the looks; the always-valid interval is the set of
differences ``d`` the same test would not reject (``diff`` replaced by ``diff - d``):

    diff +/- sqrt(V (V + tau**2) / tau**2 * (2 log(1/alpha) + log((V + tau**2) / V)))

intersected over the looks (:class:`SequentialTest`). Each single interval is already a
confidence sequence; the intersection is tighter and stays valid.

``tau`` (``mixture_sd``) is in the metric's units: set it to the difference you hope to
detect (the experiment's minimum effect, absolute): the test has most power near it. The
variance is estimated (the normal approximation to the mean); ``min_samples`` per arm
(100 by default) keeps the first looks from resting on a poor variance estimate.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from numpy.typing import ArrayLike
from pydantic import BaseModel, ConfigDict, Field

from mlray._private.validation import boundary, build
from mlray.abtest.arms import Alpha, BinaryArm, ComparisonResult, ContinuousArm, Interval
from mlray.errors import InvalidInput

__all__ = ["SequentialSettings", "SequentialState", "SequentialTest", "msprt_half_width",
           "msprt_log_e", "msprt_test"]

DEFAULT_MIN_SAMPLES = 100


def msprt_log_e(diff: ArrayLike, variance: ArrayLike, mixture_sd: float,
                null: float = 0.0) -> np.ndarray:
    """``log e`` of the normal-mixture SPRT, elementwise (0 where ``variance`` is 0)."""
    d = np.asarray(diff, dtype=np.float64) - null
    v = np.asarray(variance, dtype=np.float64)
    tau2 = float(mixture_sd) ** 2
    ok = v > 0
    vs = np.where(ok, v, 1.0)
    log_e = 0.5 * np.log(vs / (vs + tau2)) + d * d * tau2 / (2.0 * vs * (vs + tau2))
    return np.where(ok, log_e, 0.0)


def msprt_half_width(variance: ArrayLike, mixture_sd: float, alpha: float) -> np.ndarray:
    """Half-width of the always-valid interval at one look, elementwise (inf where V = 0)."""
    v = np.asarray(variance, dtype=np.float64)
    tau2 = float(mixture_sd) ** 2
    ok = v > 0
    vs = np.where(ok, v, 1.0)
    half = np.sqrt(vs * (vs + tau2) / tau2 * (2.0 * math.log(1.0 / alpha)
                                               + np.log((vs + tau2) / vs)))
    return np.where(ok, half, np.inf)


@boundary
def msprt_test(control: BinaryArm | ContinuousArm, treatment: BinaryArm | ContinuousArm,
               mixture_sd: Annotated[float, Field(gt=0, allow_inf_nan=False)],
               alpha: Alpha = 0.05,
               min_samples: Annotated[int, Field(ge=2)] = DEFAULT_MIN_SAMPLES
               ) -> ComparisonResult:
    """One look of the mSPRT (module docstring): e-value, p = min(1, 1/e), interval.

    This is the look on its own; :class:`SequentialTest` carries the running minimum
    p-value and the intersected interval between looks. Before both arms have
    ``min_samples`` units, e = 1, p = 1 and there is no interval.

    Raises:
        InvalidInput: bad totals, mixture_sd <= 0, alpha outside (0, 1), arms of
            different kinds.
    """
    if type(control) is not type(treatment):
        raise InvalidInput("control and treatment must both be binary or both continuous",
                           field="treatment")
    kind = "binary" if isinstance(control, BinaryArm) else "continuous"
    m_c, m_t = control.mean, treatment.mean
    diff = m_t - m_c
    lift = diff / m_c if m_c else None
    base = dict(method="mSPRT (normal mixture)", kind=kind, alpha=alpha,
                n_control=control.n, n_treatment=treatment.n, mean_control=m_c,
                mean_treatment=m_t, diff=diff, lift=lift, lift_ci=None)
    if min(control.n, treatment.n) < min_samples:
        return ComparisonResult(**base, diff_ci=None, p_value=1.0, e_value=1.0)
    v = treatment.variance / treatment.n + control.variance / control.n
    log_e = float(msprt_log_e(diff, v, mixture_sd))
    e = math.exp(min(log_e, 700.0))
    half = float(msprt_half_width(v, mixture_sd, alpha))
    ci = Interval(low=diff - half, high=diff + half) if math.isfinite(half) else None
    return ComparisonResult(**base, diff_ci=ci, p_value=min(1.0, math.exp(-log_e)), e_value=e)


class SequentialState(BaseModel):
    """What a sequential test carries between looks (persist it with the experiment)."""

    model_config = ConfigDict(extra="forbid")

    looks: int = Field(0, ge=0, description="Looks taken so far.")
    p_value: float = Field(1.0, ge=0, le=1, description="Running minimum p-value.")
    max_e_value: float = Field(1.0, ge=0, description="Largest e-value seen.")
    low: float = Field(-math.inf, description="Running intersection of the intervals.")
    high: float = Field(math.inf, description="Running intersection of the intervals.")


class SequentialSettings(BaseModel):
    """The settings of a sequential test (fixed for its whole run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mixture_sd: float = Field(gt=0, allow_inf_nan=False,
                              description="Mixing sd: the effect to detect, absolute.")
    alpha: Alpha = 0.05
    min_samples: int = Field(DEFAULT_MIN_SAMPLES, ge=2,
                             description="Units per arm before a look counts.")


class SequentialTest:
    """An mSPRT experiment across looks: running minimum p-value, intersected interval.

    Args:
        mixture_sd: the mixing distribution's standard deviation (the effect to detect,
            absolute, in the metric's units).
        alpha: the type-I error kept across all looks.
        min_samples: per arm, before which a look counts for nothing.
        state: a persisted :class:`SequentialState` to resume from.
    """

    def __init__(self, mixture_sd: float, alpha: float = 0.05,
                 min_samples: int = DEFAULT_MIN_SAMPLES,
                 state: SequentialState | None = None) -> None:
        settings = build(SequentialSettings, mixture_sd=mixture_sd, alpha=alpha,
                         min_samples=min_samples)
        self.mixture_sd = settings.mixture_sd
        self.alpha = settings.alpha
        self.min_samples = settings.min_samples
        self.state = state.model_copy() if state else SequentialState()

    def look(self, control: BinaryArm | ContinuousArm,
             treatment: BinaryArm | ContinuousArm) -> ComparisonResult:
        """Test the current totals; fold them into the running p-value and interval.

        If the data moved so far that the intersection would be empty (the arms' true
        difference changed during the test), the latest interval is kept instead.
        """
        now = msprt_test(control, treatment, mixture_sd=self.mixture_sd, alpha=self.alpha,
                         min_samples=self.min_samples)
        s = self.state
        s.looks += 1
        s.p_value = min(s.p_value, now.p_value)
        s.max_e_value = max(s.max_e_value, now.e_value or 1.0)
        if now.diff_ci is not None:
            low, high = max(s.low, now.diff_ci.low), min(s.high, now.diff_ci.high)
            if low > high:
                low, high = now.diff_ci.low, now.diff_ci.high
            s.low, s.high = low, high
        ci = Interval(low=s.low, high=s.high) if math.isfinite(s.high - s.low) else None
        return now.model_copy(update={"p_value": s.p_value, "diff_ci": ci})

    @property
    def rejected(self) -> bool:
        """Whether any look so far rejected 'no difference' (stays true once true)."""
        return self.state.p_value <= self.alpha
