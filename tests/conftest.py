"""Shared fixtures: a real Redis, one Ray per session, a fresh platform per test."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from mlray._private.loopback import start_listening
from mlray.config import PlatformConfig, load_config
from mlray.errors import BackendUnavailable
from mlray.storage import StateStore, open_state_store
from mlray.storage.redis import RedisStateStore

os.environ.setdefault("RAY_AUTH_MODE", "token")
# Credentials for the test S3 server (moto accepts any): set before the shared Ray starts,
# so its workers (training, replicas, actors) inherit them too.
for _name, _value in (("AWS_ACCESS_KEY_ID", "mlray-test"), ("AWS_SECRET_ACCESS_KEY", "mlray-test"),
                      ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
    os.environ.setdefault(_name, _value)


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """REDIS_URL, else 127.0.0.1:6379, else a redis-server we start on a free port.

    Without any Redis the Redis tests skip loudly; under CI=true they fail instead.
    """
    for url in (os.environ.get("REDIS_URL"), "redis://127.0.0.1:6379/0"):
        if url and _answers(url):
            yield url
            return
    server = shutil.which("redis-server")
    if server is None:
        message = "no Redis answers and redis-server is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}: CI needs a real Redis")
        pytest.skip(f"!!! SKIPPING REDIS TESTS: {message} !!!")
    with redis_server("--save", "", "--appendonly", "no") as url:
        yield url


@contextlib.contextmanager
def redis_server(*args: str) -> Iterator[str]:
    """A redis-server of our own on a free loopback port, with ``args`` (e.g. persistence
    settings), in a temp dir; yields its URL and stops it afterwards."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("!!! SKIPPING: redis-server is not installed !!!")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="mlray-redis-")
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _answers(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"redis-server on port {port} did not start")
        time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``host:port`` of a real S3 API server (moto's standalone server) for this session."""
    port = free_port()
    try:
        proc = start_listening([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                str(port)], port, "moto server", 30)
    except BackendUnavailable as exc:
        pytest.fail(str(exc))
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


def new_bucket(endpoint: str, prefix: str = "mlray") -> str:
    """``s3://<fresh bucket>/<prefix>?endpoint_override=...&scheme=http`` on ``endpoint``."""
    import pyarrow.fs as pafs

    bucket = f"t-{uuid.uuid4().hex[:16]}"
    pafs.S3FileSystem(endpoint_override=endpoint, scheme="http",
                      allow_bucket_creation=True).create_dir(bucket)
    return f"s3://{bucket}/{prefix}?endpoint_override={endpoint}&scheme=http"


@pytest.fixture
def s3_uri(s3_endpoint: str) -> str:
    """An empty bucket per test (see :func:`new_bucket`)."""
    return new_bucket(s3_endpoint)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Parametrizes a test over both state backends."""
    return str(request.param)


@pytest.fixture
def state_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A state URL for ``backend``: a fresh SQLite file, or the test Redis."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix no other test uses."""
    return f"mlray-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(state_url: str, redis_prefix: str) -> Iterator[StateStore]:
    """An empty state store on each backend; Redis keys are removed afterwards."""
    opened = open_state_store(state_url, redis_prefix=redis_prefix)
    yield opened
    if isinstance(opened, RedisStateStore):
        opened.drop_all()
    opened.close()


@pytest.fixture
def platform_config(tmp_path: Path, state_url: str, redis_prefix: str) -> Iterator[PlatformConfig]:
    """A platform rooted in a temp dir, in its own Ray namespace, on the test's backend."""
    config = load_config(env={
        "MLRAY_HOME": str(tmp_path / "home"),
        "MLRAY_STATE_URL": state_url,
        "MLRAY_REDIS_PREFIX": redis_prefix,
        "MLRAY_NAMESPACE": f"t{uuid.uuid4().hex[:10]}",
    })
    yield config
    if state_url.startswith("redis"):
        RedisStateStore(state_url, prefix=redis_prefix).drop_all()


#: Variables that make Ray (``ray.init``, the state API, job clients) join another cluster.
STRANGER_RAY_VARS = ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS")


@dataclass(frozen=True)
class OwnRay:
    """The local Ray this process started: where its GCS and its dashboard listen."""

    gcs_address: str
    dashboard_url: str

    def list_actors(self, **kwargs: Any) -> list[Any]:
        """``ray.util.state.list_actors`` asked of this Ray only."""
        from ray.util.state import list_actors

        return list_actors(address=self.dashboard_url, **kwargs)


def start_own_ray(num_cpus: int = 8, namespace: str = "mlray-tests") -> OwnRay:
    """Start a new local Ray (never join one found through RAY_ADDRESS or a stale
    ``ray_current_cluster`` file) with the dashboard on (Tune's cleanup needs it)."""
    import ray

    for name in STRANGER_RAY_VARS:
        os.environ.pop(name, None)
    context = ray.init(address="local", num_cpus=num_cpus, include_dashboard=True,
                       log_to_driver=False, namespace=namespace)
    url = context.dashboard_url
    return OwnRay(gcs_address=context.address_info["gcs_address"],
                  dashboard_url=url if url.startswith("http") else f"http://{url}")


@pytest.fixture(scope="session")
def ray_shared() -> Iterator[OwnRay]:
    """One local Ray of our own for the whole run (8 logical CPUs, dashboard on)."""
    import ray

    own = start_own_ray()
    yield own
    ray.shutdown()


@pytest.fixture
def mlray_env(ray_shared: OwnRay,
              platform_config: PlatformConfig) -> Iterator[PlatformConfig]:
    """A platform in a fresh namespace on the shared Ray; its actors are killed afterwards."""
    import ray

    from actors import actor_names

    yield platform_config
    for name in actor_names():
        try:
            ray.kill(ray.get_actor(name, namespace=platform_config.namespace), no_restart=True)
        except ValueError:
            continue


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)
