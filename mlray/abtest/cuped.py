"""CUPED: variance reduction with a pre-period covariate (Deng et al., 2013).

Each unit's metric ``y`` is adjusted by the same unit's pre-experiment covariate ``x``
(usually the same metric, measured before assignment):

    y_adj = y - theta * (x - mean_x),  theta = cov(y, x) / var(x)

with ``theta`` and ``mean_x`` pooled across the arms (computed on all units together,
from the arms' summed totals), so every arm is adjusted by the same line. Because ``x``
was measured before assignment it does not depend on the arm: the adjusted difference of
means estimates the same effect, with its variance cut by about ``1 - corr(x, y)**2``.
The adjusted totals are exact (not an approximation): :func:`cuped_test` equals Welch's
t-test on the adjusted values themselves.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from mlray._private.validation import boundary
from mlray.abtest.arms import Alpha, ComparisonResult, ContinuousArm, CovariateArm
from mlray.abtest.stats import welch_test
from mlray.errors import InvalidInput

__all__ = ["CupedResult", "adjust", "cuped_test", "pooled_theta"]


def pooled_theta(arms: list[CovariateArm]) -> tuple[float, float]:
    """``(theta, mean_x)`` over all units of ``arms`` (theta 0 when x does not vary)."""
    n = sum(a.n for a in arms)
    if n < 2:
        return 0.0, (sum(a.x.total for a in arms) / n if n else 0.0)
    sx = sum(a.x.total for a in arms)
    sy = sum(a.y.total for a in arms)
    sxx = sum(a.x.total_sq for a in arms)
    sxy = sum(a.total_xy for a in arms)
    var_x = sxx - sx * sx / n
    cov_xy = sxy - sx * sy / n
    return (cov_xy / var_x if var_x > 0 else 0.0), sx / n


def adjust(arm: CovariateArm, theta: float, mean_x: float) -> ContinuousArm:
    """The totals of ``y - theta * (x - mean_x)`` over the arm's units."""
    n, sy, sx = arm.n, arm.y.total, arm.x.total
    dx_sum = sx - n * mean_x  # sum of (x - mean_x)
    dx_sq = arm.x.total_sq - 2.0 * mean_x * sx + n * mean_x * mean_x  # sum of (x - mean_x)^2
    y_dx = arm.total_xy - mean_x * sy  # sum of y * (x - mean_x)
    total = sy - theta * dx_sum
    total_sq = arm.y.total_sq - 2.0 * theta * y_dx + theta * theta * dx_sq
    # rounding can leave total_sq a hair below total**2 / n when the spread is tiny
    return ContinuousArm(n=n, total=total,
                         total_sq=max(total_sq, total * total / n if n else 0.0))


class CupedResult(BaseModel):
    """Welch's test on the CUPED-adjusted metric, and how much variance it removed."""

    model_config = ConfigDict(frozen=True)

    theta: float = Field(description="cov(y, x) / var(x), pooled across the arms.")
    mean_x: float = Field(description="The covariate's mean over all units.")
    variance_ratio: float = Field(description="Variance of the adjusted difference of means "
                                              "over the unadjusted one (about 1 - rho^2).")
    control: ContinuousArm = Field(description="The control arm's adjusted totals.")
    treatment: ContinuousArm = Field(description="The treatment arm's adjusted totals.")
    result: ComparisonResult = Field(description="Welch's test on the adjusted totals.")


@boundary
def cuped_test(control: CovariateArm, treatment: CovariateArm,
               alpha: Alpha = 0.05) -> CupedResult:
    """Adjust both arms with the pooled theta and run Welch's t-test on them.

    Raises:
        InvalidInput: bad totals (x and y counts differing, negative n), an arm with fewer
            than two units, alpha outside (0, 1).
    """
    for name, arm in (("control", control), ("treatment", treatment)):
        if arm.n < 2:
            raise InvalidInput(f"{name}: CUPED needs at least two units per arm "
                               f"(got {arm.n})", field=f"{name}.y.n")
    theta, mean_x = pooled_theta([control, treatment])
    adj_c, adj_t = adjust(control, theta, mean_x), adjust(treatment, theta, mean_x)
    raw = treatment.y.variance / treatment.n + control.y.variance / control.n
    new = adj_t.variance / adj_t.n + adj_c.variance / adj_c.n
    result = welch_test(adj_c, adj_t, alpha=alpha)
    return CupedResult(theta=theta, mean_x=mean_x,
                       variance_ratio=new / raw if raw > 0 else 1.0, control=adj_c,
                       treatment=adj_t,
                       result=result.model_copy(update={"method": "Welch t-test (CUPED)"}))
