"""Drift of live traffic against the training baseline, per feature and for the predictions.

:func:`compute_drift` takes the baseline and a window's merged :class:`Sketch` and runs,
on the baseline's bins: PSI, KL, Jensen-Shannon distance and Kolmogorov-Smirnov for
numeric features and the predictions; PSI, KL, Jensen-Shannon and chi-square for
categorical ones (unseen categories form one extra bin with a baseline count of zero).
Each test has its own threshold (:class:`DriftThresholds`); one test per kind decides
whether the feature drifted (:class:`DriftConfig`). The dataset-level drift share is the
fraction of features with a verdict that drifted; the predictions are reported apart and
do not count. A feature with fewer than ``min_rows`` live values (or an empty baseline)
gets no verdict (``drifted=None``). The formulas and the smoothing of empty bins are in
:mod:`mlray.monitoring.stats`.
"""

from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlray.monitoring import stats
from mlray.monitoring.baseline import Baseline, CategoricalProfile, NumericProfile
from mlray.monitoring.sketch import CategoricalSketch, NumericSketch, Sketch

__all__ = ["DriftConfig", "DriftReport", "DriftStat", "DriftThresholds", "FeatureDrift",
           "bin_labels", "compute_drift"]

NumericTest = Literal["psi", "kl", "js", "ks"]
CategoricalTest = Literal["chi2", "psi", "kl", "js"]
UNSEEN_LABEL = "(unseen)"


class DriftThresholds(BaseModel):
    """Where each test starts calling a distribution drifted."""

    model_config = ConfigDict(extra="forbid")

    psi: float = Field(0.2, ge=0, description="Drift when PSI >= this (0.1 moderate, 0.2 "
                                              "significant by convention).")
    kl: float = Field(0.1, ge=0, description="Drift when KL(current || baseline) >= this "
                                             "(nats).")
    js: float = Field(0.1, ge=0, le=1, description="Drift when the base-2 Jensen-Shannon "
                                                   "distance >= this.")
    ks_p_value: float = Field(0.05, gt=0, lt=1, description="Drift when the KS p-value < this.")
    chi2_p_value: float = Field(0.05, gt=0, lt=1,
                                description="Drift when the chi-square p-value < this.")


class DriftConfig(BaseModel):
    """Which test decides, per kind of column, and the dataset-level rule."""

    model_config = ConfigDict(extra="forbid")

    thresholds: DriftThresholds = Field(default_factory=DriftThresholds)
    numeric_test: NumericTest = Field("psi", description="Decides for numeric features.")
    categorical_test: CategoricalTest = Field("chi2",
                                              description="Decides for categorical features.")
    prediction_test: NumericTest = Field("psi", description="Decides for the predictions.")
    dataset_drift_share: float = Field(0.5, gt=0, le=1, description="The dataset drifted "
                                       "when this share of features (or more) drifted.")
    min_rows: int = Field(100, ge=1, description="Fewer live values than this: no verdict.")
    epsilon: float = Field(stats.DEFAULT_EPSILON, gt=0, le=0.01,
                           description="Added to each bin's proportion for PSI and KL.")


class DriftStat(BaseModel):
    """One test on one feature."""

    test: str
    statistic: float
    p_value: float | None = None
    dof: int | None = None
    threshold: float
    drifted: bool


class FeatureDrift(BaseModel):
    """All tests on one feature (or the predictions), with the binned distributions."""

    feature: str
    kind: Literal["numeric", "categorical", "predictions"]
    rows: int = Field(description="Live values compared (non-null, well-typed).")
    baseline_rows: int
    tests: dict[str, DriftStat] = Field(default_factory=dict)
    test: str = Field(description="The test that decides ``drifted``.")
    drifted: bool | None = Field(description="None: too few live values or no baseline.")
    labels: list[str] = Field(default_factory=list, description="One per bin.")
    expected: list[float] = Field(default_factory=list, description="Baseline proportions.")
    actual: list[float] = Field(default_factory=list, description="Live proportions.")

    def statistic(self, test: str) -> float | None:
        """The statistic of ``test``, None when it was not run."""
        result = self.tests.get(test)
        return None if result is None else result.statistic

    def p_value(self, test: str) -> float | None:
        """The p-value of ``test`` (ks, chi2), None when it was not run."""
        result = self.tests.get(test)
        return None if result is None else result.p_value


class DriftReport(BaseModel):
    """Drift over one window: per feature, the predictions, and the dataset verdict."""

    start: float | None = None
    end: float | None = None
    rows: int = 0
    features: list[FeatureDrift] = Field(default_factory=list)
    predictions: FeatureDrift | None = None
    drifted_features: list[str] = Field(default_factory=list)
    evaluated: int = Field(0, description="Features with a verdict.")
    drift_share: float = 0.0
    dataset_drift_share: float = 0.5
    dataset_drifted: bool = False


def bin_labels(edges: list[float]) -> list[str]:
    """Readable labels of the bins of ``edges`` (outer bins open-ended)."""
    if len(edges) < 2:
        return []
    inner = edges[1:-1]
    if not inner:
        return ["all"]
    labels = [f"< {inner[0]:.4g}"]
    labels += [f"[{a:.4g}, {b:.4g})" for a, b in itertools.pairwise(inner)]
    labels.append(f">= {inner[-1]:.4g}")
    return labels


