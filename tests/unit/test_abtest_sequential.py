"""The mSPRT: its e-value is the mixture likelihood ratio, and peeking keeps alpha.

The simulations run A/A experiments (both arms the same), looking every 100 units per arm:
stopping at the first look with p < alpha, the mSPRT keeps the false-positive rate at or
under alpha while the fixed-horizon tests read at every look exceed it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from mlray.abtest.arms import BinaryArm, ContinuousArm
from mlray.abtest.sequential import (
    SequentialState,
    SequentialTest,
    msprt_half_width,
    msprt_log_e,
    msprt_test,
)
from mlray.abtest.stats import welch_arrays, z_test_arrays
from mlray.errors import InvalidInput

ALPHA = 0.05
PEEK = 100
TOLERANCE = 0.015  # about three standard errors of a rate near 0.05 over 2,000 runs


@pytest.mark.parametrize(("diff", "v", "tau"), [
    (0.01, 1e-4, 0.02), (0.0, 4e-4, 0.01), (-0.3, 0.05, 0.5), (2.0, 1.0, 0.1)])
def test_e_value_is_the_normal_mixture_likelihood_ratio(diff, v, tau):
    """e = integral of N(diff; theta, V) / N(diff; 0, V) over theta ~ N(0, tau^2)."""
    sd = math.sqrt(v)

    def integrand(theta):
        return (sps.norm.pdf(diff, theta, sd) / sps.norm.pdf(diff, 0.0, sd)
                * sps.norm.pdf(theta, 0.0, tau))

    want, _ = integrate.quad(integrand, -40 * tau - abs(diff), 40 * tau + abs(diff),
                             points=[0.0, diff], limit=500)
    assert math.exp(float(msprt_log_e(diff, v, tau))) == pytest.approx(want, rel=1e-6)


def test_interval_is_the_set_of_differences_not_rejected():
    v, tau, diff = 2e-4, 0.02, 0.05
    half = float(msprt_half_width(v, tau, ALPHA))
    # at the interval's ends the test of "difference = end" sits exactly at 1/alpha
    for end in (diff - half, diff + half):
        assert float(msprt_log_e(diff, v, tau, null=end)) == pytest.approx(math.log(1 / ALPHA))
    assert float(msprt_log_e(diff, v, tau, null=diff - 0.99 * half)) < math.log(1 / ALPHA)


def test_msprt_test_matches_the_array_formula_and_its_interval_agrees_with_p():
    c, t = BinaryArm(n=4000, successes=400), BinaryArm(n=4100, successes=480)
    r = msprt_test(c, t, mixture_sd=0.02)
    v = t.variance / t.n + c.variance / c.n
    log_e = float(msprt_log_e(t.mean - c.mean, v, 0.02))
    assert r.e_value == pytest.approx(math.exp(log_e))
    assert r.p_value == pytest.approx(min(1.0, math.exp(-log_e)))
    assert r.method.startswith("mSPRT") and r.kind == "binary"
    assert (r.p_value <= ALPHA) == (not r.diff_ci.contains(0.0))
    rng = np.random.default_rng(2)
    cc, tt = (ContinuousArm.from_values(rng.normal(5, 2, 500)),
              ContinuousArm.from_values(rng.normal(5.5, 2, 500)))
    r = msprt_test(cc, tt, mixture_sd=0.5)
    v = tt.variance / tt.n + cc.variance / cc.n
    assert r.e_value == pytest.approx(math.exp(float(msprt_log_e(tt.mean - cc.mean, v, 0.5))))
    assert (r.p_value <= ALPHA) == (not r.diff_ci.contains(0.0))


def test_no_evidence_before_min_samples_or_without_variance():
    r = msprt_test(BinaryArm(n=50, successes=0), BinaryArm(n=50, successes=40),
                   mixture_sd=0.1)
    assert (r.p_value, r.e_value, r.diff_ci) == (1.0, 1.0, None)
    r = msprt_test(BinaryArm(n=500, successes=0), BinaryArm(n=500, successes=0),
                   mixture_sd=0.1)
    assert (r.p_value, r.e_value, r.diff_ci) == (1.0, 1.0, None)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"mixture_sd": 0.0}, "mixture_sd"),
    ({"mixture_sd": 0.1, "alpha": 0.0}, "alpha"),
    ({"mixture_sd": 0.1, "min_samples": 1}, "min_samples"),
])
def test_msprt_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as info:
        msprt_test(BinaryArm(n=10, successes=1), BinaryArm(n=10, successes=2), **kwargs)
    assert info.value.field == field


def test_msprt_refuses_mixed_kinds():
    with pytest.raises(InvalidInput) as info:
        msprt_test(BinaryArm(n=10, successes=1), ContinuousArm(n=1, total=1.0, total_sq=1.0),
                   mixture_sd=0.1)
    assert info.value.field == "treatment"


def test_sequential_test_keeps_the_running_minimum_and_intersection():
    test = SequentialTest(mixture_sd=0.02)
    rng = np.random.default_rng(5)
    c = t = BinaryArm(n=0, successes=0)
    widths, ps = [], []
    for _ in range(30):
        c = c.merged(BinaryArm.from_values(rng.random(200) < 0.10))
        t = t.merged(BinaryArm.from_values(rng.random(200) < 0.13))
        r = test.look(c, t)
        ps.append(r.p_value)
        widths.append(r.diff_ci.high - r.diff_ci.low)
    assert ps == sorted(ps, reverse=True)  # never goes back up
    assert widths == sorted(widths, reverse=True)  # never widens
    assert test.state.looks == 30
    assert test.rejected  # a 3-point lift on 10% is found within 6,000 per arm
    assert r.diff_ci.contains(0.03)
    resumed = SequentialTest(mixture_sd=0.02, state=SequentialState(**test.state.model_dump()))
    assert resumed.look(c, t).p_value == r.p_value
    assert resumed.state.looks == 31


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"mixture_sd": 0.02, "alpha": 1.5}, "alpha"),
    ({"mixture_sd": -0.02}, "mixture_sd"),
    ({"mixture_sd": 0.02, "min_samples": 0}, "min_samples"),
])
def test_sequential_test_validates_its_settings(kwargs, field):
    with pytest.raises(InvalidInput) as info:
        SequentialTest(**kwargs)
    assert info.value.field == field


def _peeks(n_max: int) -> np.ndarray:
    return np.arange(PEEK, n_max + 1, PEEK)


def test_peeking_binary_aa_keeps_alpha_for_msprt_only():
    """2,000 A/A runs at 10% conversion, looked at every 100 units per arm up to 5,000."""
    rng = np.random.default_rng(2024)
    runs, rate, n_max = 2000, 0.10, 5000
    looks = _peeks(n_max)
    x_c = rng.binomial(PEEK, rate, size=(runs, looks.size)).cumsum(axis=1)
    x_t = rng.binomial(PEEK, rate, size=(runs, looks.size)).cumsum(axis=1)
    _, p_fixed = z_test_arrays(x_t, looks, x_c, looks)
    p_c, p_t = x_c / looks, x_t / looks
    v = (p_c * (1 - p_c) + p_t * (1 - p_t)) / looks
    log_e = msprt_log_e(p_t - p_c, v, mixture_sd=0.01)
    seq_fpr = float(np.mean((log_e >= math.log(1 / ALPHA)).any(axis=1)))
    peeked_fpr = float(np.mean((p_fixed <= ALPHA).any(axis=1)))
    once_fpr = float(np.mean(p_fixed[:, -1] <= ALPHA))
    assert seq_fpr <= ALPHA + TOLERANCE
    assert peeked_fpr > ALPHA + 3 * TOLERANCE  # ~0.25 with 50 looks
    assert abs(once_fpr - ALPHA) <= TOLERANCE  # read once, the z-test is fine


def test_peeking_continuous_aa_keeps_alpha_for_msprt_only():
    """1,000 A/A runs of a skewed metric, looked at every 100 units per arm up to 3,000."""
    rng = np.random.default_rng(77)
    runs, n_max = 1000, 3000
    looks = _peeks(n_max)
    k = looks.size

    def totals():
        y = rng.exponential(20.0, size=(runs, k, PEEK))
        return y.sum(axis=2).cumsum(axis=1), (y * y).sum(axis=2).cumsum(axis=1)

    (s_c, q_c), (s_t, q_t) = totals(), totals()
    m_c, m_t = s_c / looks, s_t / looks
    var_c = (q_c - s_c * m_c) / (looks - 1)
    var_t = (q_t - s_t * m_t) / (looks - 1)
    _, _, p_fixed = welch_arrays(m_t, var_t, looks, m_c, var_c, looks)
    log_e = msprt_log_e(m_t - m_c, var_t / looks + var_c / looks, mixture_sd=2.0)
    seq_fpr = float(np.mean((log_e >= math.log(1 / ALPHA)).any(axis=1)))
    peeked_fpr = float(np.mean((p_fixed <= ALPHA).any(axis=1)))
    assert seq_fpr <= ALPHA + 0.02  # 1,000 runs: a wider tolerance
    assert peeked_fpr > ALPHA + 0.06
