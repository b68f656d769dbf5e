"""Distribution distances and tests on binned counts (pure numpy and math, no scipy).

Every function takes two count vectors over the same bins: ``expected`` (the training
baseline) and ``actual`` (live traffic). Conventions, pinned by tests against scipy:

- PSI and KL smooth both distributions first (:func:`smooth`): each proportion gets
  ``eps`` added and the vector is renormalised, ``p' = (p + eps) / (1 + k * eps)``, so an
  empty bin on either side gives a large but finite value. ``eps`` defaults to 1e-4.
- KL is ``KL(actual || expected)`` in nats: ``scipy.stats.entropy(actual', expected')``.
- Jensen-Shannon is the *distance* (square root of the divergence) in base 2, on the raw
  proportions (it is finite with empty bins), so it lies in [0, 1]:
  ``scipy.spatial.distance.jensenshannon(expected, actual, base=2)``.
- KS compares the binned CDFs: ``D = max_i |F_expected(i) - F_actual(i)|`` at the bin
  edges, which is exactly ``scipy.stats.ks_2samp`` on the samples' bin indices. The
  p-value is the asymptotic Kolmogorov distribution at ``sqrt(n_eff) * D`` with
  ``n_eff = n * m / (n + m)`` (``scipy.stats.kstwobign.sf``). Binning can only lower D
  (the raw-data D is at least the binned one), so the p-value is conservative.
- Chi-square is the test of homogeneity on the 2 x k table (baseline counts, live
  counts), without Yates' correction, columns empty in both rows dropped:
  ``scipy.stats.chi2_contingency(table, correction=False)``. Its p-value is the
  regularised upper incomplete gamma function (:func:`chi2_sf`).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "DEFAULT_EPSILON",
    "chi2_homogeneity",
    "chi2_sf",
    "js_distance",
    "kl_divergence",
    "kolmogorov_sf",
    "ks_binned",
    "proportions",
    "psi",
    "smooth",
]

#: Added to every proportion before PSI and KL (then renormalised).
DEFAULT_EPSILON = 1e-4

_EPS_FLOAT = 1e-16
_MAX_ITER = 1000


def proportions(counts: ArrayLike) -> np.ndarray | None:
    """``counts / counts.sum()`` as float64, or None when the total is zero."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return None if total <= 0 else c / total


def smooth(counts: ArrayLike, eps: float = DEFAULT_EPSILON) -> np.ndarray | None:
    """Proportions with ``eps`` added to each bin and renormalised (None when empty)."""
    p = proportions(counts)
    if p is None:
        return None
    return (p + eps) / (1.0 + len(p) * eps)


def _pair(expected: ArrayLike, actual: ArrayLike, eps: float
          ) -> tuple[np.ndarray, np.ndarray] | None:
    p, q = smooth(expected, eps), smooth(actual, eps)
    if p is None or q is None or len(p) != len(q):
        return None
    return p, q


def psi(expected: ArrayLike, actual: ArrayLike, eps: float = DEFAULT_EPSILON) -> float | None:
    """Population stability index ``sum((q - p) * ln(q / p))`` on smoothed proportions."""
    pair = _pair(expected, actual, eps)
    if pair is None:
        return None
    p, q = pair
    return float(np.sum((q - p) * np.log(q / p)))


def kl_divergence(expected: ArrayLike, actual: ArrayLike,
                  eps: float = DEFAULT_EPSILON) -> float | None:
    """``KL(actual || expected)`` in nats on smoothed proportions."""
    pair = _pair(expected, actual, eps)
    if pair is None:
        return None
    p, q = pair
    return float(np.sum(q * np.log(q / p)))


def _kl_raw(a: np.ndarray, m: np.ndarray) -> float:
    mask = a > 0  # 0 * log(0 / m) = 0
    return float(np.sum(a[mask] * np.log2(a[mask] / m[mask])))


