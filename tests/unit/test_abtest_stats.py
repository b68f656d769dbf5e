"""Fixed-horizon tests and SRM equal statsmodels and scipy on the same data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from mlray.abtest.arms import BinaryArm, ContinuousArm, CovariateArm
from mlray.abtest.srm import sample_ratio_mismatch
from mlray.abtest.stats import two_proportion_test, welch_test, z_test_arrays
from mlray.errors import InvalidInput

PROPORTIONS = [  # (x_c, n_c, x_t, n_t)
    (100, 1000, 130, 1000),
    (480, 5000, 455, 4900),
    (7, 60, 19, 75),
    (3000, 100000, 3150, 99000),
]


@pytest.mark.parametrize(("x_c", "n_c", "x_t", "n_t"), PROPORTIONS)
@pytest.mark.parametrize("alpha", [0.05, 0.01])
def test_two_proportion_test_equals_statsmodels(x_c, n_c, x_t, n_t, alpha):
    r = two_proportion_test(BinaryArm(n=n_c, successes=x_c),
                            BinaryArm(n=n_t, successes=x_t), alpha=alpha)
    z, p = proportions_ztest([x_t, x_c], [n_t, n_c])
    assert r.statistic == pytest.approx(z, rel=1e-12)
    assert r.p_value == pytest.approx(p, rel=1e-10)
    assert r.diff == pytest.approx(x_t / n_t - x_c / n_c, rel=1e-12)
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald",
                                           compare="diff", alpha=alpha)
    assert (r.diff_ci.low, r.diff_ci.high) == pytest.approx((low, high), rel=1e-12)
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="log",
                                           compare="ratio", alpha=alpha)
    assert r.lift == pytest.approx((x_t / n_t) / (x_c / n_c) - 1, rel=1e-12)
    assert (r.lift_ci.low, r.lift_ci.high) == pytest.approx((low - 1, high - 1), rel=1e-10)
    assert r.significant == (p <= alpha)


def test_z_test_degenerate_and_empty_arms():
    z, p = z_test_arrays(0, 100, 0, 100)  # no variance at all: no evidence
    assert (float(z), float(p)) == (0.0, 1.0)
    r = two_proportion_test(BinaryArm(n=0, successes=0), BinaryArm(n=10, successes=3))
    assert r.p_value == 1.0 and r.diff_ci is None and r.lift is None
    r = two_proportion_test(BinaryArm(n=50, successes=0), BinaryArm(n=50, successes=5))
    assert r.lift is None and r.lift_ci is None  # control rate 0: no lift
    assert r.diff_ci is not None


def _continuous_pairs():
    rng = np.random.default_rng(7)
    yield rng.normal(10.0, 3.0, 400), rng.normal(10.6, 5.0, 350)
    yield rng.exponential(20.0, 60), rng.exponential(26.0, 90)
    yield rng.lognormal(3.0, 1.0, 2000), rng.lognormal(3.02, 1.1, 2100)
    yield rng.normal(0.0, 1.0, 5), rng.normal(1.0, 2.0, 7)


@pytest.mark.parametrize(("c", "t"), list(_continuous_pairs()))
@pytest.mark.parametrize("alpha", [0.05, 0.1])
def test_welch_test_equals_scipy_and_statsmodels(c, t, alpha):
    r = welch_test(ContinuousArm.from_values(c), ContinuousArm.from_values(t), alpha=alpha)
    want = sps.ttest_ind(t, c, equal_var=False)
    assert r.statistic == pytest.approx(want.statistic, rel=1e-9)
    assert r.p_value == pytest.approx(want.pvalue, rel=1e-8)
    assert r.df == pytest.approx(want.df, rel=1e-9)
    cm = CompareMeans(DescrStatsW(t), DescrStatsW(c))
    low, high = cm.tconfint_diff(alpha=alpha, usevar="unequal")
    assert (r.diff_ci.low, r.diff_ci.high) == pytest.approx((low, high), rel=1e-9, abs=1e-12)
    tstat, p, df = cm.ttest_ind(usevar="unequal")
    assert (r.statistic, r.p_value, r.df) == pytest.approx((tstat, p, df), rel=1e-8)
    # lift: delta method on log(mean_t / mean_c), normal quantile
    mt, mc = t.mean(), c.mean()
    if mt > 0 and mc > 0:
        se = math.sqrt(t.var(ddof=1) / (t.size * mt**2) + c.var(ddof=1) / (c.size * mc**2))
        z = sps.norm.isf(alpha / 2)
        assert r.lift == pytest.approx(mt / mc - 1, rel=1e-9)
        assert r.lift_ci.low == pytest.approx(math.exp(math.log(mt / mc) - z * se) - 1,
                                              rel=1e-8)
        assert r.lift_ci.high == pytest.approx(math.exp(math.log(mt / mc) + z * se) - 1,
                                               rel=1e-8)
    else:
        assert r.lift_ci is None


def test_welch_lift_interval_covers_the_true_lift():
    """The log-ratio delta interval has about its nominal coverage on skewed data."""
    rng = np.random.default_rng(3)
    true_lift, covered, runs = 0.1, 0, 2000
    for _ in range(runs):
        c = rng.exponential(10.0, 800)
        t = rng.exponential(11.0, 800)
        r = welch_test(ContinuousArm.from_values(c), ContinuousArm.from_values(t))
        covered += r.lift_ci.contains(true_lift)
    assert 0.93 <= covered / runs <= 0.97


def test_welch_needs_two_values_per_arm():
    r = welch_test(ContinuousArm.from_values([1.0]), ContinuousArm.from_values([2.0, 3.0]))
    assert r.p_value == 1.0 and r.diff_ci is None and r.statistic is None


def test_totals_merge_like_concatenation():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=30), rng.normal(size=50)
    merged = ContinuousArm.from_values(a).merged(ContinuousArm.from_values(b))
    whole = ContinuousArm.from_values(np.concatenate([a, b]))
    assert merged.n == whole.n
    assert merged.mean == pytest.approx(whole.mean)
    assert merged.variance == pytest.approx(np.concatenate([a, b]).var(ddof=1))
    assert BinaryArm(n=5, successes=2).merged(BinaryArm(n=3, successes=3)) == \
        BinaryArm(n=8, successes=5)
    x = rng.normal(size=30)
    cov = CovariateArm.from_values(a, x)
    assert cov.merged(cov).total_xy == pytest.approx(2 * float(np.dot(a, x)))


@pytest.mark.parametrize(("call", "field"), [
    (lambda: two_proportion_test({"n": -1, "successes": 0}, {"n": 5, "successes": 1}),
     "control.n"),
    (lambda: two_proportion_test({"n": 5, "successes": 1}, {"n": 5, "successes": -2}),
     "treatment.successes"),
    (lambda: two_proportion_test({"n": 5, "successes": 6}, {"n": 5, "successes": 1}),
     "control"),
    (lambda: two_proportion_test({"n": 5, "successes": 1}, {"n": 5, "successes": 1},
                                 alpha=1.0), "alpha"),
    (lambda: welch_test({"n": 3, "total": 3.0, "total_sq": 3.0},
                        {"n": 3, "total": 3.0, "total_sq": 1.0}), "treatment"),
    (lambda: welch_test({"n": 3, "total": 3.0, "total_sq": -3.0},
                        {"n": 3, "total": 3.0, "total_sq": 3.0}), "control.total_sq"),
    (lambda: welch_test({"n": 3, "total": 3.0, "total_sq": 3.0},
                        {"n": 3, "total": 3.0, "total_sq": 3.0}, alpha=0), "alpha"),
])
def test_bad_input_names_the_field(call, field):
    with pytest.raises(InvalidInput) as info:
        call()
    assert info.value.field == field
    assert field in str(info.value)


@pytest.mark.parametrize(("counts", "weights"), [
    ({"a": 5000, "b": 5000}, {"a": 0.5, "b": 0.5}),
    ({"a": 5100, "b": 4900}, {"a": 0.5, "b": 0.5}),
    ({"a": 5250, "b": 4750}, {"a": 0.5, "b": 0.5}),
    ({"v1": 900, "v2": 1120, "v3": 980}, {"v1": 0.3, "v2": 0.4, "v3": 0.3}),
])
def test_srm_equals_scipy_chisquare(counts, weights):
    r = sample_ratio_mismatch(counts, weights)
    arms = sorted(counts)
    total = sum(counts.values())
    want = sps.chisquare([counts[a] for a in arms], [total * weights[a] for a in arms])
    assert r.statistic == pytest.approx(want.statistic, rel=1e-12)
    assert r.p_value == pytest.approx(want.pvalue, rel=1e-10)
    assert r.df == len(arms) - 1
    assert r.flagged == (want.pvalue < 0.001)


def test_srm_flags_a_broken_split_only():
    assert not sample_ratio_mismatch({"a": 5050, "b": 4950}, {"a": 0.5, "b": 0.5}).flagged
    assert sample_ratio_mismatch({"a": 5250, "b": 4750}, {"a": 0.5, "b": 0.5}).flagged
    assert not sample_ratio_mismatch({"a": 0, "b": 0}, {"a": 0.5, "b": 0.5}).flagged


@pytest.mark.parametrize(("counts", "weights", "field", "words"), [
    ({"a": -1, "b": 5}, {"a": 0.5, "b": 0.5}, "counts.a", "greater than or equal to 0"),
    ({"a": 1, "b": 5}, {"a": 0.5, "b": 0.4}, "weights", "sum to 1"),
    ({"a": 1, "b": 5}, {"a": 50, "b": 50}, "weights", "percentages"),
    ({"a": 1, "b": 5}, {"a": 1.0, "b": 0.0}, "weights.b", "greater than 0"),
    ({"a": 1, "c": 5}, {"a": 0.5, "b": 0.5}, "counts", "arms"),
    ({"a": 1}, {"a": 1.0}, "weights", "two arms"),
])
def test_srm_bad_input(counts, weights, field, words):
    with pytest.raises(InvalidInput, match=words) as info:
        sample_ratio_mismatch(counts, weights)
    assert info.value.field == field
