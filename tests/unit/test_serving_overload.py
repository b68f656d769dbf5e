"""The ingress's plain parts for deploys and load: bounded bodies, deadlines, fair blame."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from mlray.errors import PayloadTooLarge
from mlray.serving.limits import read_bounded
from mlray.serving.overload import Deadline, InFlight, Overloaded, blame_timeout, slots
from mlray.serving.settings import IngressSettings, ModelServing


class Chunks:
    """An async body of ``count`` chunks of ``size`` bytes that counts what was read."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size, self.read = count, size, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:  # type: ignore[override]
        for _ in range(self.count):
            self.read += 1
            yield b"x" * self.size


def read(body: Chunks, limit: int, **kwargs: object) -> bytes:
    return asyncio.run(read_bounded(aiter(body), limit, **kwargs))  # type: ignore[arg-type]


def test_a_body_within_the_limit_is_read_whole() -> None:
    assert read(Chunks(4, 10), 40) == b"x" * 40
    assert read(Chunks(0, 10), 40) == b""


def test_a_chunked_body_past_the_limit_stops_being_read_there() -> None:
    body = Chunks(1000, 1024)  # 1000 KiB sent, 8 KiB allowed, nothing drained
    with pytest.raises(PayloadTooLarge) as caught:
        read(body, 8 * 1024)
    assert caught.value.field == "body" and caught.value.http_status == 413
    assert body.read == 9  # the chunk that crossed the limit, and no more


def test_the_rest_is_drained_up_to_a_bound_before_the_413() -> None:
    small = Chunks(20, 1024)  # 20 KiB: the rest fits the drain bound, so all of it is read
    with pytest.raises(PayloadTooLarge):
        read(small, 8 * 1024, drain_bytes=64 * 1024)
    assert small.read == 20
    huge = Chunks(10_000, 1024)  # ~10 MiB: read to the limit plus the drain bound only
    with pytest.raises(PayloadTooLarge):
        read(huge, 8 * 1024, drain_bytes=64 * 1024)
    assert huge.read == 9 + 64


def test_a_declared_length_past_the_limit_is_refused_before_keeping_anything() -> None:
    body = Chunks(1000, 1024)
    with pytest.raises(PayloadTooLarge, match="1024000 bytes"):
        read(body, 8 * 1024, declared=1000 * 1024)
    assert body.read == 0  # more than the drain bound: answered at once
    drained = Chunks(16, 1024)
    with pytest.raises(PayloadTooLarge):
        read(drained, 8 * 1024, declared=16 * 1024, drain_bytes=64 * 1024)
    assert drained.read == 16


def test_a_deadline_counts_from_its_start() -> None:
    now = [100.0]
    deadline = Deadline(clock=lambda: now[0])
    now[0] = 103.0
    assert deadline.elapsed() == 3.0
    assert deadline.remaining(5.0) == 2.0
    now[0] = 106.0
    assert deadline.remaining(5.0) < 0


def test_timeouts_blame_a_version_only_when_it_had_a_fair_chance() -> None:
    fair = {"budget_s": 5.0, "timeout_s": 5.0, "ahead": 0, "slots": 64, "waited_s": 5.0}
    # Alone, with its whole timeout, timed out on time: the version is failing.
    assert blame_timeout(**fair)
    # Most of the deadline went before the call (a busy ingress): no verdict.
    assert not blame_timeout(**{**fair, "budget_s": 1.0, "waited_s": 1.0})
    # Every slot was taken before it: it may have queued behind them (load).
    assert not blame_timeout(**{**fair, "ahead": 64})
    assert blame_timeout(**{**fair, "ahead": 63})
    # The timeout fired 4 s late: the ingress's own loop was starved (load).
    assert not blame_timeout(**{**fair, "waited_s": 9.0})


def test_a_version_takes_one_batch_at_once_at_most_what_its_replicas_hold() -> None:
    assert slots(ModelServing()) == 64  # one batch of 64; 256 ongoing per replica
    assert slots(ModelServing(max_ongoing_requests=4, num_replicas=2)) == 8
    assert slots(ModelServing.model_validate(
        {"max_ongoing_requests": 4, "autoscaling": {"min_replicas": 0}})) == 4


def test_in_flight_counts_per_key() -> None:
    flight = InFlight()
    assert flight.enter("a") == 0 and flight.enter("a") == 1 and flight.enter("b") == 0
    flight.leave("a")
    assert flight["a"] == 1
    flight.leave("a")
    flight.leave("a")  # never below zero
    assert flight["a"] == 0 and flight["b"] == 1


def test_overloaded_is_a_503_with_retry_after() -> None:
    exc = Overloaded("full", retry_after=2.0)
    assert exc.http_status == 503 and exc.code == "overloaded" and exc.retry_after == 2.0


def test_queues_are_bounded_by_default_and_validated() -> None:
    assert ModelServing().max_queued_requests > 0
    assert IngressSettings().max_queued_requests > 0
    assert ModelServing(max_queued_requests=-1).max_queued_requests == -1
    with pytest.raises(ValueError, match="max_queued_requests"):
        ModelServing(max_queued_requests=-2)
