"""An online store whose Redis goes away: reads fail fast with a clear error (the
serving path turns it into 503) and work again once Redis is back."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest
import redis

from mlray._private.validation import build
from mlray.errors import BackendUnavailable
from mlray.features import FeatureRepo
from mlray.features.online_redis import RedisOnlineStore
from mlray.features.serving import FeatureReader
from mlray.registry.types import TensorSpec
from mlray.serving.enrich import fill_from_features
from tests.conftest import free_port


class RedisProcess:
    """A redis-server this test starts and stops."""

    def __init__(self) -> None:
        server = shutil.which("redis-server")
        if server is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is needed for the outage test under CI")
            pytest.skip("!!! SKIPPING: redis-server is not installed !!!")
        self.server, self.port = server, free_port()
        self.workdir = tempfile.mkdtemp(prefix="mlray-outage-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.server, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                if redis.Redis.from_url(self.url, socket_connect_timeout=0.2).ping():
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
def server() -> Iterator[RedisProcess]:
    process = RedisProcess()
    process.start()
    yield process
    if process.proc and process.proc.poll() is None:
        process.stop()
    shutil.rmtree(process.workdir, ignore_errors=True)


def test_reads_fail_fast_while_redis_is_down_and_recover(server: RedisProcess) -> None:
    import datetime as dt

    repo = build(FeatureRepo, entities=[{"name": "customer",
                                         "join_keys": [{"name": "customer_id"}]}],
                 feature_views=[{"name": "profile", "entities": ["customer"],
                                 "source": {"type": "push"},
                                 "fields": [{"name": "age", "dtype": "int64"}]}],
                 feature_services=[{"name": "svc", "features": ["profile:age"]}])
    store = RedisOnlineStore(server.url, project="default", prefix="outage", timeout_s=0.5)
    store.write(repo.bind("profile"), [{"customer_id": 1, "age": 40,
                                        "event_timestamp": dt.datetime.now(dt.UTC)}])
    reader = FeatureReader(repo, store)
    schema = [TensorSpec(name="age", dtype="int64"), TensorSpec(name="amount", dtype="float64")]
    assert fill_from_features({"customer_id": 1, "amount": 3.0}, schema, "svc",
                              reader)["age"] == 40

    server.stop()
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as err:
        fill_from_features({"customer_id": 1, "amount": 3.0}, schema, "svc", reader)
    assert time.monotonic() - started < 3.0
    assert err.value.http_status == 503 and "Redis" in str(err.value)

    server.start()
    deadline = time.monotonic() + 10
    while True:
        try:
            merged = fill_from_features({"customer_id": 1, "amount": 3.0}, schema, "svc",
                                        reader)
            break
        except BackendUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert merged["age"] is None  # a fresh Redis holds nothing: NOT_FOUND, not an error
