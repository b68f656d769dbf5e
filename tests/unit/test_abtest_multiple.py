"""Holm and Benjamini-Hochberg equal statsmodels' multipletests."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.multitest import multipletests

from mlray.abtest.multiple import adjust_p_values, benjamini_hochberg, holm
from mlray.errors import InvalidInput

P_SETS = [
    [0.01, 0.04, 0.03, 0.20],
    [0.001, 0.001, 0.5, 0.049, 0.012, 0.9],  # ties
    [0.3],
    list(np.random.default_rng(4).uniform(0, 0.1, 25)),
    [0.0, 1.0, 0.5],
]


@pytest.mark.parametrize("p", P_SETS)
@pytest.mark.parametrize(("ours", "theirs"), [(holm, "holm"), (benjamini_hochberg, "fdr_bh")])
def test_adjusted_p_values_equal_statsmodels(p, ours, theirs):
    reject, adjusted, _, _ = multipletests(p, alpha=0.05, method=theirs)
    assert ours(p) == pytest.approx(adjusted, rel=1e-12, abs=1e-15)
    assert list(ours(p) <= 0.05) == list(reject)


def test_adjust_p_values_by_metric_name():
    p = {"conversion": 0.01, "revenue": 0.04, "latency": 0.03}
    r = adjust_p_values(p, method="holm", alpha=0.05)
    _, want, _, _ = multipletests(list(p.values()), method="holm")
    assert list(r.adjusted.values()) == pytest.approx(list(want))
    assert r.significant == {"conversion": True, "revenue": False, "latency": False}
    bh = adjust_p_values(p, method="bh")
    assert all(bh.significant.values())  # BH: 0.03, 0.04, 0.03 all under 0.05
    assert adjust_p_values(p, method="none").adjusted == p
    assert adjust_p_values({}, method="holm").adjusted == {}


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"p_values": {"a": 1.5}}, "p_values.a"),
    ({"p_values": {"a": -0.1}}, "p_values.a"),
    ({"p_values": {"a": 0.1}, "method": "bonferroni"}, "method"),
    ({"p_values": {"a": 0.1}, "alpha": 1.0}, "alpha"),
])
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(InvalidInput) as info:
        adjust_p_values(**kwargs)
    assert info.value.field == field
