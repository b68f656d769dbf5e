"""The stream processor against a real Redis: acks after writes, claims, dead letters,
and windowed values that count every event once across crashes and redeliveries."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from mlray._private.validation import build
from mlray.errors import BackendUnavailable
from mlray.features import FeatureRepo, OfflineStore
from mlray.features.online_redis import RedisOnlineStore
from mlray.features.stream import StreamProcessor, publish

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def double_amount(frame: pd.DataFrame) -> pd.DataFrame:
    """A stream transform: derives ``amount2``; raises on amount 666 (a failing message)."""
    if (frame["amount"] == 666).any():
        raise RuntimeError("cannot score 666")
    return frame.assign(amount2=frame["amount"] * 2)


def _repo(stream: str) -> FeatureRepo:
    return build(FeatureRepo, entities=[{"name": "customer",
                                         "join_keys": [{"name": "customer_id"}]}],
                 feature_views=[{
                     "name": "velocity", "entities": ["customer"], "ttl": "1d",
                     "source": {"type": "stream", "stream": stream,
                                "created_timestamp_field": "created",
                                "allowed_lateness": "5m",
                                "transform": f"{__name__}:double_amount"},
                     "aggregations": [
                         {"function": "count", "window": "1h", "name": "n_1h"},
                         {"column": "amount", "function": "sum", "window": "1h"},
                         {"column": "amount", "function": "max", "window": "1h"},
                         {"column": "amount2", "function": "avg", "window": "1d"}],
                     "fields": [{"name": "n_1h", "dtype": "int64", "range": {"min": 0}},
                                {"name": "amount_sum_1h", "dtype": "float64"},
                                {"name": "amount_max_1h", "dtype": "float64"},
                                {"name": "amount2_avg_1d", "dtype": "float64"},
                                {"name": "merchant", "dtype": "string",
                                 "allowed_values": ["shop", "fuel"]}]}])


@pytest.fixture
def env(redis_url: str, redis_prefix: str, tmp_path: Path) -> Iterator[dict[str, Any]]:
    client = redis.Redis.from_url(redis_url)
    stream = f"{redis_prefix}:tx"
    repo = _repo(stream)
    online = RedisOnlineStore(redis_url, project="default", prefix=redis_prefix)
    offline = OfflineStore(str(tmp_path / "offline"), repo, project="default")
    yield {"client": client, "stream": stream, "repo": repo, "online": online,
           "offline": offline, "prefix": redis_prefix}
    for key in client.scan_iter(match=f"{redis_prefix}*", count=1000):
        client.delete(key)
    online.close()
    client.close()


def _processor(env: dict[str, Any], consumer: str, **kw: Any) -> StreamProcessor:
    kw.setdefault("claim_idle_ms", 0)
    return StreamProcessor(env["repo"], "velocity", env["client"], env["online"], env["offline"],
                           consumer=consumer, prefix=env["prefix"], **kw)


def _event(i: int, customer: int = 1, amount: float = 10.0, minutes: float = 0,
           merchant: str = "shop", **over: Any) -> dict[str, Any]:
    return {"customer_id": customer, "event_timestamp": T0 + dt.timedelta(minutes=minutes),
            "event_id": f"tx{i}", "amount": amount, "merchant": merchant, **over}


def _online(env: dict[str, Any], *customers: int) -> list[dict[str, Any]]:
    bound = env["repo"].bind("velocity")
    return env["online"].read(bound, list(customers), now=T0 + dt.timedelta(hours=1)).rows()


def _drain(proc: StreamProcessor) -> None:
    while proc.run_once(block_ms=None):
        pass


def test_windows_written_online_and_offline_then_acked(env: dict[str, Any]) -> None:
    publish(env["client"], env["stream"], [
        _event(1, amount=10, minutes=0), _event(2, amount=30, minutes=10, merchant="fuel"),
        _event(3, customer=2, amount=5, minutes=1),
        _event(4, amount=1, minutes=5)])  # late, within the bound
    proc = _processor(env, "a")
    assert proc.run_once(block_ms=None) == 4
    assert proc.pending() == 0 and proc.stats.acked == 4
    assert _online(env, 1, 2, 3) == [
        {"n_1h": 3, "amount_sum_1h": 41.0, "amount_max_1h": 30.0, "amount2_avg_1d": 82 / 3,
         "merchant": "fuel"},
        {"n_1h": 1, "amount_sum_1h": 5.0, "amount_max_1h": 5.0, "amount2_avg_1d": 10.0,
         "merchant": "shop"},
        {"n_1h": None, "amount_sum_1h": None, "amount_max_1h": None, "amount2_avg_1d": None,
         "merchant": None}]
    history = env["offline"].read("velocity").to_pandas().sort_values(["customer_id", "n_1h"])
    # One row per entity and window time in a batch: the late event updates the 12:10 row.
    assert history["n_1h"].tolist() == [1, 3, 1]
    assert history["event_timestamp"].iloc[1] == pd.Timestamp(T0 + dt.timedelta(minutes=10))
    # Events older than the allowed lateness are dropped, not counted.
    publish(env["client"], env["stream"], [_event(5, amount=100, minutes=-60)])
    proc.run_once(block_ms=None)
    assert proc.stats.late == 1 and _online(env, 1)[0]["n_1h"] == 3


def test_field_map_messages_and_republished_ids(env: dict[str, Any]) -> None:
    env["client"].xadd(env["stream"], {"customer_id": "7", "event_timestamp":
                                       "2026-03-01T12:00:00+00:00", "event_id": "x",
                                       "amount": "2.5", "merchant": "shop"})
    publish(env["client"], env["stream"], [_event(9, customer=7, amount=2.5)] * 2
            + [{**_event(9, customer=7), "event_id": "x"}])  # the same ids again
    proc = _processor(env, "a")
    _drain(proc)
    assert proc.stats.duplicates == 2 and proc.pending() == 0
    assert _online(env, 7)[0]["n_1h"] == 2 and _online(env, 7)[0]["amount_sum_1h"] == 5.0


def test_ack_only_after_the_write(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    publish(env["client"], env["stream"], [_event(i, minutes=i) for i in range(3)])
    proc = _processor(env, "a")

    def down(*_: Any, **__: Any) -> int:
        raise BackendUnavailable("online store down")

    with monkeypatch.context() as m:
        m.setattr(env["online"], "write", down)
        with pytest.raises(BackendUnavailable):
            proc.run_once(block_ms=None)
    assert proc.pending() == 3 and _online(env, 1)[0]["n_1h"] is None
    _drain(proc)  # the store is back: the pending entries are claimed and written once
    assert proc.pending() == 0 and _online(env, 1)[0]["n_1h"] == 3


def test_crash_between_write_and_ack_counts_each_event_once(
        env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer writes, then dies before acking (twice: before and after its state commit);
    another claims its pending entries and the windows still count every event once."""
    publish(env["client"], env["stream"], [_event(i, amount=i, minutes=i / 10)
                                           for i in range(50)])
    dead = _processor(env, "dead", batch_size=20)
    monkeypatch.setattr(dead, "_commit", _crash)
    with pytest.raises(SystemExit):
        dead.run_once(block_ms=None)  # wrote 20 events online, committed nothing
    assert _online(env, 1)[0]["n_1h"] == 20
    half = _processor(env, "half", batch_size=20, claim_idle_ms=60_000)
    monkeypatch.setattr(half, "_dead_letter", _crash)
    with pytest.raises(SystemExit):
        half.run_once(block_ms=None)  # committed its 20 new events' state, acked nothing
    assert half.pending() == 40
    survivor = _processor(env, "b", batch_size=20)
    _drain(survivor)
    assert survivor.pending() == 0 and survivor.stats.claimed == 40
    assert survivor.stats.duplicates == 20  # half's events were already counted
    got = _online(env, 1)[0]
    assert got["n_1h"] == 50 and got["amount_sum_1h"] == sum(range(50))
    assert got["amount_max_1h"] == 49
    # A restarted processor picks the state up from Redis and keeps counting from there.
    publish(env["client"], env["stream"], [_event(50, amount=50, minutes=6)])
    _drain(_processor(env, "restarted"))
    assert _online(env, 1)[0]["n_1h"] == 51