def js_distance(expected: ArrayLike, actual: ArrayLike) -> float | None:
    """Jensen-Shannon distance in base 2 (in [0, 1]) on the raw proportions."""
    p, q = proportions(expected), proportions(actual)
    if p is None or q is None or len(p) != len(q):
        return None
    m = (p + q) / 2.0
    div = (_kl_raw(p, m) + _kl_raw(q, m)) / 2.0
    return math.sqrt(max(div, 0.0))


def kolmogorov_sf(x: float) -> float:
    """``P(K > x)`` for the Kolmogorov distribution (``scipy.stats.kstwobign.sf``)."""
    if x <= 0.0:
        return 1.0
    if x < 1.18:  # the theta-function form converges fast for small x
        w = math.pi ** 2 / (8.0 * x * x)
        total = 0.0
        for k in range(1, _MAX_ITER, 2):
            term = math.exp(-k * k * w)
            total += term
            if term < 1e-18 * total:
                break
        return min(1.0, max(0.0, 1.0 - math.sqrt(2.0 * math.pi) / x * total))
    total, sign = 0.0, 1.0
    for k in range(1, _MAX_ITER):
        term = math.exp(-2.0 * k * k * x * x)
        total += sign * term
        if term < 1e-18 * abs(total) or term == 0.0:
            break
        sign = -sign
    return min(1.0, max(0.0, 2.0 * total))


def ks_binned(expected: ArrayLike, actual: ArrayLike) -> tuple[float, float] | None:
    """KS statistic on the binned CDFs and its asymptotic p-value (see module docstring)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    n, m = e.sum(), a.sum()
    if n <= 0 or m <= 0 or len(e) != len(a):
        return None
    d = float(np.max(np.abs(np.cumsum(e) / n - np.cumsum(a) / m)))
    n_eff = n * m / (n + m)
    return d, kolmogorov_sf(math.sqrt(n_eff) * d)


def _gamma_series(a: float, x: float) -> float:
    """Regularised lower incomplete gamma ``P(a, x)`` by its series (x < a + 1)."""
    term = total = 1.0 / a
    ap = a
    for _ in range(_MAX_ITER):
        ap += 1.0
        term *= x / ap
        total += term
        if abs(term) < abs(total) * 1e-16:
            break
    return total * math.exp(-x + a * math.log(x) - math.lgamma(a))


def _gamma_cf(a: float, x: float) -> float:
    """Regularised upper incomplete gamma ``Q(a, x)`` by Lentz's continued fraction."""
    tiny = 1e-300
    b = x + 1.0 - a
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, _MAX_ITER):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS_FLOAT:
            break
    return math.exp(-x + a * math.log(x) - math.lgamma(a)) * h


def chi2_sf(stat: float, dof: int) -> float:
    """``P(X > stat)`` for a chi-square with ``dof`` degrees of freedom (``chi2.sf``)."""
    if dof <= 0:
        return float("nan")
    if stat <= 0.0:
        return 1.0
    a, x = dof / 2.0, stat / 2.0
    if x < a + 1.0:
        return max(0.0, 1.0 - _gamma_series(a, x))
    return min(1.0, _gamma_cf(a, x))


def chi2_homogeneity(expected: ArrayLike, actual: ArrayLike
                     ) -> tuple[float, float, int] | None:
    """Chi-square test that both count rows come from one distribution.

    Returns ``(statistic, p_value, dof)``; None when either row is empty. A single
    non-empty column gives ``(0.0, 1.0, 0)``.
    """
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if len(e) != len(a) or e.sum() <= 0 or a.sum() <= 0:
        return None
    keep = (e + a) > 0
    table = np.vstack([e[keep], a[keep]])
    if table.shape[1] < 2:
        return 0.0, 1.0, 0
    rows = table.sum(axis=1, keepdims=True)
    cols = table.sum(axis=0, keepdims=True)
    exp = rows * cols / table.sum()
    stat = float(np.sum((table - exp) ** 2 / exp))
    dof = table.shape[1] - 1
    return stat, chi2_sf(stat, dof), dof
