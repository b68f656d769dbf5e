"""Fixed-horizon tests: two-proportion z-test (binary) and Welch's t-test (continuous).

Both work from per-arm totals (:mod:`mlray.abtest.arms`), two-sided, treatment against
control, ``diff = mean_treatment - mean_control``:

- z-test: the statistic uses the pooled proportion, as ``statsmodels.stats.proportion.
  proportions_ztest([x_t, x_c], [n_t, n_c])``; the interval for ``diff`` is the unpooled
  Wald interval, as ``confint_proportions_2indep(..., compare='diff', method='wald')``.
  (So in rare edge cases the test and the interval disagree at the margin, as in
  statsmodels.)
- Welch: ``scipy.stats.ttest_ind(t, c, equal_var=False)``, Welch-Satterthwaite degrees of
  freedom; the interval for ``diff`` uses the t quantile, as statsmodels' ``CompareMeans.
  tconfint_diff(usevar='unequal')``.
- Lift (``diff / mean_control``): the delta method on the log of the ratio of means,
  exponentiated (:func:`~mlray.abtest.arms.relative_interval`, normal quantile); for
  proportions it equals ``confint_proportions_2indep(..., compare='ratio', method='log')``.

Read them once, at the planned sample size (:mod:`mlray.abtest.power`): looking every day
and stopping at the first p < alpha inflates false positives well beyond alpha (see
``bench/abtest.py``); :mod:`mlray.abtest.sequential` is the test to peek at.

The ``*_arrays`` functions are the same formulas on numpy arrays, unchecked (for
simulations); the others validate their input and raise :class:`~mlray.errors.InvalidInput`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

from mlray._private.validation import boundary
from mlray.abtest._dist import norm_isf, norm_sf, t_isf, t_sf
from mlray.abtest.arms import (
    Alpha,
    BinaryArm,
    ComparisonResult,
    ContinuousArm,
    Interval,
    relative_interval,
)

__all__ = ["two_proportion_test", "welch_arrays", "welch_test", "z_test_arrays"]


def z_test_arrays(x_t: ArrayLike, n_t: ArrayLike, x_c: ArrayLike, n_c: ArrayLike
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Pooled two-proportion z statistic and two-sided p-value, elementwise.

    Where the pooled variance is zero (both arms all 0 or all 1) z is 0 and p is 1.
    """
    x_t, n_t, x_c, n_c = (np.asarray(a, dtype=np.float64) for a in (x_t, n_t, x_c, n_c))
    p_t, p_c = x_t / n_t, x_c / n_c
    pooled = (x_t + x_c) / (n_t + n_c)
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n_t + 1.0 / n_c))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (p_t - p_c) / np.where(se > 0, se, 1.0), 0.0)
    return z, 2.0 * norm_sf(np.abs(z))


def welch_arrays(mean_t: ArrayLike, var_t: ArrayLike, n_t: ArrayLike, mean_c: ArrayLike,
                 var_c: ArrayLike, n_c: ArrayLike
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's t statistic, degrees of freedom and two-sided p-value, elementwise.

    ``var_*`` are sample variances (``ddof = 1``). Where both variances are zero t is 0
    and p is 1.
    """
    mean_t, var_t, n_t, mean_c, var_c, n_c = (
        np.asarray(a, dtype=np.float64) for a in (mean_t, var_t, n_t, mean_c, var_c, n_c))
    a, b = var_t / n_t, var_c / n_c
    se2 = a + b
    ok = se2 > 0
    safe = np.where(ok, se2, 1.0)
    t = np.where(ok, (mean_t - mean_c) / np.sqrt(safe), 0.0)
    denom = a * a / (n_t - 1.0) + b * b / (n_c - 1.0)
    df = np.where(ok & (denom > 0), safe * safe / np.where(denom > 0, denom, 1.0), 1.0)
    return t, df, 2.0 * t_sf(np.abs(t), df)


def _neutral(method: str, kind: str, alpha: float, n_c: int, n_t: int, m_c: float,
             m_t: float) -> ComparisonResult:
    """The result when a test cannot run yet (an arm too small): p = 1, no intervals."""
    diff = m_t - m_c
    return ComparisonResult(method=method, kind=kind, alpha=alpha, n_control=n_c,
                            n_treatment=n_t, mean_control=m_c, mean_treatment=m_t,
                            diff=diff, diff_ci=None,
                            lift=(diff / m_c) if m_c else None, lift_ci=None,
                            statistic=None, p_value=1.0)


@boundary
def two_proportion_test(control: BinaryArm, treatment: BinaryArm,
                        alpha: Alpha = 0.05) -> ComparisonResult:
    """Two-proportion z-test with Wald and log-ratio intervals (see module docstring).

    An empty arm gives p = 1 and no intervals.

    Raises:
        InvalidInput: negative counts, successes above n, alpha outside (0, 1).
    """
    method = "two-proportion z-test"
    p_c, p_t = control.mean, treatment.mean
    if control.n == 0 or treatment.n == 0:
        return _neutral(method, "binary", alpha, control.n, treatment.n, p_c, p_t)
    z, p = z_test_arrays(treatment.successes, treatment.n, control.successes, control.n)
    zq = float(norm_isf(alpha / 2.0))
    var_t, var_c = treatment.variance, control.variance
    half = zq * math.sqrt(var_t / treatment.n + var_c / control.n)
    diff = p_t - p_c
    lift, lift_ci = relative_interval(p_t, var_t, treatment.n, p_c, var_c, control.n, zq)
    return ComparisonResult(method=method, kind="binary", alpha=alpha, n_control=control.n,
                            n_treatment=treatment.n, mean_control=p_c, mean_treatment=p_t,
                            diff=diff, diff_ci=Interval(low=diff - half, high=diff + half),
                            lift=lift, lift_ci=lift_ci, statistic=float(z),
                            p_value=float(p))


@boundary
def welch_test(control: ContinuousArm, treatment: ContinuousArm,
               alpha: Alpha = 0.05) -> ComparisonResult:
    """Welch's unequal-variance t-test with t and log-ratio intervals (module docstring).

    An arm with fewer than two values gives p = 1 and no intervals.

    Raises:
        InvalidInput: a negative n, inconsistent sums, alpha outside (0, 1).
    """
    method = "Welch t-test"
    m_c, m_t = control.mean, treatment.mean
    if control.n < 2 or treatment.n < 2:
        return _neutral(method, "continuous", alpha, control.n, treatment.n, m_c, m_t)
    var_t, var_c = treatment.variance, control.variance
    t, df, p = welch_arrays(m_t, var_t, treatment.n, m_c, var_c, control.n)
    diff = m_t - m_c
    se = math.sqrt(var_t / treatment.n + var_c / control.n)
    diff_ci = None
    if se > 0:
        half = float(t_isf(alpha / 2.0, float(df))) * se
        diff_ci = Interval(low=diff - half, high=diff + half)
    lift, lift_ci = relative_interval(m_t, var_t, treatment.n, m_c, var_c, control.n,
                                      float(norm_isf(alpha / 2.0)))
    return ComparisonResult(method=method, kind="continuous", alpha=alpha,
                            n_control=control.n, n_treatment=treatment.n, mean_control=m_c,
                            mean_treatment=m_t, diff=diff, diff_ci=diff_ci, lift=lift,
                            lift_ci=lift_ci, statistic=float(t), df=float(df),
                            p_value=float(p))
