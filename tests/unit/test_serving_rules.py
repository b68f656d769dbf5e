"""Circuit breakers, traffic routing, rate limits and the prediction cache, without Ray."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from mlray.errors import NotFound
from mlray.serving import (
    BreakerConfig,
    BreakerState,
    CircuitBreaker,
    NoHealthyVersion,
    PredictionCache,
    RateLimiter,
    TokenBucket,
    TrafficPolicy,
    cache_key,
    choose_version,
    key_fraction,
)


class Clock:
    """A hand-moved clock."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _breaker(clock: Clock, **kw: float) -> CircuitBreaker:
    return CircuitBreaker(BreakerConfig(**kw), clock=clock, wall=clock)  # type: ignore[arg-type]


def test_breaker_opens_half_opens_and_closes() -> None:
    clock = Clock()
    b = _breaker(clock, failure_threshold=3, window_s=10, recovery_timeout_s=5,
                 success_threshold=2)
    for _ in range(2):
        b.record_failure()
    assert b.state is BreakerState.CLOSED and b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN and not b.allow()
    assert b.retry_after() == pytest.approx(5)
    clock.now += 5
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow() and not b.allow(), "one trial call at a time"
    b.record_success()
    assert b.state is BreakerState.HALF_OPEN and b.allow()
    b.record_success()
    assert b.state is BreakerState.CLOSED


def test_breaker_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    b = _breaker(clock, failure_threshold=2, window_s=10)
    b.record_failure()
    clock.now += 11
    b.record_failure()
    assert b.state is BreakerState.CLOSED


def test_a_failed_trial_reopens() -> None:
    clock = Clock()
    b = _breaker(clock, failure_threshold=1, recovery_timeout_s=5)
    b.record_failure()
    clock.now += 5
    assert b.allow()
    b.record_failure()
    assert b.state is BreakerState.OPEN and b.retry_after() == pytest.approx(5)


def test_replicas_converge_on_the_later_change() -> None:
    clock = Clock()
    a = _breaker(clock, failure_threshold=1, recovery_timeout_s=10)
    b = _breaker(clock, failure_threshold=1, recovery_timeout_s=10)
    clock.now += 1
    a.record_failure()
    assert b.merge(a.snapshot()) and b.state is BreakerState.OPEN
    assert b.retry_after() == pytest.approx(10)
    assert not a.merge(b.snapshot()), "nothing newer to adopt"
    clock.now += 10
    assert b.state is BreakerState.HALF_OPEN


TEN_K = 10_000


def _binomial_999(n: int, p: float) -> tuple[float, float]:
    sd = math.sqrt(n * p * (1 - p))
    return n * p - 3.29 * sd, n * p + 3.29 * sd


def test_a_90_10_split_lands_in_the_binomial_interval() -> None:
    policy = TrafficPolicy(weights={1: 90, 2: 10})
    rng = np.random.default_rng(0)
    random_hits = sum(choose_version(policy, rng=lambda: float(rng.random())).version == 2
                      for _ in range(TEN_K))
    sticky_hits = sum(choose_version(policy, routing_key=f"user-{i}").version == 2
                      for i in range(TEN_K))
    low, high = _binomial_999(TEN_K, 0.10)
    assert low <= random_hits <= high
    assert low <= sticky_hits <= high


def test_sticky_keys_keep_their_version_and_only_unhealthy_ones_move() -> None:
    policy = TrafficPolicy(weights={1: 50, 2: 30, 3: 20})
    first = {k: choose_version(policy, routing_key=k).version for k in map(str, range(2000))}
    again = {k: choose_version(policy, routing_key=k).version for k in map(str, range(2000))}
    assert first == again
    without_3 = {k: choose_version(policy, routing_key=k, healthy=lambda v: v != 3)
                 for k in map(str, range(2000))}
    for key, route in without_3.items():
        if first[key] != 3:
            assert route.version == first[key] and not route.failed_over
        else:
            assert route.version in (1, 2) and route.failed_over
    assert 0 <= key_fraction("x") < 1 and key_fraction("x") == key_fraction("x")


def test_pins_shadows_and_no_healthy_version() -> None:
    policy = TrafficPolicy(weights={1: 100, 2: 0}, shadows=[3])
    route = choose_version(policy, routing_key="k")
    assert route.version == 1 and route.shadows == (3,)
    assert choose_version(policy, pinned=2).version == 2
    with pytest.raises(NotFound, match="version 9 is not served"):
        choose_version(policy, pinned=9)
    with pytest.raises(NoHealthyVersion):
        choose_version(policy, healthy=lambda v: v == 3)
    assert choose_version(policy, healthy=lambda v: v != 3).shadows == ()


@pytest.mark.parametrize(
    ("weights", "shadows", "message"),
    [({}, [], "at least one version"), ({1: -1}, [], "negative"), ({1: 0}, [], "positive"),
     ({1: 50, 2: 50}, [2], "both answer and shadow"), ({0: 1}, [], "not a version")],
)
def test_bad_policies_are_refused(weights: dict[int, float], shadows: list[int],
                                  message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrafficPolicy(weights=weights, shadows=shadows)


def test_token_bucket_and_per_client_limits() -> None:
    clock = Clock()
    bucket = TokenBucket(rate=2, burst=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(0.5)
    clock.now += 0.5
    assert bucket.take() == 0.0
    limits = RateLimiter(rate=1, burst=1, max_clients=2, clock=clock)
    assert limits.take("a") == 0.0 and limits.take("a") > 0 and limits.take("b") == 0.0
    limits.take("c")  # evicts "a", the least recent
    assert limits.take("a") == 0.0
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


def test_prediction_cache_ttl_and_lru() -> None:
    clock = Clock()
    cache = PredictionCache(max_entries=2, ttl_s=10, clock=clock)
    k1 = cache_key("m", 1, np.array([[1.0, 2.0]], dtype=np.float32))
    k2 = cache_key("m", 1, np.array([[1.0, 3.0]], dtype=np.float32))
    assert k1 != cache_key("m", 2, np.array([[1.0, 2.0]], dtype=np.float32))
    assert k1 != cache_key("m", 1, np.array([[1.0, 2.0]], dtype=np.float64))
    cache.put(k1, "a")
    cache.put(k2, "b")
    assert cache.get(k1) == "a"
    cache.put(b"k3", "c")  # evicts k2, the least recently used
    assert cache.get(k2) is None and len(cache) == 2
    clock.now += 11
    assert cache.get(k1) is None and (cache.hits, cache.misses) == (1, 2)
