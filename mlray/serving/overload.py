"""What an overloaded ingress does instead of waiting: deadlines, shedding, fair blame.

- A request's deadline runs from when the ingress takes it (reading its body, queueing
  for a model replica and the model itself): :class:`Deadline`.
- A version's queue at each ingress replica is bounded (Serve's ``max_queued_requests``);
  a request beyond it is shed at once: :class:`Overloaded`, 503 with ``Retry-After``.
- Breakers are for failing models, not busy ones: a timeout counts against a version only
  when the version had a fair chance to answer (:func:`blame_timeout`); shed requests and
  deadlines spent queueing are no verdict on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

from mlray.errors import BackendUnavailable
from mlray.serving.settings import ModelServing

__all__ = ["Deadline", "InFlight", "Overloaded", "blame_timeout", "slots"]


class Overloaded(BackendUnavailable):
    """Every queue that could take the request is full: retry after ``retry_after`` s."""

    code = "overloaded"

    def __init__(self, message: str, *, retry_after: float = 1.0,
                 field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class Deadline:
    """The end of a request's time, fixed when the ingress took it (monotonic seconds)."""

    __slots__ = ("_clock", "started")

    def __init__(self, started: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started = clock() if started is None else started

    def remaining(self, timeout_s: float) -> float:
        """Seconds left of ``timeout_s`` counted from the start (negative: spent)."""
        return self.started + timeout_s - self._clock()

    def elapsed(self) -> float:
        """Seconds since the start."""
        return self._clock() - self.started


class InFlight:
    """Calls under way per key (a version), as one replica sees them."""

    def __init__(self) -> None:
        self._counts: dict[Hashable, int] = {}

    def enter(self, key: Hashable) -> int:
        """Count one more call; returns how many were under way before it."""
        ahead = self._counts.get(key, 0)
        self._counts[key] = ahead + 1
        return ahead

    def leave(self, key: Hashable) -> None:
        """One call ended."""
        left = self._counts.get(key, 0) - 1
        if left > 0:
            self._counts[key] = left
        else:
            self._counts.pop(key, None)

    def __getitem__(self, key: Hashable) -> int:
        return self._counts.get(key, 0)


def slots(serving: ModelServing) -> int:
    """Calls a version takes at once without any waiting behind others: one batch, and no
    more than its (fewest) replicas hold."""
    replicas = (serving.autoscaling.min_replicas if serving.autoscaling is not None
                else serving.num_replicas)
    return max(1, min(serving.tuning.max_batch_size,
                      serving.max_ongoing_requests * max(1, replicas)))


def blame_timeout(*, budget_s: float, timeout_s: float, ahead: int, slots: int,
                  waited_s: float) -> bool:
    """Does a call that ran out of time say the version is failing (count it)?

    Only when the call had at least half of the version's timeout (not a deadline mostly
    spent before it, e.g. waiting for the ingress), fewer than ``slots`` calls were under
    way before it (else it may have waited behind them), and the timeout fired on time:
    ``waited_s``, the time the call actually waited, within a quarter of ``budget_s`` (a
    late timer means the ingress itself was starved of CPU). Otherwise: load, not failure.
    """
    return (budget_s >= timeout_s / 2 and ahead < slots
            and waited_s <= budget_s * 1.25)
