"""Bandits: Thompson weights are P(best) under the Beta posteriors; epsilon-greedy's split."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate
from scipy import stats as sps

from mlray.abtest.bandits import BanditState, EpsilonGreedy, ThompsonSampling
from mlray.errors import InvalidInput


def _p_best(alphas, betas):
    """Exact P(arm i has the highest rate): integral of f_i * prod_{j != i} F_j."""
    out = []
    for i in range(len(alphas)):
        def integrand(x, i=i):
            v = sps.beta.pdf(x, alphas[i], betas[i])
            for j in range(len(alphas)):
                if j != i:
                    v *= sps.beta.cdf(x, alphas[j], betas[j])
            return v
        out.append(integrate.quad(integrand, 0, 1, limit=200)[0])
    return out


@pytest.mark.parametrize("counts", [
    {"v1": (10, 90), "v2": (14, 86)},
    {"v1": (30, 270), "v2": (40, 260), "v3": (33, 267)},
    {"v1": (0, 0), "v2": (1, 3)},
])
def test_thompson_weights_are_the_posterior_probability_of_being_best(counts):
    bandit = ThompsonSampling(list(counts), seed=3, draws=200_000)
    for arm, (s, f) in counts.items():
        bandit.update(arm, successes=s, failures=f)
    weights = bandit.weights()
    exact = _p_best([s + 1 for s, _ in counts.values()], [f + 1 for _, f in counts.values()])
    assert list(weights.values()) == pytest.approx(exact, abs=0.005)
    assert sum(weights.values()) == pytest.approx(1.0)


def test_thompson_is_deterministic_for_a_state_and_resumes_from_it():
    a = ThompsonSampling(["v1", "v2"], seed=11, draws=2000)
    a.update("v1", 5, 20)
    a.update("v2", 7, 18)
    assert a.weights() == a.weights()
    b = ThompsonSampling(a.state(), seed=11, draws=2000)
    assert b.weights() == a.weights()
    assert ThompsonSampling(a.state(), seed=12, draws=2000).weights() != a.weights()
    b.update("v2", 1, 0)
    assert b.state().arms["v2"].successes == 8
    assert a.state().arms["v2"].successes == 7  # a copy, not shared


def test_thompson_floor_keeps_every_arm_some_traffic():
    bandit = ThompsonSampling(["v1", "v2", "v3"], floor=0.05, draws=5000)
    bandit.update("v1", 500, 500)
    bandit.update("v2", 100, 900)
    bandit.update("v3", 100, 900)
    w = bandit.weights()
    assert min(w.values()) >= 0.05
    assert w["v1"] == pytest.approx(0.9, abs=1e-9)  # 0.05 + 0.85 * P(best) with P ~ 1
    assert sum(w.values()) == pytest.approx(1.0)


def test_thompson_moves_traffic_to_the_better_arm():
    rng = np.random.default_rng(0)
    truth = {"v1": 0.05, "v2": 0.10}
    bandit = ThompsonSampling(list(truth), seed=1, draws=4000)
    for _ in range(60):
        weights = bandit.weights()
        for arm, share in weights.items():
            n = round(200 * share)
            wins = int(rng.binomial(n, truth[arm]))
            bandit.update(arm, successes=wins, failures=n - wins)
    assert bandit.weights()["v2"] > 0.95
    arms = bandit.state().arms
    assert arms["v2"].n > 3 * arms["v1"].n  # most traffic went to the better arm


def test_epsilon_greedy_splits_epsilon_and_favours_the_best():
    bandit = EpsilonGreedy(["a", "b", "c"], epsilon=0.3)
    assert bandit.weights() == pytest.approx({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3})
    bandit.update("a", 1, 1)
    w = bandit.weights()  # b and c untried: they count as best
    assert w == pytest.approx({"a": 0.1, "b": 0.45, "c": 0.45})
    bandit.update("b", 3, 1)
    bandit.update("c", 1, 3)
    assert bandit.rates() == {"a": 0.5, "b": 0.75, "c": 0.25}
    assert bandit.weights() == pytest.approx({"a": 0.1, "b": 0.8, "c": 0.1})
    bandit.update("a", 5, 0)  # a: 6/7 is now best
    assert bandit.best() == ["a"]
    tie = EpsilonGreedy(["a", "b"], epsilon=0.0)
    tie.update("a", 1, 1)
    tie.update("b", 2, 2)
    assert tie.weights() == {"a": 0.5, "b": 0.5}
    assert sum(EpsilonGreedy(["a", "b"], epsilon=1.0).weights().values()) == 1.0


@pytest.mark.parametrize(("call", "field"), [
    (lambda: ThompsonSampling(["only"]), "arms"),
    (lambda: ThompsonSampling(["a", "a"]), "arms"),
    (lambda: ThompsonSampling(["a", "b"], draws=10), "draws"),
    (lambda: ThompsonSampling(["a", "b"], prior_alpha=0), "prior_alpha"),
    (lambda: ThompsonSampling(["a", "b", "c"], floor=0.4), "floor"),
    (lambda: ThompsonSampling(["a", "b"]).update("z", 1), "arm"),
    (lambda: ThompsonSampling(["a", "b"]).update("a", -1), "successes"),
    (lambda: EpsilonGreedy(["a", "b"]).update("a", 0, 1.5), "failures"),
    (lambda: EpsilonGreedy(["a", "b"], epsilon=1.5), "epsilon"),
    (lambda: EpsilonGreedy(BanditState(arms={"a": {}, "b": {}}), epsilon=-0.1), "epsilon"),
])
def test_bad_input_names_the_field(call, field):
    with pytest.raises(InvalidInput) as info:
        call()
    assert info.value.field == field
