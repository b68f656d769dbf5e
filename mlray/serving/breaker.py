"""The circuit breaker of one (model, version): a plain state machine.

    CLOSED --(failure_threshold failures within window_s)--> OPEN
    OPEN --(recovery_timeout_s elapsed)--> HALF_OPEN
    HALF_OPEN --(success_threshold successes)--> CLOSED
    HALF_OPEN --(any failure)--> OPEN

Each ingress replica keeps its own breakers and exchanges :class:`BreakerSnapshot`
with the cluster-wide ``breakers`` actor in the background; a snapshot that changed
later (wall clock) wins, so replicas converge without a request waiting on the actor.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["BREAKER_LEVEL", "BreakerConfig", "BreakerSnapshot", "BreakerState",
           "CircuitBreaker"]


class BreakerState(enum.StrEnum):
    """Where a breaker is."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


#: A breaker state as a number (the ``mlray_breaker_state`` gauge and alert samples).
BREAKER_LEVEL = {"closed": 0, "half_open": 1, "open": 2}


class BreakerConfig(BaseModel):
    """Thresholds of a breaker (changeable live)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_threshold: int = Field(5, ge=1, description="Failures in the window that open it.")
    window_s: float = Field(30.0, gt=0, description="How far back failures count.")
    recovery_timeout_s: float = Field(10.0, gt=0, description="Open time before a trial.")
    success_threshold: int = Field(2, ge=1, description="Half-open successes that close it.")
    half_open_max_calls: int = Field(1, ge=1, description="Concurrent trial calls allowed.")


class BreakerSnapshot(BaseModel):
    """A breaker's state as replicas and the breakers actor exchange it."""

    state: BreakerState
    changed_at: float = Field(description="Wall-clock time of the last state change.")
    open_until: float | None = Field(None, description="Wall-clock end of the open period.")


class CircuitBreaker:
    """One breaker. ``clock`` is monotonic seconds; ``wall`` is epoch seconds (for sync)."""

    def __init__(self, config: BreakerConfig | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.config = config or BreakerConfig()
        self._clock, self._wall = clock, wall
        self._state = BreakerState.CLOSED
        self._failures: deque[float] = deque()
        self._successes = 0
        self._in_flight = 0
        self._opened_at = 0.0
        self.changed_at = wall()

    def _move(self, state: BreakerState) -> None:
        self._state = state
        self.changed_at = self._wall()
        self._successes = 0
        self._in_flight = 0
        if state is BreakerState.OPEN:
            self._opened_at = self._clock()
        if state is BreakerState.CLOSED:
            self._failures.clear()

    @property
    def state(self) -> BreakerState:
        """The current state (an open breaker whose timeout passed reads half-open)."""
        if (self._state is BreakerState.OPEN and
                self._clock() - self._opened_at >= self.config.recovery_timeout_s):
            self._move(BreakerState.HALF_OPEN)
        return self._state

    def available(self) -> bool:
        """Would :meth:`allow` admit a call now? (Claims nothing.)"""
        state = self.state
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and self._in_flight < self.config.half_open_max_calls)

    def allow(self) -> bool:
        """May a request go to this version now? (A half-open breaker admits a few trials.)"""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._in_flight < self.config.half_open_max_calls:
            self._in_flight += 1
            return True
        return False

    def release(self) -> None:
        """Give back a slot :meth:`allow` granted, for a call that never reached the model."""
        if self._state is BreakerState.HALF_OPEN:
            self._in_flight = max(0, self._in_flight - 1)

    def retry_after(self) -> float:
        """Seconds until an open breaker admits a trial (0 when it admits calls now)."""
        if self.state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self.config.recovery_timeout_s - (self._clock() - self._opened_at))

    def record_success(self) -> None:
        """A call to the version succeeded."""
        if self.state is BreakerState.HALF_OPEN:
            self._in_flight = max(0, self._in_flight - 1)
            self._successes += 1
            if self._successes >= self.config.success_threshold:
                self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        """A call to the version failed (an error or a timeout)."""
        state = self.state
        if state is BreakerState.HALF_OPEN:
            self._move(BreakerState.OPEN)
            return
        if state is BreakerState.OPEN:
            return
        now = self._clock()
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.config.window_s:
            self._failures.popleft()
        if len(self._failures) >= self.config.failure_threshold:
            self._move(BreakerState.OPEN)

    def snapshot(self) -> BreakerSnapshot:
        """This breaker's state for the cluster."""
        state = self.state
        open_until = (self._wall() + self.retry_after()) if state is BreakerState.OPEN else None
        return BreakerSnapshot(state=state, changed_at=self.changed_at, open_until=open_until)

    def merge(self, remote: BreakerSnapshot) -> bool:
        """Adopt ``remote`` if it changed later than this breaker did; True if adopted."""
        if remote.changed_at <= self.changed_at or remote.state is self.state:
            return False
        self._move(remote.state)
        self.changed_at = remote.changed_at
        if remote.state is BreakerState.OPEN and remote.open_until is not None:
            left = max(0.0, remote.open_until - self._wall())
            self._opened_at = self._clock() - (self.config.recovery_timeout_s - left)
        return True