def _crash(*_: Any, **__: Any) -> None:
    raise SystemExit("killed")


def test_poison_invalid_and_failing_messages_go_to_the_dead_letter_stream(
        env: dict[str, Any]) -> None:
    client, stream = env["client"], env["stream"]
    client.xadd(stream, {"event": b"{not json"})
    publish(client, stream, [_event(1, merchant="casino"),  # breaks allowed_values
                             {"customer_id": "one", "event_timestamp": T0.isoformat()},
                             {**_event(2), "event_timestamp": "2026-03-01T12:00:00"},  # naive
                             _event(3, amount=666),  # the transform fails on it, every time
                             _event(4)])
    proc = _processor(env, "a", max_deliveries=3)
    assert proc.run_once(block_ms=None) == 6
    dead = client.xrange(f"{stream}:dead")
    assert len(dead) == 4
    errors = [d[b"dead_error"].decode() for _, d in dead]
    assert "undecodable" in errors[0] and "must be one of" in errors[1]
    assert "customer_id" in errors[2] and "no time zone" in errors[3]
    assert proc.pending() == 1 and _online(env, 1)[0]["n_1h"] == 1  # tx4 went through
    for _ in range(3):  # delivered 3 times in all, then dead-lettered with its error
        proc.run_once(block_ms=None)
    assert proc.pending() == 0
    last = client.xrange(f"{stream}:dead")[-1][1]
    assert b"cannot score 666" in last[b"dead_error"] and b"failed 3 times" in last[b"dead_error"]
    assert proc.stats.dead == 5 and _online(env, 1)[0]["n_1h"] == 1


def test_projects_keep_their_own_group_window_state_and_rows(env: dict[str, Any]) -> None:
    """Project b's processor of a view of the same name keeps its own consumer group,
    window state and online rows: a's processor never sees b's windows, nor b a's rows."""
    other = RedisOnlineStore(env["online"].url, project="other", prefix=env["prefix"])
    try:
        b = StreamProcessor(env["repo"], "velocity", env["client"], other, None,
                            consumer="b", prefix=env["prefix"], claim_idle_ms=0)
        a = _processor(env, "a")
        assert a.group != b.group and a._state_key != b._state_key
        publish(env["client"], env["stream"], [_event(1, amount=10)])
        _drain(a)
        assert _online(env, 1)[0]["n_1h"] == 1
        bound = env["repo"].bind("velocity")
        later = T0 + dt.timedelta(hours=1)
        assert other.read(bound, [1], now=later).rows()[0]["n_1h"] is None  # b: not yet
        _drain(b)  # its own group reads the same event once, into its own state
        assert other.read(bound, [1], now=later).rows()[0]["n_1h"] == 1
        assert env["client"].hlen(a._state_key) == env["client"].hlen(b._state_key) == 1
    finally:
        other.drop_all()
        other.close()
