"""The demo on a shared Redis: every key it writes starts with its own prefix, and its
clean-up removes those keys and nothing else."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
import redis

from jobs import _demo_features as demo
from mlray.features import OfflineStore
from mlray.features.online_redis import RedisOnlineStore
from mlray.features.stream import StreamProcessor, publish

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def test_definitions_put_the_streams_under_the_prefix(tmp_path: Path) -> None:
    repo = demo.definitions(tmp_path / "fraud.parquet", "mlray-demo-1234")
    source = repo.feature_view("customer_velocity").source
    assert source.type == "stream" and source.stream == "mlray-demo-1234:transactions"
    assert repo.feature_view("customer_profile").source.path == str(tmp_path / "fraud.parquet")


def test_every_key_of_the_velocity_stream_is_under_the_prefix(redis_url: str,
                                                             tmp_path: Path) -> None:
    """Run the demo's stream view through a processor; each key it made (stream, dead
    letters, windows, versions, errors) and its consumer group carry the prefix."""
    prefix = f"mlray-demo-{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(redis_url)
    online = RedisOnlineStore(redis_url, project="default", prefix=prefix)
    repo = demo.definitions(tmp_path / "fraud.parquet", prefix)
    stream = repo.feature_view("customer_velocity").source.stream  # type: ignore[union-attr]
    other = f"{prefix}x:keep"  # shares the text of the prefix, not the prefix
    try:
        client.set(other, b"1")
        processor = StreamProcessor(repo, "customer_velocity", client, online,
                                    OfflineStore(str(tmp_path / "offline"), repo,
                                                 project="default"),
                                    prefix=prefix, claim_idle_ms=0)
        publish(client, stream, [
            {"customer_id": 1, "event_id": "e1", "event_timestamp": T0, "created_at": T0},
            {"customer_id": 1, "event_id": "bad", "event_timestamp": "not a time"}])
        while processor.run_once(block_ms=None):
            pass
        keys = set(client.scan_iter(match=f"*{prefix}*", count=1000))
        assert {f"{prefix}:transactions".encode(), f"{prefix}:transactions:dead".encode(),
                f"{prefix}:default:win:customer_velocity".encode()} <= keys  # and online rows
        assert all(k.startswith(f"{prefix}:".encode()) for k in keys - {other.encode()})
        groups = [g["name"].decode() for g in client.xinfo_groups(stream)]
        assert groups == [f"{prefix}:default:customer_velocity"]

        removed = demo.remove_redis_keys(redis_url, prefix)
        assert removed == len(keys) - 1
        assert set(client.scan_iter(match=f"*{prefix}*")) == {other.encode()}
    finally:
        client.delete(other)
        demo.remove_redis_keys(redis_url, prefix)
        online.close()
        client.close()


def test_ray_output_goes_to_the_log_and_the_demo_to_the_screen(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Ray Data's progress, raylet warnings and Tune's banner are written to fd 1 and 2 by
    Python, C++ and child processes alike; the demo's own lines stay on the screen."""
    from jobs import demo as job

    log = tmp_path / "demo-ray.log"
    with job._ray_output_to(log):
        os.write(1, b"Running Dataset: 0/1\n")
        os.write(2, b"(raylet) WARNING: 8 PYTHON worker processes\n")
        print("Tune: Configuration for experiment")
        subprocess.run([sys.executable, "-c", "print('from a child')"], check=True)
        job.console.print("demo line")
        job._explain_errors({503: Counter({"no healthy version among [2]": 3})})
    screen = capfd.readouterr()
    assert "demo line" in screen.out and "HTTP 503 (3 requests" in screen.out
    assert "Retry-After" in screen.out and "no healthy version" in screen.out
    for noise in ("Running Dataset", "raylet", "Tune:", "from a child"):
        assert noise not in screen.out + screen.err
        assert noise in log.read_text()
    print("after")
    assert capfd.readouterr().out == "after\n"


def test_an_error_inside_reaches_the_screen(tmp_path: Path,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    from jobs import demo as job

    with pytest.raises(RuntimeError, match="boom"), job._ray_output_to(tmp_path / "log"):
        raise RuntimeError("boom")
    os.write(2, b"visible\n")
    assert "visible" in capfd.readouterr().err
