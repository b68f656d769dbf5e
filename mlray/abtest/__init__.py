"""A/B experiment statistics: pure functions and plain classes over per-arm totals.

No Ray, no storage: numpy and scipy only. A service keeps running totals per arm
(:mod:`~mlray.abtest.arms`) and calls:

- :mod:`~mlray.abtest.srm`: sample-ratio mismatch (chi-square, flagged below p = 0.001);
- :mod:`~mlray.abtest.stats`: fixed-horizon two-proportion z-test and Welch's t-test, with
  intervals for the difference and the lift;
- :mod:`~mlray.abtest.sequential`: the always-valid mSPRT (peek at will);
- :mod:`~mlray.abtest.cuped`: variance reduction with a pre-period covariate;
- :mod:`~mlray.abtest.multiple`: Holm and Benjamini-Hochberg across metrics;
- :mod:`~mlray.abtest.power`: sample size per arm, up front;
- :mod:`~mlray.abtest.bandits`: Thompson sampling and epsilon-greedy traffic weights;
- :mod:`~mlray.abtest.decision`: winner, no difference, keep running or invalid, and why.
"""

from mlray.abtest.arms import (
    BinaryArm,
    ComparisonResult,
    ContinuousArm,
    CovariateArm,
    Interval,
)
from mlray.abtest.bandits import BanditState, EpsilonGreedy, ThompsonSampling
from mlray.abtest.cuped import CupedResult, cuped_test
from mlray.abtest.decision import Decision, Guardrail, decide
from mlray.abtest.multiple import CorrectionResult, adjust_p_values
from mlray.abtest.power import SampleSize, sample_size_binary, sample_size_continuous
from mlray.abtest.sequential import SequentialState, SequentialTest, msprt_test
from mlray.abtest.srm import SrmResult, sample_ratio_mismatch
from mlray.abtest.stats import two_proportion_test, welch_test

__all__ = [
    "BanditState",
    "BinaryArm",
    "ComparisonResult",
    "ContinuousArm",
    "CorrectionResult",
    "CovariateArm",
    "CupedResult",
    "Decision",
    "EpsilonGreedy",
    "Guardrail",
    "Interval",
    "SampleSize",
    "SequentialState",
    "SequentialTest",
    "SrmResult",
    "ThompsonSampling",
    "adjust_p_values",
    "cuped_test",
    "decide",
    "msprt_test",
    "sample_ratio_mismatch",
    "sample_size_binary",
    "sample_size_continuous",
    "two_proportion_test",
    "welch_test",
]
