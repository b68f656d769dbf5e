"""Bandit traffic allocation over arms (model versions) with binary rewards.

For when regret matters more than inference: traffic shifts toward the arm that looks
best while the test runs, instead of a fixed split. Each bandit holds per-arm successes
and failures (:class:`BanditState`, persistable), takes feedback with :meth:`update` and
gives the traffic split with :meth:`weights` (shares summing to 1, for the traffic
policy).

- :class:`ThompsonSampling`: Beta-Bernoulli; each arm's weight is the posterior
  probability that it is the best, estimated by Monte Carlo (``draws`` joint draws from
  the arms' Beta posteriors). The generator is seeded with ``(seed, observations so
  far)``, so the same state always gives the same weights (a restarted actor agrees with
  itself). An optional ``floor`` keeps every arm at a minimum share.
- :class:`EpsilonGreedy`: ``1 - epsilon`` to the arm with the highest observed rate
  (split evenly on a tie) and ``epsilon`` spread evenly over all arms (the best included).
  An arm without observations counts as best, so each arm is tried.

A bandit's split is adaptive: the fixed-horizon tests' p-values do not apply to data it
collected. Use it to earn, an A/B test to learn.
"""

from __future__ import annotations

import abc
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from mlray._private.validation import build
from mlray.errors import InvalidInput

__all__ = ["ArmCounts", "BanditState", "EpsilonGreedy", "ThompsonConfig", "ThompsonSampling"]

_Count = Annotated[int, Field(ge=0)]


class ArmCounts(BaseModel):
    """One arm's rewards so far."""

    model_config = ConfigDict(extra="forbid")

    successes: _Count = 0
    failures: _Count = 0

    @property
    def n(self) -> int:
        """Observations of the arm."""
        return self.successes + self.failures


class BanditState(BaseModel):
    """Every arm's counts (what a bandit persists)."""

    model_config = ConfigDict(extra="forbid")

    arms: dict[str, ArmCounts] = Field(description="Arm name -> its counts; two or more.")

    @field_validator("arms")
    @classmethod
    def _two_or_more(cls, arms: dict[str, ArmCounts]) -> dict[str, ArmCounts]:
        if len(arms) < 2:
            raise ValueError(f"a bandit needs at least two arms (got {sorted(arms)})")
        return arms


class _Bandit(abc.ABC):
    """Counts per arm and feedback; subclasses turn the counts into weights."""

    def __init__(self, arms: list[str] | BanditState) -> None:
        if isinstance(arms, BanditState):
            self._state = arms.model_copy(deep=True)
        else:
            names = list(arms)
            if len(set(names)) != len(names):
                raise InvalidInput(f"arms: duplicate names in {names}", field="arms")
            self._state = build(BanditState, arms={a: ArmCounts() for a in names})

    @property
    def arms(self) -> list[str]:
        """Arm names, in their order."""
        return list(self._state.arms)

    def state(self) -> BanditState:
        """A copy of the counts (persist it; pass it back to resume)."""
        return self._state.model_copy(deep=True)

    def update(self, arm: str, successes: int = 0, failures: int = 0) -> None:
        """Add feedback: ``successes`` rewards of 1 and ``failures`` of 0 for ``arm``.

        Raises:
            InvalidInput: an unknown arm, or a negative count.
        """
        if arm not in self._state.arms:
            raise InvalidInput(f"arm: unknown arm {arm!r} (arms: {self.arms})", field="arm")
        for name, value in (("successes", successes), ("failures", failures)):
            if not isinstance(value, int | np.integer) or value < 0:
                raise InvalidInput(f"{name}: must be a non-negative integer (got {value!r})",
                                   field=name)
        counts = self._state.arms[arm]
        counts.successes += int(successes)
        counts.failures += int(failures)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        s = np.array([c.successes for c in self._state.arms.values()], dtype=np.float64)
        f = np.array([c.failures for c in self._state.arms.values()], dtype=np.float64)
        return s, f

    @abc.abstractmethod
    def weights(self) -> dict[str, float]:
        """The traffic share of each arm (they sum to 1)."""


