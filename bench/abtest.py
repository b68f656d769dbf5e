"""A/B statistics: peeking at A/A experiments, and CUPED's variance reduction (issue 14).

    .venv/bin/python bench/abtest.py [--runs 1000] [--max-n 10000] [--peek 100] [--alpha 0.05]

Over ``--runs`` simulated A/A experiments (both arms drawn from the same distribution),
each looked at every ``--peek`` units per arm up to ``--max-n``, the false-positive rate
(the share of experiments that ever declared a difference) of:

- the mSPRT (:mod:`mlray.abtest.sequential`), stopping at the first look with p <= alpha;
- the fixed-horizon test read at every look the same way (z-test for the binary metric,
  Welch for the continuous one): what a dashboard watched daily does;
- the fixed-horizon test read once, at ``--max-n`` (the baseline: about alpha).

Metrics: a 10% conversion rate (mixture sd 1 point) and an exponential amount of mean 20
(mixture sd 1.0). Then the price of always-valid inference: with a real effect (10% ->
11%), the z-test read once at the size :func:`sample_size_binary` plans for 80% power,
against the mSPRT's power by that size and by three times it (and its median stop). Last, CUPED on a
metric correlated with its pre-period covariate (correlation rho, 10,000 units per arm):
the variance of the adjusted difference over the unadjusted one (theory: 1 - rho^2).

The simulations use the library's array formulas (``z_test_arrays``, ``welch_arrays``,
``msprt_log_e``); the first runs are replayed through the checked public API
(:class:`SequentialTest`, :func:`two_proportion_test`) and must reach the same verdicts.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
from rich.console import Console

from bench._report import print_table
from mlray.abtest.arms import BinaryArm, CovariateArm
from mlray.abtest.cuped import cuped_test
from mlray.abtest.power import sample_size_binary
from mlray.abtest.sequential import SequentialTest, msprt_log_e
from mlray.abtest.stats import two_proportion_test, welch_arrays, z_test_arrays

console = Console(width=130)
RATE, RATE_SD = 0.10, 0.01  # conversion and the mSPRT's mixture sd (1 point)
MEAN, MEAN_SD = 20.0, 1.0  # exponential amount and its mixture sd (5%)
REPLAYED = 20  # runs replayed through the public API


def _rate(hits: np.ndarray) -> str:
    """A false-positive rate with its binomial standard error."""
    p = float(hits.mean())
    return f"{p:.3f} ± {math.sqrt(p * (1 - p) / hits.size):.3f}"


def binary_counts(rng: np.random.Generator, runs: int, looks: int, peek: int,
                  rates: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative conversions per look, control and treatment: (runs, looks) each."""
    return tuple(rng.binomial(peek, r, size=(runs, looks)).cumsum(axis=1) for r in rates)


