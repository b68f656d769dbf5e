"""Serving rules that run without Ray: circuit breakers, traffic routing, limits, caching.

The Ray Serve ingress and model applications (the serving issue) are built on these.
"""

from mlray.serving.breaker import BreakerConfig, BreakerSnapshot, BreakerState, CircuitBreaker
from mlray.serving.limits import PredictionCache, RateLimiter, TokenBucket, cache_key
from mlray.serving.traffic import (
    NoHealthyVersion,
    Route,
    TrafficPolicy,
    choose_version,
    key_fraction,
)

__all__ = [
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerState",
    "CircuitBreaker",
    "NoHealthyVersion",
    "PredictionCache",
    "RateLimiter",
    "Route",
    "TokenBucket",
    "TrafficPolicy",
    "cache_key",
    "choose_version",
    "key_fraction",
]
