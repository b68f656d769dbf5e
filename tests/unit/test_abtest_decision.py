"""The decision helper: guardrails first, then SRM, then the corrected primary metric."""

from __future__ import annotations

import pytest

from mlray.abtest.arms import BinaryArm, ContinuousArm
from mlray.abtest.decision import Guardrail, decide
from mlray.abtest.sequential import msprt_test
from mlray.abtest.srm import sample_ratio_mismatch
from mlray.abtest.stats import two_proportion_test, welch_test
from mlray.errors import InvalidInput

BETTER = two_proportion_test(BinaryArm(n=10000, successes=1000),
                             BinaryArm(n=10000, successes=1150))  # p ~ 1e-3
WORSE = two_proportion_test(BinaryArm(n=10000, successes=1150),
                            BinaryArm(n=10000, successes=1000))
FLAT = two_proportion_test(BinaryArm(n=10000, successes=1000),
                           BinaryArm(n=10000, successes=1010))
GOOD_SPLIT = sample_ratio_mismatch({"v1": 10000, "v2": 10000}, {"v1": 0.5, "v2": 0.5})
BAD_SPLIT = sample_ratio_mismatch({"v1": 10000, "v2": 9000}, {"v1": 0.5, "v2": 0.5})


def _fixed(result, **extra):
    fields = dict(design="fixed", control="v1", treatment="v2", primary="conversion",
                  results={"conversion": result}, sample_size=10000, srm=GOOD_SPLIT)
    return decide(**{**fields, **extra})


def test_fixed_horizon_winner_loser_and_no_difference():
    d = _fixed(BETTER)
    assert (d.outcome, d.winner) == ("winner", "v2")
    assert "conversion" in d.reason and "v2 is better" in d.reason
    assert d.p_value == pytest.approx(BETTER.p_value)
    d = _fixed(WORSE)
    assert (d.outcome, d.winner) == ("winner", "v1")  # the treatment lost: keep control
    d = _fixed(FLAT)
    assert (d.outcome, d.winner) == ("no_difference", None)
    assert "no difference" in d.reason


def test_fixed_horizon_is_not_read_before_its_planned_size():
    d = _fixed(BETTER, sample_size=20000)
    assert (d.outcome, d.winner) == ("keep_running", None)
    assert "10000 of 20000" in d.reason


def test_lower_is_better_flips_the_winner():
    loss_c = ContinuousArm(n=5000, total=5000 * 100.0, total_sq=5000 * (100.0**2 + 400.0))
    loss_t = ContinuousArm(n=5000, total=5000 * 97.0, total_sq=5000 * (97.0**2 + 400.0))
    r = welch_test(loss_c, loss_t)
    assert r.p_value < 0.001
    d = _fixed(r, results={"loss": r}, primary="loss", sample_size=5000,
               higher_is_better=False)
    assert (d.outcome, d.winner) == ("winner", "v2")


def test_guardrail_breach_keeps_control_whatever_the_metric():
    d = _fixed(BETTER, guardrails=[Guardrail(name="p99_latency", breached=True,
                                             detail="412 ms > 250 ms"),
                                   Guardrail(name="error_ratio", breached=False)])
    assert (d.outcome, d.winner) == ("winner", "v1")
    assert "p99_latency (412 ms > 250 ms)" in d.reason and "error_ratio" not in d.reason


def test_sample_ratio_mismatch_invalidates_the_test():
    assert BAD_SPLIT.flagged
    d = _fixed(BETTER, srm=BAD_SPLIT)
    assert (d.outcome, d.winner) == ("invalid", None)
    assert "sample ratio mismatch" in d.reason


def test_correction_across_metrics_can_turn_a_win_into_no_difference():
    marginal = two_proportion_test(BinaryArm(n=10000, successes=1000),
                                   BinaryArm(n=10000, successes=1085))  # p ~ 0.045
    assert 0.02 < marginal.p_value < 0.05
    others = {"revenue": FLAT, "retention": FLAT}
    alone = _fixed(marginal)
    assert alone.outcome == "winner"
    together = _fixed(marginal, results={"conversion": marginal, **others})
    assert together.outcome == "no_difference"
    assert together.p_value == pytest.approx(3 * marginal.p_value)  # Holm: smallest x 3
    assert "holm-corrected over 3 metrics" in together.reason
    assert set(together.adjusted) == {"conversion", "revenue", "retention"}


def test_sequential_concludes_at_any_look_and_stops_at_its_maximum():
    strong = msprt_test(BinaryArm(n=10000, successes=1000),
                        BinaryArm(n=10000, successes=1200), mixture_sd=0.02)
    weak = msprt_test(BinaryArm(n=10000, successes=1000),
                      BinaryArm(n=10000, successes=1010), mixture_sd=0.02)
    base = dict(design="sequential", control="v1", treatment="v2", primary="conversion")
    d = decide(**base, results={"conversion": strong})
    assert (d.outcome, d.winner) == ("winner", "v2")
    d = decide(**base, results={"conversion": weak})
    assert d.outcome == "keep_running" and "no evidence yet" in d.reason
    d = decide(**base, results={"conversion": weak}, sample_size=10000)
    assert d.outcome == "no_difference"


@pytest.mark.parametrize(("extra", "field"), [
    ({"sample_size": None}, "sample_size"),
    ({"primary": "revenue"}, "primary"),
    ({"treatment": "v1"}, "treatment"),
    ({"alpha": 1.2}, "alpha"),
    ({"design": "bayesian"}, "design"),
    ({"correction": "bonferroni"}, "correction"),
    ({"guardrails": [{"name": "", "breached": True}]}, "guardrails.0.name"),
])
def test_bad_input_names_the_field(extra, field):
    with pytest.raises(InvalidInput) as info:
        _fixed(BETTER, **extra)
    assert info.value.field == field
