"""Data-quality checks on live inputs from the drift sketches."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlray.monitoring.baseline import Baseline, profile_frame
from mlray.monitoring.quality import QualityThresholds, check_quality
from mlray.monitoring.sketch import Sketcher


@pytest.fixture
def baseline() -> Baseline:
    rng = np.random.default_rng(3)
    x = rng.uniform(0.0, 10.0, size=1000)
    x[:100] = np.nan  # 10% null in training
    train = pd.DataFrame({"x": x, "c": rng.choice(["a", "b"], size=1000)})
    return profile_frame(train, numeric=["x"], categorical=["c"])


def _by(report, feature: str, check: str):
    (found,) = [c for c in report.checks if c.feature == feature and c.check == check]
    return found


def test_clean_traffic_passes(baseline):
    rng = np.random.default_rng(4)
    x = rng.uniform(1.0, 9.0, size=1000)
    x[:100] = np.nan
    sk = Sketcher(baseline).sketch({"x": x, "c": rng.choice(["a", "b"], size=1000)}, now=0.0)
    report = check_quality(baseline, sk)
    assert report.passed and report.score == 1.0 and report.rows == 1000
    assert {c.check for c in report.checks} == {"missing", "out_of_range", "type_mismatch",
                                                "unseen_category"}
    missing = _by(report, "x", "missing")
    assert missing.score == pytest.approx(0.1)
    assert missing.threshold == pytest.approx(0.15)  # baseline null rate + tolerance


def test_each_problem_fails_its_check(baseline):
    x = np.array([1.0, 2.0, np.nan, np.nan, np.nan, -5.0, 50.0, "bad", None, 3.0],
                 dtype=object)
    c = np.array(["a", "b", "zz", "zz", None, "a", "b", "a", 1.5, ["x"]], dtype=object)
    report = check_quality(baseline, Sketcher(baseline).sketch({"x": x, "c": c}, now=0.0))
    assert not report.passed
    miss = _by(report, "x", "missing")
    assert (miss.count, miss.total, miss.score, miss.passed) == (4, 10, 0.4, False)
    oor = _by(report, "x", "out_of_range")
    assert (oor.count, oor.total, oor.passed) == (2, 5, False)
    typ = _by(report, "x", "type_mismatch")
    assert (typ.count, typ.passed) == (1, False)
    unseen = _by(report, "c", "unseen_category")
    assert (unseen.count, unseen.total, unseen.passed) == (3, 8, False)  # 1.5 is unseen "1.5"
    assert _by(report, "c", "type_mismatch").count == 1
    assert _by(report, "c", "missing").count == 1
    assert len(report.failed) == len(report.checks) == 6 and report.score == 0.0


def test_all_null_feature_and_missing_column(baseline):
    sk = Sketcher(baseline).sketch({"x": np.full(20, np.nan)}, now=0.0)
    report = check_quality(baseline, sk)
    assert _by(report, "x", "missing").score == 1.0
    assert _by(report, "x", "out_of_range").score == 0.0  # nothing to range-check
    assert _by(report, "c", "missing").score == 1.0  # absent column: all null
    assert _by(report, "c", "unseen_category").passed


def test_empty_window(baseline):
    report = check_quality(baseline, None)
    assert report.checks == [] and report.passed and report.score == 1.0
    empty = check_quality(baseline, Sketcher(baseline).new(0.0))
    assert empty.passed and all(c.score == 0.0 for c in empty.checks)


def test_thresholds_are_configurable(baseline):
    x = np.array([1.0, 2.0, 50.0, 3.0])
    sk = Sketcher(baseline).sketch({"x": x, "c": np.array(["a"] * 4)}, now=0.0)
    assert not _by(check_quality(baseline, sk), "x", "out_of_range").passed
    lax = check_quality(baseline, sk, QualityThresholds(out_of_range=0.3))
    assert _by(lax, "x", "out_of_range").passed
    with pytest.raises(ValidationError):
        QualityThresholds(out_of_range=2.0)
