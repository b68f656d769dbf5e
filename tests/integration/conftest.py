"""Fixtures of the integration tests: one serving platform, shared by the tests that need
it and torn down right after the last of them, so the model replicas it leaves do not hold
the shared Ray's CPUs while later tests (training) need them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from mlray.config import load_config
from tests.conftest import free_port, new_bucket
from tests.integration.platform import Platform, alerts_yaml, serving_yaml
from tests.integration.serving_models import set_fault

#: The session's serving platform while it is up.
_OPEN: list[Platform] = []


def _tear_down(platform: Platform) -> None:
    """Stop Serve and kill the platform's actors (once)."""
    import ray
    from ray import serve

    from actors import actor_names

    if platform not in _OPEN:
        return
    _OPEN.remove(platform)
    set_fault(None)
    serve.shutdown()
    namespace = platform.config.namespace
    named = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["namespace"] == namespace]
    for name in {*actor_names(), *named}:
        try:
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
        except ValueError:
            continue


@pytest.fixture(scope="session")
def platform(ray_shared: None, redis_url: str, s3_endpoint: str,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """Actors, Serve and the ingress in a namespace of their own; artifacts in a bucket of
    the test S3 server, so every model replica fetches its artifact from ``s3://``."""
    import mlray
    from mlray.serving.launch import start_serving

    tmp = tmp_path_factory.mktemp("serving")
    env = {"MLRAY_HOME": str(tmp / "home"), "MLRAY_NAMESPACE": f"s{uuid.uuid4().hex[:10]}",
           "MLRAY_SERVE_PORT": str(free_port()),
           "MLRAY_SERVING_CONFIG": str(serving_yaml(tmp)), "MLRAY_STREAM_URL": redis_url,
           "MLRAY_REDIS_PREFIX": f"t{uuid.uuid4().hex[:10]}",
           "MLRAY_ALERTS_CONFIG": str(alerts_yaml(tmp)),
           "MLRAY_ARTIFACT_URI": new_bucket(s3_endpoint, "artifacts")}
    config = load_config(env=env)
    client = mlray.connect(config=config)
    url = start_serving(config)
    set_fault(None)
    opened = Platform(config, client, url, tmp, env)
    _OPEN.append(opened)
    yield opened
    _tear_down(opened)


@pytest.fixture(autouse=True)
def _release_platform_after_its_last_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the last selected test that uses ``platform``, tear it down at once."""
    yield
    users = [item for item in request.session.items
             if "platform" in getattr(item, "fixturenames", ())]
    if _OPEN and users and request.node is users[-1]:
        _tear_down(_OPEN[0])
