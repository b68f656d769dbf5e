"""Sample size per arm, up front, for a two-sided fixed-horizon test.

The minimum effect is explicit about its scale: ``effect="absolute"`` means the treatment
mean is ``baseline + min_effect`` (percentage points for a rate: 0.01 is one point);
``effect="relative"`` means ``baseline * (1 + min_effect)`` (0.05 is a 5% lift).

The standardised effect is Cohen's h for proportions, ``2 asin(sqrt p_t) - 2 asin(sqrt
p_c)`` (``statsmodels.stats.proportion.proportion_effectsize``), and Cohen's d for a
continuous metric, ``diff / sd``. The size solves the normal power equation with both
tails counted, exactly as ``statsmodels.stats.power.NormalIndPower().solve_power`` (and
``zt_ind_solve_power``) do, then rounds up (at least 2 per arm); ``ratio`` is treatment
units per control unit. A size is per comparison: with several treatments or metrics
corrected together, plan with the corrected alpha (e.g. alpha / comparisons).
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from scipy import optimize

from mlray._private.validation import boundary
from mlray.abtest._dist import norm_cdf, norm_isf, norm_sf
from mlray.abtest.arms import Alpha
from mlray.errors import InvalidInput

__all__ = ["EffectScale", "SampleSize", "normal_power", "sample_size_binary",
           "sample_size_continuous", "solve_nobs"]

EffectScale = Literal["absolute", "relative"]
_Power = Annotated[float, Field(gt=0, lt=1, description="Chance to detect the effect.")]
_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def normal_power(effect_size: float, nobs1: float, alpha: float, ratio: float = 1.0) -> float:
    """Power of the two-sided z-test with ``nobs1`` control and ``nobs1 * ratio`` treatment."""
    nobs = 1.0 / (1.0 / nobs1 + 1.0 / (nobs1 * ratio))
    crit = norm_isf(alpha / 2.0)
    shift = abs(effect_size) * math.sqrt(nobs)
    return float(norm_sf(crit - shift) + norm_cdf(-crit - shift))


def solve_nobs(effect_size: float, alpha: float, power: float, ratio: float = 1.0) -> float:
    """Control units (unrounded) for which :func:`normal_power` equals ``power``."""
    d = abs(effect_size)
    z = norm_isf(alpha / 2.0) + norm_isf(1.0 - power)
    guess = (1.0 + 1.0 / ratio) * (z / d) ** 2  # one tail only: a close lower bound

    def gap(n: float) -> float:
        return normal_power(d, n, alpha, ratio) - power

    low = max(guess * 0.5, 1e-9)
    if gap(low) >= 0:  # tiny samples (huge effects): the second tail matters
        low = 1e-9
    high = max(guess * 2.0, 2.0)
    while gap(high) < 0:
        high *= 2.0
    return float(optimize.brentq(gap, low, high, xtol=1e-12, rtol=1e-14, maxiter=500))


class SampleSize(BaseModel):
    """Units needed per arm to detect the minimum effect."""

    model_config = ConfigDict(frozen=True)

    control: int = Field(description="Units in the control arm (rounded up).")
    treatment: int = Field(description="Units in the treatment arm (rounded up).")
    total: int
    exact: float = Field(description="The unrounded control size.")
    effect_size: float = Field(description="Standardised effect: Cohen's h or d.")
    baseline: float
    target: float = Field(description="The treatment mean the size is planned to detect.")
    alpha: float
    power: float


def _result(effect_size: float, baseline: float, target: float, alpha: float,
            power: float, ratio: float) -> SampleSize:
    if effect_size == 0:
        raise InvalidInput("min_effect: an effect of zero cannot be detected",
                           field="min_effect")
    exact = solve_nobs(effect_size, alpha, power, ratio)
    # at least two per arm (a variance needs two); 1e-9 absorbs root-finding noise
    control = max(2, math.ceil(exact - 1e-9))
    treatment = max(2, math.ceil(exact * ratio - 1e-9))
    return SampleSize(control=control, treatment=treatment, total=control + treatment,
                      exact=exact, effect_size=effect_size, baseline=baseline,
                      target=target, alpha=alpha, power=power)


def _target(baseline: float, min_effect: float, effect: EffectScale) -> float:
    return baseline + min_effect if effect == "absolute" else baseline * (1.0 + min_effect)


@boundary
def sample_size_binary(baseline: Annotated[float, Field(gt=0, lt=1)],
                       min_effect: Annotated[float, Field(allow_inf_nan=False)],
                       effect: EffectScale = "absolute", alpha: Alpha = 0.05,
                       power: _Power = 0.8, ratio: _Positive = 1.0) -> SampleSize:
    """Units per arm for a conversion rate ``baseline`` and a ``min_effect`` to detect.

    Raises:
        InvalidInput: baseline outside (0, 1), a target rate outside (0, 1), a zero
            effect, alpha or power outside (0, 1), ratio <= 0.
    """
    target = _target(baseline, min_effect, effect)
    if not 0.0 < target < 1.0:
        raise InvalidInput(f"min_effect: the target rate {target:g} is outside (0, 1)",
                           field="min_effect")
    h = 2.0 * math.asin(math.sqrt(target)) - 2.0 * math.asin(math.sqrt(baseline))
    return _result(h, baseline, target, alpha, power, ratio)


@boundary
def sample_size_continuous(baseline: Annotated[float, Field(allow_inf_nan=False)],
                           sd: _Positive,
                           min_effect: Annotated[float, Field(allow_inf_nan=False)],
                           effect: EffectScale = "absolute", alpha: Alpha = 0.05,
                           power: _Power = 0.8, ratio: _Positive = 1.0) -> SampleSize:
    """Units per arm for a metric of mean ``baseline`` and standard deviation ``sd``.

    Raises:
        InvalidInput: sd <= 0, a zero effect (or a relative one on a zero baseline),
            alpha or power outside (0, 1), ratio <= 0.
    """
    target = _target(baseline, min_effect, effect)
    return _result((target - baseline) / sd, baseline, target, alpha, power, ratio)
