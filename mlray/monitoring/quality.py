"""Data-quality checks on live inputs, from the same sketches drift uses.

Each check gives a ``score``, the share of the feature's live rows (or values) that are
bad, and fails when the score is above its threshold:

- ``missing``: nulls / rows; threshold = the baseline's null rate + ``missing_tolerance``
  (a column absent from a request counts as null).
- ``out_of_range``: values below the baseline min or above its max / non-null values
  (numeric features with a baseline range).
- ``type_mismatch``: values of the wrong type (a string for a numeric feature) / rows.
- ``unseen_category``: values not among the baseline's categories / non-null values.

A check with nothing to count (no rows, or no values) gets score 0 and passes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mlray.monitoring.baseline import Baseline
from mlray.monitoring.sketch import Sketch

__all__ = ["QualityCheck", "QualityReport", "QualityThresholds", "check_quality"]

CheckName = Literal["missing", "out_of_range", "type_mismatch", "unseen_category"]


class QualityThresholds(BaseModel):
    """The largest share of bad rows each check lets through."""

    model_config = ConfigDict(extra="forbid")

    missing_tolerance: float = Field(0.05, ge=0, le=1, description="Allowed missing-value "
                                     "ratio above the baseline's null rate.")
    out_of_range: float = Field(0.01, ge=0, le=1,
                                description="Allowed share of values outside [min, max].")
    type_mismatch: float = Field(0.0, ge=0, le=1,
                                 description="Allowed share of values of the wrong type.")
    unseen_category: float = Field(0.01, ge=0, le=1,
                                   description="Allowed share of categories not in training.")


class QualityCheck(BaseModel):
    """One check on one feature."""

    feature: str
    check: CheckName
    count: int = Field(description="Bad rows or values.")
    total: int = Field(description="What the score divides by.")
    score: float = Field(description="count / total, 0 when total is 0.")
    threshold: float
    passed: bool


class QualityReport(BaseModel):
    """All checks over one window."""

    rows: int = 0
    checks: list[QualityCheck] = Field(default_factory=list)

    @property
    def failed(self) -> list[QualityCheck]:
        """The checks that failed."""
        return [c for c in self.checks if not c.passed]

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return not self.failed

    @property
    def score(self) -> float:
        """The share of checks that passed (1.0 with no checks)."""
        return 1.0 - len(self.failed) / len(self.checks) if self.checks else 1.0


def _check(feature: str, check: CheckName, count: int, total: int,
           threshold: float) -> QualityCheck:
    score = count / total if total else 0.0
    return QualityCheck(feature=feature, check=check, count=count, total=total, score=score,
                        threshold=threshold, passed=score <= threshold)


def check_quality(baseline: Baseline, sketch: Sketch | None,
                  thresholds: QualityThresholds | None = None) -> QualityReport:
    """Run every check on every baseline feature over the window ``sketch``."""
    th = thresholds or QualityThresholds()
    if sketch is None:
        return QualityReport()
    checks: list[QualityCheck] = []
    for name, prof in baseline.numeric.items():
        sk = sketch.numeric.get(name)
        if sk is None:
            continue
        checks.append(_check(name, "missing", sk.nulls, sk.rows,
                             min(1.0, prof.null_rate + th.missing_tolerance)))
        if prof.min is not None and prof.max is not None:
            checks.append(_check(name, "out_of_range", sk.below + sk.above, sk.values,
                                 th.out_of_range))
        checks.append(_check(name, "type_mismatch", sk.mismatches, sk.rows, th.type_mismatch))
    for name, cprof in baseline.categorical.items():
        cs = sketch.categorical.get(name)
        if cs is None:
            continue
        checks.append(_check(name, "missing", cs.nulls, cs.rows,
                             min(1.0, cprof.null_rate + th.missing_tolerance)))
        checks.append(_check(name, "type_mismatch", cs.mismatches, cs.rows, th.type_mismatch))
        checks.append(_check(name, "unseen_category", cs.unseen, cs.values,
                             th.unseen_category))
    return QualityReport(rows=sketch.rows, checks=checks)
