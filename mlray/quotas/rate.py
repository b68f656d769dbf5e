"""The request-rate quota, shared by every ingress replica of the platform.

The ``quotas`` actor holds one token bucket per project (:class:`RateLedger`: ``rps``
tokens a second, at most ``burst_s`` seconds' worth banked); ingress replicas lease slices
of it in the background (:class:`Lease`) and spend them locally, so no request waits on
the actor. A slice not spent within its lease is lost, never handed back: together the
replicas never admit more than the bucket gave out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from mlray.quotas.types import Grant

__all__ = ["Lease", "RateLedger", "slice_size"]

#: How long a leased slice stays spendable in a replica.
LEASE_TTL_S = 1.0
#: A replica asks for this many seconds of its project's rate at a time.
SLICE_S = 0.2


def slice_size(rps: float) -> int:
    """Tokens a replica leases at a time for a project allowed ``rps``."""
    return max(1, math.ceil(rps * SLICE_S))


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLedger:
    """Token buckets per project: what all replicas together may still admit."""

    def __init__(self, burst_s: float = 1.0, ttl_s: float = LEASE_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._burst_s, self._ttl_s, self._clock = burst_s, ttl_s, clock
        self._buckets: dict[str, _Bucket] = {}

    def lease(self, project: str, want: int, rps: float) -> Grant:
        """Up to ``want`` tokens of ``project``'s bucket (refilled at ``rps`` a second)."""
        now = self._clock()
        capacity = max(1.0, rps * self._burst_s)
        bucket = self._buckets.get(project)
        if bucket is None:
            bucket = self._buckets[project] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rps)
        bucket.at = now
        granted = max(0, min(want, math.floor(bucket.tokens)))
        bucket.tokens -= granted
        wait = 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) / rps
        return Grant(tokens=granted, retry_after_s=wait, expires_in_s=self._ttl_s)

    def forget(self, keep: set[str]) -> None:
        """Drop the buckets of projects that no longer have a rate quota."""
        for project in set(self._buckets) - keep:
            del self._buckets[project]


class Lease:
    """One replica's local budget per project: spent per request, refilled in the background.

    ``limits`` is the rate quota per project (a project without one is never held up).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.limits: dict[str, float] = {}
        self._tokens: dict[str, int] = {}
        self._expires: dict[str, float] = {}
        self._retry_after: dict[str, float] = {}
        self.admitted: dict[str, int] = {}
        self.refused: dict[str, int] = {}

    def take(self, project: str) -> float:
        """Spend one token: 0.0 when admitted, else the seconds to wait (refused)."""
        if project not in self.limits:
            self.admitted[project] = self.admitted.get(project, 0) + 1
            return 0.0
        left = self._tokens.get(project, 0)
        if left > 0 and self._clock() < self._expires.get(project, 0.0):
            self._tokens[project] = left - 1
            self.admitted[project] = self.admitted.get(project, 0) + 1
            return 0.0
        self.refused[project] = self.refused.get(project, 0) + 1
        rps = self.limits[project]
        return max(self._retry_after.get(project, 0.0), 1.0 / rps)

    def wants(self) -> dict[str, int]:
        """Tokens to ask for now: a slice per limited project that is running low."""
        now = self._clock()
        out = {}
        for project, rps in self.limits.items():
            size = slice_size(rps)
            left = self._tokens.get(project, 0) if now < self._expires.get(project, 0.0) else 0
            if left < size:
                out[project] = size - left
        return out

    def add(self, project: str, grant: Grant) -> None:
        """Add granted tokens (the older ones' lease is renewed with them)."""
        now = self._clock()
        left = self._tokens.get(project, 0) if now < self._expires.get(project, 0.0) else 0
        self._tokens[project] = left + grant.tokens
        self._expires[project] = now + grant.expires_in_s
        self._retry_after[project] = grant.retry_after_s

    def drain_counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """The admitted and refused counts since the last drain (and reset them)."""
        admitted, refused = self.admitted, self.refused
        self.admitted, self.refused = {}, {}
        return admitted, refused

    def restore_counts(self, admitted: dict[str, int], refused: dict[str, int]) -> None:
        """Put back counts a failed report did not deliver (sent with the next one)."""
        for mine, back in ((self.admitted, admitted), (self.refused, refused)):
            for project, n in back.items():
                mine[project] = mine.get(project, 0) + n
