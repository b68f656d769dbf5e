"""Several metrics of one experiment: each metric's test, the multiplicity correction over
all of them, warnings for secondaries that got significantly worse, and CUPED on the
primary.

Secondary metrics are tested per request like the primary (two-proportion z-test when
every outcome is 0 or 1, else Welch's t-test); their p-values and the primary's are
corrected together (Holm, or Benjamini-Hochberg) with :mod:`mlray.abtest.multiple`.
CUPED (:mod:`mlray.abtest.cuped`, fixed horizon only) analyses the primary per unit (the
routing key): ``y`` is a unit's mean outcome since the start, ``x`` its mean outcome in
the equally long window before it; units with no pre-period requests get the mean ``x``
(so their adjustment is zero).
"""

from __future__ import annotations

import re

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mlray.abtest.arms import BinaryArm, ComparisonResult, ContinuousArm, CovariateArm
from mlray.abtest.cuped import cuped_test
from mlray.abtest.multiple import Correction, adjust_p_values
from mlray.abtest.stats import two_proportion_test, welch_test
from mlray.errors import InvalidInput

__all__ = ["CupedSummary", "MetricResult", "SecondaryMetric", "compare_values",
           "cuped_primary", "metric_results", "parse_secondary"]


class MetricResult(BaseModel):
    """One metric's test and its p-value after the correction across all metrics."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str
    primary: bool
    higher_is_better: bool = True
    result: ComparisonResult
    adjusted_p: float = Field(description="The p-value corrected over every metric.")
    significant: bool = Field(description="adjusted_p <= alpha.")
    worse: bool = Field(description="Significant and moved the bad way.")


class CupedSummary(BaseModel):
    """What CUPED did to the primary metric."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    theta: float
    variance_ratio: float = Field(description="Adjusted over unadjusted variance of the "
                                              "difference (1 - reduction).")
    units: int = Field(description="Units (routing keys) analysed, both arms.")
    with_pre: int = Field(description="Of those, units seen in the pre-period.")
    unadjusted: ComparisonResult = Field(description="Welch's test on the same units "
                                                     "without the adjustment.")

    @property
    def reduction(self) -> float:
        """Share of the variance CUPED removed."""
        return 1.0 - self.variance_ratio


def compare_values(control: np.ndarray, treatment: np.ndarray,
                   alpha: float) -> ComparisonResult:
    """Treatment against control on per-request outcomes: the z-test for 0/1 outcomes,
    Welch's t-test otherwise."""
    both = np.concatenate([control, treatment])
    if np.isin(both, (0.0, 1.0)).all():
        return two_proportion_test(BinaryArm.from_values(control),
                                   BinaryArm.from_values(treatment), alpha=alpha)
    return welch_test(ContinuousArm.from_values(control), ContinuousArm.from_values(treatment),
                      alpha=alpha)


def metric_results(results: dict[str, ComparisonResult], primary: str,
                   directions: dict[str, bool], correction: Correction, alpha: float
                   ) -> tuple[list[MetricResult], list[str]]:
    """Every metric with its corrected p-value (primary first), and a warning per
    secondary that is significant after the correction and moved the bad way
    (``directions``: metric -> higher is better)."""
    corrected = adjust_p_values({m: r.p_value for m, r in results.items()},
                                method=correction, alpha=alpha)
    out, warnings = [], []
    for metric in sorted(results, key=lambda m: m != primary):
        r, up = results[metric], directions.get(metric, True)
        adjusted = corrected.adjusted[metric]
        significant = corrected.significant[metric]
        worse = significant and r.diff != 0 and (r.diff > 0) != up
        out.append(MetricResult(metric=metric, primary=metric == primary,
                                higher_is_better=up, result=r, adjusted_p=adjusted,
                                significant=significant, worse=worse))
        if worse and metric != primary:
            warnings.append(f"secondary metric {metric} is significantly worse: diff "
                            f"{r.diff:+.4g}, {correction}-adjusted p {adjusted:.3g} <= "
                            f"alpha {alpha:g}")
    return out, warnings


def _pairs(y: dict[str, float], x: dict[str, float], fill: float
           ) -> tuple[np.ndarray, np.ndarray]:
    units = sorted(y)
    return (np.array([y[u] for u in units], dtype=np.float64),
            np.array([x.get(u, fill) for u in units], dtype=np.float64))


def cuped_primary(control_y: dict[str, float], treatment_y: dict[str, float],
                  pre_x: dict[str, float], alpha: float
                  ) -> tuple[ComparisonResult, CupedSummary] | None:
    """The CUPED-adjusted primary result from per-unit means (unit -> mean outcome in
    the experiment, per arm; unit -> mean outcome in the pre-period), or None while an
    arm has fewer than two units."""
    if len(control_y) < 2 or len(treatment_y) < 2:
        return None
    seen = [pre_x[u] for u in (*control_y, *treatment_y) if u in pre_x]
    fill = float(np.mean(seen)) if seen else 0.0
    yc, xc = _pairs(control_y, pre_x, fill)
    yt, xt = _pairs(treatment_y, pre_x, fill)
    cuped = cuped_test(CovariateArm.from_values(yc, xc), CovariateArm.from_values(yt, xt),
                       alpha=alpha)
    raw = welch_test(ContinuousArm.from_values(yc), ContinuousArm.from_values(yt),
                     alpha=alpha)
    return cuped.result, CupedSummary(theta=cuped.theta, variance_ratio=cuped.variance_ratio,
                                      units=yc.size + yt.size, with_pre=len(seen),
                                      unadjusted=raw)


_METRIC = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class SecondaryMetric(BaseModel):
    """A metric watched beside the primary: reported, corrected, never deciding."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_METRIC.pattern, description="correct, caught, or a label "
                                                           "name (conversion, loss_amount).")
    higher_is_better: bool = True

    def __str__(self) -> str:
        return self.name if self.higher_is_better else f"{self.name}:lower"


def parse_secondary(text: str | list[str]) -> list[SecondaryMetric]:
    """``"conversion,loss_amount:lower"`` (or a list of such entries) -> the metrics;
    ``:lower`` marks a cost (lower is better).

    Raises:
        InvalidInput: a malformed name, an unknown suffix, a metric named twice.
    """
    entries = text.split(",") if isinstance(text, str) else list(text)
    out: list[SecondaryMetric] = []
    for entry in filter(None, (e.strip() for e in entries)):
        name, sep, suffix = entry.partition(":")
        if sep and suffix not in ("lower", "higher"):
            raise InvalidInput(f"secondary {entry!r}: the suffix is :lower or :higher",
                               field="secondary")
        if not _METRIC.match(name):
            raise InvalidInput(f"secondary {entry!r}: a metric name is lower-case letters, "
                               "digits and _ (at most 64)", field="secondary")
        if any(m.name == name for m in out):
            raise InvalidInput(f"secondary: {name} is named twice", field="secondary")
        out.append(SecondaryMetric(name=name, higher_is_better=suffix != "lower"))
    return out
