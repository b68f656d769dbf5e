"""CUPED from totals equals Welch's t-test on the adjusted values themselves."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from mlray.abtest.arms import CovariateArm
from mlray.abtest.cuped import cuped_test, pooled_theta
from mlray.errors import InvalidInput


def _experiment(rng, n_c, n_t, rho, effect):
    """Pre-period x and in-period y with correlation ~rho; the treatment adds ``effect``."""
    x_c, x_t = rng.normal(50, 10, n_c), rng.normal(50, 10, n_t)

    def y(x):
        noise = rng.normal(0, 10 * np.sqrt(1 - rho**2), x.size)
        return 20 + rho * (x - 50) + noise

    return x_c, y(x_c), x_t, y(x_t) + effect


@pytest.mark.parametrize(("n_c", "n_t", "rho", "effect"), [
    (1000, 1000, 0.7, 0.5), (400, 650, 0.3, 0.0), (3000, 2800, 0.9, -0.8)])
def test_cuped_equals_welch_on_adjusted_values(n_c, n_t, rho, effect):
    rng = np.random.default_rng(n_c + n_t)
    x_c, y_c, x_t, y_t = _experiment(rng, n_c, n_t, rho, effect)
    r = cuped_test(CovariateArm.from_values(y_c, x_c), CovariateArm.from_values(y_t, x_t))
    x_all, y_all = np.concatenate([x_c, x_t]), np.concatenate([y_c, y_t])
    theta = np.cov(y_all, x_all)[0, 1] / np.var(x_all, ddof=1)
    assert r.theta == pytest.approx(theta, rel=1e-9)
    assert r.mean_x == pytest.approx(x_all.mean(), rel=1e-12)
    adj_c = y_c - theta * (x_c - x_all.mean())
    adj_t = y_t - theta * (x_t - x_all.mean())
    want = sps.ttest_ind(adj_t, adj_c, equal_var=False)
    assert r.result.statistic == pytest.approx(want.statistic, rel=1e-8)
    assert r.result.p_value == pytest.approx(want.pvalue, rel=1e-7, abs=1e-300)
    assert r.result.diff == pytest.approx(adj_t.mean() - adj_c.mean(), rel=1e-9, abs=1e-12)
    assert r.control.variance == pytest.approx(adj_c.var(ddof=1), rel=1e-8)
    raw = y_t.var(ddof=1) / n_t + y_c.var(ddof=1) / n_c
    new = adj_t.var(ddof=1) / n_t + adj_c.var(ddof=1) / n_c
    assert r.variance_ratio == pytest.approx(new / raw, rel=1e-8)
    assert r.variance_ratio == pytest.approx(1 - rho**2, abs=0.06)
    assert r.result.method == "Welch t-test (CUPED)"


def test_cuped_narrows_the_interval_around_the_same_effect():
    from mlray.abtest.arms import ContinuousArm
    from mlray.abtest.stats import welch_test

    rng = np.random.default_rng(9)
    x_c, y_c, x_t, y_t = _experiment(rng, 2000, 2000, 0.8, 0.6)
    plain = welch_test(ContinuousArm.from_values(y_c), ContinuousArm.from_values(y_t))
    cuped = cuped_test(CovariateArm.from_values(y_c, x_c), CovariateArm.from_values(y_t, x_t))
    width = cuped.result.diff_ci.high - cuped.result.diff_ci.low
    assert width < 0.7 * (plain.diff_ci.high - plain.diff_ci.low)
    assert cuped.result.p_value < plain.p_value
    assert cuped.result.diff_ci.contains(0.6)


def test_constant_covariate_changes_nothing():
    rng = np.random.default_rng(1)
    y_c, y_t = rng.normal(size=50), rng.normal(size=60)
    arms = [CovariateArm.from_values(y_c, np.ones(50)), CovariateArm.from_values(y_t, np.ones(60))]
    assert pooled_theta(arms) == (0.0, 1.0)
    r = cuped_test(*arms)
    assert r.variance_ratio == pytest.approx(1.0)
    assert r.result.p_value == pytest.approx(sps.ttest_ind(y_t, y_c, equal_var=False).pvalue)


def test_bad_covariate_input_names_the_field():
    with pytest.raises(InvalidInput) as info:
        cuped_test({"y": {"n": 3, "total": 3.0, "total_sq": 3.0},
                    "x": {"n": 2, "total": 2.0, "total_sq": 2.0}, "total_xy": 3.0},
                   CovariateArm.from_values([1.0, 2.0], [1.0, 2.0]))
    assert info.value.field == "control"
    with pytest.raises(InvalidInput) as info:
        cuped_test(CovariateArm.from_values([1.0], [1.0]),
                   CovariateArm.from_values([1.0, 2.0], [1.0, 2.0]))
    assert info.value.field == "control.y.n"
    with pytest.raises(ValueError, match="shape"):
        CovariateArm.from_values([1.0, 2.0], [1.0])