def _distance_tests(expected: np.ndarray, actual: np.ndarray, cfg: DriftConfig
                   ) -> dict[str, DriftStat]:
    th = cfg.thresholds
    out: dict[str, DriftStat] = {}
    for name, fn, limit in (("psi", stats.psi, th.psi), ("kl", stats.kl_divergence, th.kl)):
        value = fn(expected, actual, cfg.epsilon)
        if value is not None:
            out[name] = DriftStat(test=name, statistic=value, threshold=limit,
                                   drifted=value >= limit)
    js = stats.js_distance(expected, actual)
    if js is not None:
        out["js"] = DriftStat(test="js", statistic=js, threshold=th.js, drifted=js >= th.js)
    return out


def _numeric(name: str, kind: Literal["numeric", "predictions"], profile: NumericProfile,
             sk: NumericSketch | None, test: str, cfg: DriftConfig) -> FeatureDrift:
    expected = np.asarray(profile.counts, dtype=np.float64)
    actual = (np.zeros(len(expected)) if sk is None or len(sk.counts) != len(expected)
              else sk.counts.astype(np.float64))
    out = FeatureDrift(feature=name, kind=kind, rows=int(actual.sum()),
                       baseline_rows=int(expected.sum()), test=test, drifted=None,
                       labels=bin_labels(profile.edges))
    return _decide(out, expected, actual, cfg, ks=True)


def _categorical(name: str, profile: CategoricalProfile, sk: CategoricalSketch | None,
                 baseline_rows: int, cfg: DriftConfig) -> FeatureDrift:
    freq = np.asarray(list(profile.frequencies.values()), dtype=np.float64)
    present = baseline_rows * (1.0 - profile.null_rate)
    expected = np.append(np.rint(freq * present), 0.0)
    if sk is None or len(sk.counts) != len(freq):
        actual = np.zeros(len(expected))
    else:
        actual = np.append(sk.counts.astype(np.float64), float(sk.unseen))
    out = FeatureDrift(feature=name, kind="categorical", rows=int(actual.sum()),
                       baseline_rows=int(expected.sum()), test=cfg.categorical_test,
                       drifted=None, labels=[*profile.frequencies, UNSEEN_LABEL])
    return _decide(out, expected, actual, cfg, ks=False)


def _decide(out: FeatureDrift, expected: np.ndarray, actual: np.ndarray, cfg: DriftConfig,
            ks: bool) -> FeatureDrift:
    exp_p, act_p = stats.proportions(expected), stats.proportions(actual)
    out.expected = [] if exp_p is None else [float(v) for v in exp_p]
    out.actual = [] if act_p is None else [float(v) for v in act_p]
    if exp_p is None or out.rows < cfg.min_rows:
        return out
    tests = _distance_tests(expected, actual, cfg)
    th = cfg.thresholds
    if ks:
        res = stats.ks_binned(expected, actual)
        if res is not None:
            tests["ks"] = DriftStat(test="ks", statistic=res[0], p_value=res[1],
                                     threshold=th.ks_p_value, drifted=res[1] < th.ks_p_value)
    else:
        chi = stats.chi2_homogeneity(expected, actual)
        if chi is not None:
            tests["chi2"] = DriftStat(test="chi2", statistic=chi[0], p_value=chi[1],
                                       dof=chi[2], threshold=th.chi2_p_value,
                                       drifted=chi[1] < th.chi2_p_value)
    out.tests = tests
    decider = tests.get(out.test)
    out.drifted = None if decider is None else decider.drifted
    return out


def compute_drift(baseline: Baseline, sketch: Sketch | None,
                  config: DriftConfig | None = None) -> DriftReport:
    """Drift of the window ``sketch`` (None: an empty window) against ``baseline``."""
    cfg = config or DriftConfig()
    numeric = {} if sketch is None else sketch.numeric
    categorical = {} if sketch is None else sketch.categorical
    features = [_numeric(name, "numeric", prof, numeric.get(name), cfg.numeric_test, cfg)
                for name, prof in baseline.numeric.items()]
    features += [_categorical(name, prof, categorical.get(name), baseline.rows, cfg)
                 for name, prof in baseline.categorical.items()]
    preds = None
    if baseline.predictions is not None:
        preds = _numeric("predictions", "predictions", baseline.predictions,
                         None if sketch is None else sketch.predictions,
                         cfg.prediction_test, cfg)
    judged = [f for f in features if f.drifted is not None]
    drifted = [f.feature for f in judged if f.drifted]
    share = len(drifted) / len(judged) if judged else 0.0
    return DriftReport(
        start=None if sketch is None else sketch.start,
        end=None if sketch is None else sketch.end,
        rows=0 if sketch is None else sketch.rows, features=features, predictions=preds,
        drifted_features=drifted, evaluated=len(judged), drift_share=share,
        dataset_drift_share=cfg.dataset_drift_share,
        dataset_drifted=bool(judged) and share >= cfg.dataset_drift_share)
