"""Drift statistics agree with scipy on the same bins; the drift report's verdicts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from scipy import stats as sps
from scipy.spatial.distance import jensenshannon

from mlray.monitoring import stats
from mlray.monitoring.baseline import Baseline, profile_frame
from mlray.monitoring.drift import DriftConfig, DriftThresholds, bin_labels, compute_drift
from mlray.monitoring.sketch import Sketcher

RNG = np.random.default_rng(11)
PAIRS = [
    (np.array([100, 200, 300, 400]), np.array([110, 190, 320, 380])),
    (np.array([5, 0, 10, 20, 1]), np.array([0, 3, 12, 25, 0])),  # zero bins on both sides
    (RNG.integers(0, 1000, size=10), RNG.integers(0, 1000, size=10)),
    (RNG.integers(1, 50, size=30), RNG.integers(0, 5000, size=30)),
]


@pytest.mark.parametrize(("e", "a"), PAIRS)
def test_psi_and_kl_match_scipy_entropy_on_smoothed_bins(e, a):
    p, q = stats.smooth(e), stats.smooth(a)
    assert p.sum() == pytest.approx(1.0) and np.all(p > 0)
    assert stats.kl_divergence(e, a) == pytest.approx(sps.entropy(q, p), rel=1e-12)
    assert stats.psi(e, a) == pytest.approx(sps.entropy(p, q) + sps.entropy(q, p), rel=1e-12)
    assert math.isfinite(stats.psi(e, a))


@pytest.mark.parametrize(("e", "a"), PAIRS)
def test_js_distance_matches_scipy(e, a):
    want = jensenshannon(e / e.sum(), a / a.sum(), base=2)
    assert stats.js_distance(e, a) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_js_bounds():
    assert stats.js_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert stats.js_distance([3, 4], [6, 8]) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize(("e", "a"), PAIRS)
def test_ks_matches_ks_2samp_on_bin_indices(e, a):
    d, p = stats.ks_binned(e, a)
    xs = np.repeat(np.arange(len(e)), e)
    ys = np.repeat(np.arange(len(a)), a)
    ref = sps.ks_2samp(xs, ys, method="asymp")
    assert d == pytest.approx(ref.statistic, abs=1e-12)
    n, m = e.sum(), a.sum()
    assert p == pytest.approx(sps.kstwobign.sf(math.sqrt(n * m / (n + m)) * d), rel=1e-9,
                              abs=1e-300)
    # scipy's asymptotic method uses kstwo at round(n_eff): the limit law once n_eff is large
    if n * m / (n + m) >= 100:
        assert p == pytest.approx(ref.pvalue, abs=0.03)


@pytest.mark.parametrize(("e", "a"), PAIRS)
def test_chi2_matches_chi2_contingency(e, a):
    stat, p, dof = stats.chi2_homogeneity(e, a)
    table = np.vstack([e, a])
    table = table[:, table.sum(axis=0) > 0]
    ref = sps.chi2_contingency(table, correction=False)
    assert stat == pytest.approx(ref.statistic, rel=1e-10)
    assert dof == ref.dof
    assert p == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-300)


def test_chi2_agrees_with_chisquare_when_baseline_is_huge():
    e = np.array([4, 3, 2, 1]) * 10**9
    a = np.array([45, 25, 20, 10])
    stat, p, _ = stats.chi2_homogeneity(e, a)
    ref = sps.chisquare(a, f_exp=e / e.sum() * a.sum())
    assert stat == pytest.approx(ref.statistic, rel=1e-6)
    assert p == pytest.approx(ref.pvalue, rel=1e-5)


@pytest.mark.parametrize("dof", [1, 2, 3, 7, 10, 49, 200])
def test_chi2_sf_matches_scipy(dof):
    for x in [0.001, 0.1, 1.0, dof * 0.5, float(dof), dof + 1.0, dof * 2.0, dof * 5.0 + 50]:
        assert stats.chi2_sf(x, dof) == pytest.approx(sps.chi2.sf(x, dof), rel=1e-9,
                                                      abs=1e-300)
    assert stats.chi2_sf(0.0, dof) == 1.0


def test_kolmogorov_sf_matches_scipy():
    for x in np.linspace(0.0, 6.0, 121):
        assert stats.kolmogorov_sf(x) == pytest.approx(sps.kstwobign.sf(x), rel=1e-9,
                                                       abs=1e-300)


def test_degenerate_inputs():
    assert stats.psi([0, 0], [1, 2]) is None
    assert stats.kl_divergence([1, 2], [0, 0]) is None
    assert stats.js_distance([1, 2], [1, 2, 3]) is None
    assert stats.ks_binned([0, 0], [1, 1]) is None
    assert stats.chi2_homogeneity([5, 0], [3, 0]) == (0.0, 1.0, 0)
    assert math.isnan(stats.chi2_sf(1.0, 0))


def test_epsilon_documented_behaviour():
    # an empty baseline bin gives a large but finite PSI, growing as eps shrinks
    big = stats.psi([10, 0], [5, 5], eps=1e-4)
    bigger = stats.psi([10, 0], [5, 5], eps=1e-8)
    assert math.isfinite(big) and bigger > big > 1.0


def test_bin_labels():
    assert bin_labels([]) == []
    assert bin_labels([1.0, 1.0]) == ["all"]
    assert bin_labels([0.0, 1.0, 2.0, 3.0]) == ["< 1", "[1, 2)", ">= 2"]


# -- the report ------------------------------------------------------------------------------

@pytest.fixture
def baseline() -> Baseline:
    rng = np.random.default_rng(21)
    n = 20_000
    train = pd.DataFrame({f"n{i}": rng.normal(size=n) for i in range(4)})
    train["cat"] = rng.choice(["a", "b", "c"], size=n, p=[0.6, 0.3, 0.1])
    return profile_frame(train, numeric=[f"n{i}" for i in range(4)], categorical=["cat"],
                         predictions=rng.random(n))


def _live(n: int, shift: dict[str, float], cat_p=(0.6, 0.3, 0.1), cats=("a", "b", "c"),
          seed: int = 5) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    cols = {f"n{i}": rng.normal(loc=shift.get(f"n{i}", 0.0), size=n) for i in range(4)}
    cols["cat"] = rng.choice(list(cats), size=n, p=list(cat_p))
    return cols, rng.random(n)


def test_report_values_equal_the_stats_on_sketch_counts(baseline):
    cols, preds = _live(5000, {"n0": 1.0})
    sk = Sketcher(baseline).sketch(cols, preds, now=0.0)
    report = compute_drift(baseline, sk)
    n0 = report.features[0]
    e, a = baseline.numeric["n0"].counts, sk.numeric["n0"].counts
    assert n0.statistic("psi") == stats.psi(e, a)
    assert n0.statistic("js") == stats.js_distance(e, a)
    assert (n0.statistic("ks"), n0.p_value("ks")) == stats.ks_binned(e, a)
    assert n0.expected == pytest.approx(list(np.asarray(e) / sum(e)))
    assert len(n0.labels) == len(n0.expected) == len(n0.actual)


def test_no_drift_on_same_distribution(baseline):
    cols, preds = _live(20_000, {})
    report = compute_drift(baseline, Sketcher(baseline).sketch(cols, preds, now=0.0))
    assert report.evaluated == 5
    assert report.drifted_features == [] and not report.dataset_drifted
    assert report.predictions is not None and report.predictions.drifted is False


def test_shift_and_category_change_drift(baseline):
    cols, preds = _live(20_000, {"n0": 1.0, "n1": 1.5, "n2": 0.8}, cat_p=(0.2, 0.3, 0.5))
    report = compute_drift(baseline, Sketcher(baseline).sketch(cols, preds, now=0.0))
    assert report.drifted_features == ["n0", "n1", "n2", "cat"]
    assert report.drift_share == pytest.approx(0.8)
    assert report.dataset_drifted
    cat = report.features[-1]
    assert cat.kind == "categorical" and cat.test == "chi2"
    assert cat.tests["chi2"].dof == 2 and cat.p_value("chi2") < 1e-10
    assert "ks" not in cat.tests


def test_unseen_categories_form_their_own_bin(baseline):
    cols, preds = _live(5000, {}, cats=("a", "b", "zzz"))
    report = compute_drift(baseline, Sketcher(baseline).sketch(cols, preds, now=0.0))
    cat = report.features[-1]
    assert cat.labels == ["a", "b", "c", "(unseen)"]
    assert cat.expected[-1] == 0.0 and cat.actual[-1] == pytest.approx(0.1, abs=0.02)
    assert cat.drifted and cat.statistic("psi") > 1.0


def test_empty_window_gives_no_verdicts(baseline):
    report = compute_drift(baseline, None)
    assert report.evaluated == 0 and report.drift_share == 0.0 and not report.dataset_drifted
    assert all(f.drifted is None and f.tests == {} and f.rows == 0 for f in report.features)
    report = compute_drift(baseline, Sketcher(baseline).new(0.0))
    assert report.evaluated == 0


def test_all_null_live_feature_and_min_rows(baseline):
    cols, preds = _live(500, {})
    cols["n0"] = np.full(500, np.nan)
    report = compute_drift(baseline, Sketcher(baseline).sketch(cols, preds, now=0.0),
                           DriftConfig(min_rows=400))
    assert report.features[0].drifted is None and report.features[0].actual == []
    assert report.evaluated == 4
    small = compute_drift(baseline, Sketcher(baseline).sketch(cols, preds, now=0.0),
                          DriftConfig(min_rows=501))
    assert small.evaluated == 0


def test_thresholds_and_deciding_test_are_configurable(baseline):
    cols, preds = _live(20_000, {"n0": 0.15})
    sk = Sketcher(baseline).sketch(cols, preds, now=0.0)
    by_psi = compute_drift(baseline, sk)
    assert "n0" not in by_psi.drifted_features  # small shift: PSI below 0.2
    by_ks = compute_drift(baseline, sk, DriftConfig(numeric_test="ks"))
    assert "n0" in by_ks.drifted_features  # ... but KS on 20k rows sees it
    strict = compute_drift(baseline, sk, DriftConfig(thresholds=DriftThresholds(psi=0.001)))
    assert "n0" in strict.drifted_features
    share = compute_drift(baseline, sk, DriftConfig(numeric_test="ks", dataset_drift_share=0.2))
    assert share.dataset_drifted


def test_config_is_strict():
    with pytest.raises(ValidationError):
        DriftConfig(numeric_test="chi2")
    with pytest.raises(ValidationError):
        DriftConfig(unknown=1)
    with pytest.raises(ValidationError):
        DriftThresholds(js=2.0)