def binary_aa(rng: np.random.Generator, args: argparse.Namespace, looks: np.ndarray
              ) -> tuple[dict[str, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Per run: ever rejected by the mSPRT, by the z-test at any look, by it once at the end."""
    x_c, x_t = binary_counts(rng, args.runs, looks.size, args.peek, (RATE, RATE))
    _, p_fixed = z_test_arrays(x_t, looks, x_c, looks)
    p_c, p_t = x_c / looks, x_t / looks
    log_e = msprt_log_e(p_t - p_c, (p_c * (1 - p_c) + p_t * (1 - p_t)) / looks, RATE_SD)
    return {"sequential": (log_e >= math.log(1 / args.alpha)).any(axis=1),
            "peeked": (p_fixed <= args.alpha).any(axis=1),
            "once": p_fixed[:, -1] <= args.alpha}, (x_c, x_t)


def continuous_aa(rng: np.random.Generator, args: argparse.Namespace, looks: np.ndarray
                  ) -> dict[str, np.ndarray]:
    """The same three verdicts per run for an exponential metric (Welch), in chunks."""
    out: dict[str, list[np.ndarray]] = {"sequential": [], "peeked": [], "once": []}
    chunk = max(1, 2_000_000 // args.max_n)
    for start in range(0, args.runs, chunk):
        runs = min(chunk, args.runs - start)
        arms = []
        for _ in range(2):
            y = rng.exponential(MEAN, size=(runs, looks.size, args.peek))
            total = y.sum(axis=2).cumsum(axis=1)
            total_sq = (y * y).sum(axis=2).cumsum(axis=1)
            mean = total / looks
            arms.append((mean, (total_sq - total * mean) / (looks - 1)))
        (m_c, v_c), (m_t, v_t) = arms
        _, _, p = welch_arrays(m_t, v_t, looks, m_c, v_c, looks)
        log_e = msprt_log_e(m_t - m_c, v_t / looks + v_c / looks, MEAN_SD)
        out["sequential"].append((log_e >= math.log(1 / args.alpha)).any(axis=1))
        out["peeked"].append((p <= args.alpha).any(axis=1))
        out["once"].append(p[:, -1] <= args.alpha)
    return {k: np.concatenate(v) for k, v in out.items()}


def replay(x_c: np.ndarray, x_t: np.ndarray, looks: np.ndarray, alpha: float,
           verdicts: dict[str, np.ndarray]) -> int:
    """Re-run the first runs through the public API; the number that agree (all, or raise)."""
    for run in range(min(REPLAYED, x_c.shape[0])):
        test = SequentialTest(mixture_sd=RATE_SD, alpha=alpha)
        peeked = False
        for k, n in enumerate(looks):
            c = BinaryArm(n=int(n), successes=int(x_c[run, k]))
            t = BinaryArm(n=int(n), successes=int(x_t[run, k]))
            test.look(c, t)
            peeked |= two_proportion_test(c, t, alpha=alpha).significant
        if (test.rejected, peeked) != (verdicts["sequential"][run], verdicts["peeked"][run]):
            raise AssertionError(f"run {run}: the public API disagrees with the arrays")
    return min(REPLAYED, x_c.shape[0])


def power_row(rng: np.random.Generator, args: argparse.Namespace
              ) -> list[tuple[str, str, str, str]]:
    """mSPRT vs a fixed-horizon z-test with a real effect (10% -> 11%), same peek spacing.

    The fixed test reads once at the planned size (80% power); the mSPRT looks every
    ``--peek`` units up to three times that size.
    """
    plan = sample_size_binary(RATE, 0.01, alpha=args.alpha, power=0.8)
    looks = np.arange(args.peek, 3 * plan.control + args.peek, args.peek)
    x_c, x_t = binary_counts(rng, args.runs, looks.size, args.peek, (RATE, RATE + 0.01))
    p_c, p_t = x_c / looks, x_t / looks
    log_e = msprt_log_e(p_t - p_c, (p_c * (1 - p_c) + p_t * (1 - p_t)) / looks, RATE_SD)
    hit = log_e >= math.log(1 / args.alpha)
    first = np.where(hit.any(axis=1), looks[np.argmax(hit, axis=1)], np.iinfo(np.int64).max)
    once_c = rng.binomial(plan.control, RATE, size=args.runs)
    once_t = rng.binomial(plan.treatment, RATE + 0.01, size=args.runs)
    _, p_once = z_test_arrays(once_t, plan.treatment, once_c, plan.control)
    found = first <= looks[-1]
    median = f"median stop {int(np.median(first[found])):,}/arm" if found.any() else "never"
    return [
        ("real effect 10% -> 11%", "z-test once, planned size",
         f"power {(p_once <= args.alpha).mean():.3f}",
         f"{plan.control:,}/arm (sample_size_binary, power 0.8)"),
        ("", "mSPRT, any look", f"power {(first <= plan.control).mean():.3f} "
                                f"by {plan.control:,}/arm", ""),
        ("", "", f"power {found.mean():.3f} by {looks[-1]:,}/arm", median),
    ]


def cuped_rows(rng: np.random.Generator, n: int = 10_000) -> list[tuple[str, str, str]]:
    """CUPED's variance ratio on data with pre/post correlation rho."""
    rows = []
    for rho in (0.3, 0.5, 0.7, 0.9):
        arms = []
        for effect in (0.0, 0.5):
            x = rng.normal(50.0, 10.0, n)
            y = 20.0 + effect + rho * (x - 50.0) + rng.normal(0, 10 * math.sqrt(1 - rho**2), n)
            arms.append(CovariateArm.from_values(y, x))
        r = cuped_test(*arms)
        rows.append((f"{rho:.1f}", f"{r.variance_ratio:.3f}", f"{1 - rho * rho:.3f}",
                     f"{r.theta:.3f}", f"{r.result.p_value:.2g}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--max-n", type=int, default=10_000, help="units per arm")
    parser.add_argument("--peek", type=int, default=100, help="units per arm between looks")
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    looks = np.arange(args.peek, args.max_n + 1, args.peek)
    t0 = time.perf_counter()
    binary, (x_c, x_t) = binary_aa(rng, args, looks)
    continuous = continuous_aa(rng, args, looks)
    checked = replay(x_c, x_t, looks, args.alpha, binary)
    rows = [(name, _rate(v["sequential"]), _rate(v["peeked"]), _rate(v["once"]))
            for name, v in (("binary: 10% conversion (z-test)", binary),
                            ("continuous: exponential, mean 20 (Welch)", continuous))]
    print_table(console, f"bench/abtest.py: false-positive rate over {args.runs:,} A/A runs, "
                         f"a look every {args.peek} units per arm up to {args.max_n:,} "
                         f"({looks.size} looks), alpha {args.alpha}",
                ("metric", "mSPRT, stop at any look", "fixed-horizon, stop at any look",
                 "fixed-horizon, read once at the end"), rows)
    print_table(console, "power with a real effect (same looks)",
                ("experiment", "test", "result", "sample"), power_row(rng, args))
    print_table(console, "CUPED, 10,000 units per arm (treatment +0.5)",
                ("rho", "variance ratio", "1 - rho^2", "theta", "p (CUPED)"), cuped_rows(rng))
    console.print(f"target: mSPRT <= alpha ({args.alpha}) and the peeked fixed-horizon test "
                  f"above it; the first {checked} binary runs replayed through "
                  f"SequentialTest and two_proportion_test agree with the array formulas; "
                  f"{time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
