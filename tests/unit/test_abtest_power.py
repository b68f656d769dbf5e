"""Sample sizes equal statsmodels' NormalIndPower and zt_ind_solve_power."""

from __future__ import annotations

import math

import pytest
from statsmodels.stats.power import NormalIndPower, zt_ind_solve_power
from statsmodels.stats.proportion import proportion_effectsize

from mlray.abtest.power import normal_power, sample_size_binary, sample_size_continuous
from mlray.errors import InvalidInput


@pytest.mark.parametrize(("baseline", "effect", "scale", "target"), [
    (0.10, 0.01, "absolute", 0.11),
    (0.10, 0.05, "relative", 0.105),
    (0.03, -0.005, "absolute", 0.025),
    (0.5, 0.2, "relative", 0.6),
])
@pytest.mark.parametrize(("alpha", "power", "ratio"), [(0.05, 0.8, 1.0), (0.01, 0.9, 1.0),
                                                       (0.05, 0.8, 3.0)])
def test_binary_sample_size_equals_statsmodels(baseline, effect, scale, target, alpha,
                                               power, ratio):
    r = sample_size_binary(baseline, effect, effect=scale, alpha=alpha, power=power,
                           ratio=ratio)
    assert r.target == pytest.approx(target)
    h = proportion_effectsize(target, baseline)
    assert r.effect_size == pytest.approx(h, rel=1e-12)
    want = NormalIndPower().solve_power(effect_size=h, alpha=alpha, power=power, ratio=ratio)
    assert r.exact == pytest.approx(want, rel=1e-7)
    assert r.control == math.ceil(want)
    assert r.treatment == math.ceil(want * ratio)
    assert r.total == r.control + r.treatment
    assert normal_power(h, r.control, alpha, ratio) >= power


@pytest.mark.parametrize(("baseline", "sd", "effect", "scale", "d"), [
    (100.0, 40.0, 2.0, "absolute", 0.05),
    (100.0, 40.0, 0.03, "relative", 0.075),
    (5.0, 2.0, -0.5, "absolute", -0.25),
])
@pytest.mark.parametrize(("alpha", "power", "ratio"), [(0.05, 0.8, 1.0), (0.1, 0.95, 0.5)])
def test_continuous_sample_size_equals_statsmodels(baseline, sd, effect, scale, d, alpha,
                                                   power, ratio):
    r = sample_size_continuous(baseline, sd, effect, effect=scale, alpha=alpha, power=power,
                               ratio=ratio)
    assert r.effect_size == pytest.approx(d)
    want = zt_ind_solve_power(effect_size=d, alpha=alpha, power=power, ratio=ratio)
    assert r.exact == pytest.approx(want, rel=1e-7)
    assert r.control == math.ceil(want)


def test_huge_effects_still_need_two_per_arm():
    r = sample_size_continuous(10.0, 1.0, 5.0)
    assert r.control == r.treatment == 2


@pytest.mark.parametrize(("call", "field"), [
    (lambda: sample_size_binary(0.0, 0.01), "baseline"),
    (lambda: sample_size_binary(0.1, 0.95), "min_effect"),
    (lambda: sample_size_binary(0.1, 0.0), "min_effect"),
    (lambda: sample_size_binary(0.1, 0.01, effect="percent"), "effect"),
    (lambda: sample_size_binary(0.1, 0.01, alpha=0.0), "alpha"),
    (lambda: sample_size_binary(0.1, 0.01, power=1.0), "power"),
    (lambda: sample_size_binary(0.1, 0.01, ratio=0), "ratio"),
    (lambda: sample_size_continuous(1.0, 0.0, 0.1), "sd"),
    (lambda: sample_size_continuous(0.0, 1.0, 0.1, effect="relative"), "min_effect"),
])
def test_bad_input_names_the_field(call, field):
    with pytest.raises(InvalidInput) as info:
        call()
    assert info.value.field == field