class ThompsonConfig(BaseModel):
    """Settings of Thompson sampling."""

    model_config = ConfigDict(extra="forbid")

    seed: int = Field(0, description="Seeds the Monte Carlo draws (with the counts).")
    draws: int = Field(10_000, ge=100, le=10_000_000,
                       description="Joint posterior draws per weights() call.")
    prior_alpha: float = Field(1.0, gt=0, description="Beta prior: pseudo-successes.")
    prior_beta: float = Field(1.0, gt=0, description="Beta prior: pseudo-failures.")
    floor: float = Field(0.0, ge=0, lt=0.5, description="Minimum share of every arm.")


class ThompsonSampling(_Bandit):
    """Beta-Bernoulli Thompson sampling: weight = P(arm is best | feedback).

    Args:
        arms: the arm names, or a persisted :class:`BanditState`.
        seed, draws, prior_alpha, prior_beta, floor: see :class:`ThompsonConfig`.

    Raises:
        InvalidInput: fewer than two arms, duplicates, a setting out of range, a floor
            that leaves nothing to allocate (``floor * arms >= 1``).
    """

    def __init__(self, arms: list[str] | BanditState, *, seed: int = 0, draws: int = 10_000,
                 prior_alpha: float = 1.0, prior_beta: float = 1.0,
                 floor: float = 0.0) -> None:
        super().__init__(arms)
        self.config = build(ThompsonConfig, seed=seed, draws=draws, prior_alpha=prior_alpha,
                            prior_beta=prior_beta, floor=floor)
        if self.config.floor * len(self.arms) >= 1.0:
            raise InvalidInput(f"floor: {floor} x {len(self.arms)} arms leaves no traffic "
                               "to allocate", field="floor")

    def win_probabilities(self) -> dict[str, float]:
        """Monte Carlo estimate of each arm's probability of having the highest rate."""
        s, f = self._arrays()
        c = self.config
        rng = np.random.default_rng([c.seed, int(s.sum() + f.sum())])
        samples = rng.beta(s + c.prior_alpha, f + c.prior_beta, size=(c.draws, s.size))
        wins = np.bincount(np.argmax(samples, axis=1), minlength=s.size) / c.draws
        return {a: float(w) for a, w in zip(self.arms, wins, strict=True)}

    def weights(self) -> dict[str, float]:
        """Traffic shares: win probabilities, lifted to ``floor`` (summing to 1)."""
        k, floor = len(self.arms), self.config.floor
        return {a: floor + (1.0 - k * floor) * p for a, p in self.win_probabilities().items()}


class EpsilonGreedy(_Bandit):
    """Epsilon-greedy: ``1 - epsilon`` to the best observed rate, ``epsilon`` spread evenly.

    Raises:
        InvalidInput: fewer than two arms, duplicates, epsilon outside [0, 1].
    """

    def __init__(self, arms: list[str] | BanditState, *, epsilon: float = 0.1) -> None:
        super().__init__(arms)
        if not isinstance(epsilon, int | float) or not 0.0 <= epsilon <= 1.0:
            raise InvalidInput(f"epsilon: must be in [0, 1] (got {epsilon!r})",
                               field="epsilon")
        self.epsilon = float(epsilon)

    def rates(self) -> dict[str, float | None]:
        """Observed success rate per arm (None before its first observation)."""
        return {a: (c.successes / c.n if c.n else None) for a, c in self._state.arms.items()}

    def best(self) -> list[str]:
        """The arms with the highest observed rate (untried arms first: they count as best)."""
        rates = self.rates()
        untried = [a for a, r in rates.items() if r is None]
        if untried:
            return untried
        top = max(r for r in rates.values() if r is not None)
        return [a for a, r in rates.items() if r == top]

    def weights(self) -> dict[str, float]:
        """Traffic shares (summing to 1)."""
        best, k = self.best(), len(self.arms)
        return {a: self.epsilon / k + ((1.0 - self.epsilon) / len(best) if a in best else 0.0)
                for a in self.arms}
